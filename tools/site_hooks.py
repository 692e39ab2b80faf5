"""mkdocs hooks for the website (mkdocs.yml `hooks:`): keep every page offline.

nbconvert's HTML template, which mkdocs-jupyter extends, loads MathJax from a CDN on every
notebook page and carries a module script that imports Mermaid from a CDN when a page has
Mermaid diagrams. The notebooks use neither, so both are removed. Any other resource fetched
from another host (a script, a stylesheet, a font, an image, a frame) fails the build, naming
the page: the site must read without the internet (tests/repo/test_site.py checks it in Chromium).

mkdocs-jupyter makes a notebook page's table of contents from a markdown conversion that drops
inline code, so a heading with code in it got a link to an id the page does not have (02's
"Appendix: why `layers.BatchNorm`" linked #appendix-why; the heading is
#appendix-why-layersbatchnorm). The table of contents of notebook pages is made again here from
the headings as rendered (those of the markdown cells and markdown outputs, which carry an
anchor link).

Notebook figures, embedded in the page as base64 data, are written beside the page as files
(figures/<hash>.png): the page is lighter, and the zoom (mkdocs-glightbox, whose link to the
image would otherwise repeat the whole data) opens the file. Table cells of prose get a class
that keeps them readable on a phone (assets/site.css), and the notebooks' code and outputs are
left out of the search index, so that a search result opens on the prose that explains."""

import base64
import hashlib
import posixpath
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.toc import get_toc

EXTERNAL = r"""(?:https?:)?//[^"'\s)>]+"""
SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
STYLE = re.compile(
    r"""<style\b[^>]*>(.*?)</style>|\bstyle\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.S | re.I
)
# What the browser fetches as the page loads (following a link, <a href>, is not loading).
TAGS = [
    re.compile(
        rf"""<(?:script|img|iframe|source|video|audio|embed|input)\b[^>]*?\bsrc\s*=\s*["']?({EXTERNAL})""",
        re.I,
    ),
    re.compile(
        r"""<link\b(?=[^>]*\brel\s*=\s*["']?[^"'>]*"""
        r"""(?:stylesheet|preload|modulepreload|preconnect|prefetch|icon|manifest))"""
        rf"""[^>]*?\bhref\s*=\s*["']?({EXTERNAL})""",
        re.I,
    ),
]
CSS = re.compile(rf"""(?:@import\s+|url\()\s*["']?({EXTERNAL})""", re.I)
JS_IMPORT = re.compile(rf"""\bimport\s*\(?\s*["']({EXTERNAL})""")
DATA_IMAGE = re.compile(r'(<img\b[^>]*?\bsrc=")data:image/(png|jpeg|gif|svg\+xml);base64,([^"]+)"')
# The notebooks' code (shown, and the copy button's hidden text), text outputs, pandas tables,
# prompts ("In [1]:"), the copy button's "Copied!" and cell tags: left out of the search index. On these elements, not on the cells' divs: Material's
# search parser matches the elements it skips by tag name, so the first nested div to close
# would end the exclusion.
SEARCH_EXCLUDED = re.compile(
    r"""<(pre|table|div(?= class="(?:clipboard-copy-txt|jp-InputPrompt|jp-OutputPrompt)\b)"""
    r"""|span(?= class="(?:notice|cell-tag)"))\b"""
)
TABLE_CELL = re.compile(r"""<td(?P<attributes>[^>]*)>(?P<body>.*?)</td>""", re.S)
PROSE_CELL = 40  # characters of text from which a table cell reads as prose
HEADING = re.compile(
    r"""<h([1-6]) id="([^"]+)">(.*?)<a class="anchor-link" href="#\2">[^<]*</a>\s*</h\1>""", re.S
)


def _drop_cdn_scripts(html):
    def replace(match):
        attributes, body = match.groups()
        if re.search(rf"""\bsrc\s*=\s*["']{EXTERNAL}mathjax""", attributes, re.I):
            return ""  # the MathJax loader
        if "text/x-mathjax-config" in attributes:
            return ""  # its configuration (a no-op without MathJax)
        if "jp-Mermaid" in body and JS_IMPORT.search(body):
            if re.search(r"""class\s*=\s*["'][^"']*\bjp-Mermaid\b""", html):
                raise PluginError("a notebook has a Mermaid diagram: Mermaid would load from a CDN")
            return ""  # the Mermaid loader, idle on a page without diagrams
        return match.group(0)

    return SCRIPT.sub(replace, html)


def external_resources(html):
    """The URLs on other hosts that loading `html` would fetch."""
    found = {m.group(1) for pattern in TAGS for m in pattern.finditer(html)}
    for style in STYLE.finditer(html):
        found |= {m.group(1) for m in CSS.finditer("".join(filter(None, style.groups())))}
    for script in SCRIPT.finditer(html):
        found |= {m.group(1) for m in JS_IMPORT.finditer(script.group(2))}
    return sorted(found)


def _figure_files(html, page, config):
    """`html` with its data-URI images written to files in the page's figures/ folder."""
    folder = Path(config["site_dir"]) / posixpath.dirname(page.file.dest_uri) / "figures"

    def write(match):
        lead, kind, data = match.groups()
        content = base64.b64decode(data)
        name = f"{hashlib.sha256(content).hexdigest()[:16]}.{kind.split('+')[0]}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
        return f'{lead}figures/{name}"'

    return DATA_IMAGE.sub(write, html)


def _mark_prose_cells(html):
    def mark(match):
        attributes, body = match.group("attributes"), match.group("body")
        if "class=" in attributes or len(re.sub(r"<[^>]+>", "", body).strip()) < PROSE_CELL:
            return match.group(0)
        return f'<td class="prose"{attributes}>{body}</td>'

    return TABLE_CELL.sub(mark, html)


@event_priority(50)  # before mkdocs-glightbox wraps each image in a link to its source
def on_page_content(html, page, config, files):
    html = _mark_prose_cells(html)
    if page.file.src_uri.endswith(".ipynb"):
        html = _figure_files(html, page, config)
        html = SEARCH_EXCLUDED.sub(r"<\1 data-search-exclude", html)
        top = {"level": 0, "children": []}
        stack = [top]
        for level, anchor, title in HEADING.findall(html):
            token = {"level": int(level), "id": anchor, "children": []}
            token["name"] = re.sub(r"<[^>]+>", "", title).strip()
            while stack[-1]["level"] >= token["level"]:
                stack.pop()
            stack[-1]["children"].append(token)
            stack.append(token)
        page.toc = get_toc(top["children"])
    return html


def on_post_page(output, page, config):
    output = _drop_cdn_scripts(output)
    if found := external_resources(output):
        raise PluginError(
            f"{page.file.src_path} would fetch from other hosts, and the site must work "
            f"offline: {', '.join(found)}"
        )
    return output
