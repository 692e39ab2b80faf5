"""Build the website of the executed tutorial series (`make site`): a static site of the README,
the executed notebooks in docs/ with their stored outputs (never re-run), benchmarks/README.md,
docs/guide.md and the Try it page (web/), readable offline.

    python tools/build_site.py                       # artifacts/site-src/ -> artifacts/site/
    python tools/build_site.py --src DIR --out DIR   # elsewhere (tests/repo/test_site.py)
    python -m http.server -d artifacts/site          # then open http://localhost:8000

It assembles a site source folder (mkdocs.yml, made from the repository's, with the nav and
paths filled in, and docs/ with the pages) and runs `mkdocs build --strict` on it. The markdown
files and the notebooks' markdown cells link for GitHub, relative to their place in the
repository; their links are rewritten: a file that is a page of the site becomes that page, an
image is copied into the site, any other file or folder of the repository becomes its GitHub
URL, and an image from another host becomes its alternative text (the site loads nothing from
other hosts). Each notebook page starts with "Open in Colab" (the stripped notebook in
notebooks/) and "Download notebook" (the executed copy, as it is in docs/, served by the site).

The Try it page (web/try.md, web/src/) runs the released model in the reader's browser with
LiteRT.js: its script, LiteRT.js and LiteRT.js's wasm files from web/node_modules (`npm ci
--prefix web`, pinned by web/package-lock.json), and the release's fp32 and int8 `.tflite` files
with their sidecars from artifacts/tflite/<release>/ (where tools/release_checkpoint.py writes
them; web/export_model.py exports them there when they are missing or older than model.keras)
are copied into the site, so that nothing comes from another host. `--try-page auto` (the
default) leaves the page out, with a note, where LiteRT.js or the model files cannot be had (no
npm, no TensorFlow); `make site` and the tests ask for it (`require`).

Its imports are the standard library and PyYAML (a dependency of mkdocs), so building the site
needs only the `site` extra, not TensorFlow: the repository's URL is read from
mobilevit_utils/presets.py without importing the package (the Try it page's model export, a
subprocess, needs TensorFlow once)."""

import argparse
import ast
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import yaml

# The Try it page's builder, beside this file (also when a test loads this file by its path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_try_page import (  # noqa: E402
    RELEASE,  # noqa: F401 (the release the page runs; tests read it here)
    TRY_PAGE,
    TRY_SITE_PATH,
    TryPageUnavailable,
    prepare_try_page,
    write_try_page,
)

ROOT = Path(__file__).resolve().parents[1]
MARKER = ".site-src"  # marks a folder this script made, and so may delete and remake
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
BRANCH = "main"
SITE_CSS = "tools/site_theme/site.css"  # served as assets/site.css
# Markdown links and images, `[text](target "title")` and `![alt](target)`; the text may hold
# brackets (an image inside a link: `[![badge](image)](link)`), the target one pair of parentheses.
LINK = re.compile(
    r"""(?P<bang>!?)\[(?P<text>(?:[^\[\]]|\[(?:[^\[\]]|\[[^\[\]]*\])*\])*)\]"""
    r"""\(\s*(?P<target><[^<>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"""
    r"""(?P<title>\s+(?:"[^"\n]*"|'[^'\n]*'|\([^()\n]*\)))?\s*\)"""
)
REFERENCE = re.compile(r"""^(?P<lead> {0,3}\[[^\]\n]+\]:[ \t]*)(?P<target><[^<>\n]*>|\S+)""", re.M)
HTML_TAG = re.compile(r"""<(?P<tag>img|a|source)\b[^>]*>""", re.I)
HTML_ATTRIBUTE = r"""(\b{}\s*=\s*)(?:"([^"]*)"|'([^']*)')"""
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", re.S)


def repo_url(root):
    """REPO_URL of mobilevit_utils/presets.py, read without importing the package (TensorFlow)."""
    tree = ast.parse((root / "mobilevit_utils" / "presets.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "REPO_URL" for t in node.targets
        ):
            return ast.literal_eval(node.value).rstrip("/")
    raise SystemExit("mobilevit_utils/presets.py defines no REPO_URL")


def notebook_title(notebook, fallback):
    """The notebook's first markdown heading, as plain text."""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            for line in _source(cell).splitlines():
                if m := re.match(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", line):
                    return re.sub(r"[*_`]", "", m.group(1)).strip() or fallback
    return fallback


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def outside_code(text, rewrite):
    """`rewrite` applied to the markdown text outside fenced code blocks and code spans (code
    spans are masked, not cut out: a link's text may be one, as in [`notebooks/`](notebooks/))."""
    out, prose, fence = [], [], None
    for line in text.splitlines(keepends=True):
        m = FENCE.match(line)
        if fence is None and m:
            out.append(_outside_spans("".join(prose), rewrite))
            prose, fence = [], m.group(1)
            out.append(line)
        elif fence is not None:
            out.append(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                if not line.strip().strip(fence[0]):
                    fence = None
        else:
            prose.append(line)
    out.append(_outside_spans("".join(prose), rewrite))
    return "".join(out)


def _outside_spans(text, rewrite):
    spans = []

    def mask(m):
        spans.append(m.group(0))
        return f"\x00{len(spans) - 1}\x00"

    masked = rewrite(CODE_SPAN.sub(mask, text))
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], masked)


class Site:
    """The pages of the site and where each repository path goes in it."""

    def __init__(self, root, docs_dir, contents=None, directory_urls=True, try_page=False):
        self.root, self.docs_dir, self.directory_urls = root, docs_dir, directory_urls
        self.try_page = try_page
        self.contents = {k: Path(v) for k, v in (contents or {}).items()}
        self.base = repo_url(root)
        self.pages = {}  # repository path -> site source path
        self.nav = []
        self.warnings = []

    def exists(self, repo_path):
        return repo_path in self.contents or (self.root / repo_path).is_file()

    def read(self, repo_path):
        return (self.contents.get(repo_path) or self.root / repo_path).read_text(encoding="utf-8")

    def plan(self):
        """Choose the pages, in nav order: Home, the notebooks, Benchmarks, Guide, Try it."""
        self.pages["README.md"] = "index.md"
        self.nav.append({"Home": "index.md"})
        self.titles = {"README.md": "front page", "notebooks/README.md": "Notebooks"}
        section = []
        if self.exists("notebooks/README.md"):
            self.pages["notebooks/README.md"] = "notebooks/index.md"
            section.append("notebooks/index.md")  # the section's own page (navigation.indexes)
        self.notebooks = sorted((self.root / "docs").glob("[0-9][0-9]_*.ipynb"))
        for path in self.notebooks:
            repo_path, site_path = f"docs/{path.name}", f"notebooks/{path.name}"
            title = notebook_title(json.loads(path.read_text(encoding="utf-8")), path.stem)
            self.pages[repo_path] = site_path
            section.append({title: site_path})
        if not self.notebooks:
            raise SystemExit("no executed notebooks (docs/NN_*.ipynb) to publish: run `make docs`")
        self.nav.append({"Notebooks": section})
        for title, repo_path, site_path in [
            ("Benchmarks", "benchmarks/README.md", "benchmarks.md"),
            ("Guide", "docs/guide.md", "guide.md"),
        ]:
            if self.exists(repo_path):
                self.pages[repo_path] = site_path
                self.nav.append({title: site_path})
                self.titles[repo_path] = title
            else:
                print(f"note: no {repo_path}: the site has no {title} page")
        if self.try_page:
            self.pages[TRY_PAGE] = TRY_SITE_PATH
            self.nav.append({"Try it": TRY_SITE_PATH})

    # -- links ----------------------------------------------------------------------------

    def url(self, site_path):
        """The URL path (from the site's root) mkdocs gives a page or file."""
        stem = posixpath.splitext(site_path)[0]
        if site_path not in self.pages.values():  # a file: an image, a download
            return site_path
        if not self.directory_urls:
            return stem + ".html"
        if posixpath.basename(stem) in {"index", "README"}:
            return posixpath.dirname(stem) + "/" if "/" in stem else ""
        return stem + "/"

    def github(self, repo_path, folder):
        path = "" if repo_path == "." else "/" + quote(repo_path)
        return f"{self.base}/{'tree' if folder else 'blob'}/{BRANCH}{path}"

    def resolve(self, target, page_repo, page_site, html, image):
        """Where `target`, written in the repository file `page_repo`, points on the site; None
        for an image from another host. `html`: the result goes into finished HTML (a notebook
        cell: relative to the page's URL), otherwise into markdown that mkdocs converts
        (relative to the page's source, which mkdocs then validates and turns into URLs)."""
        bare = target[1:-1] if target.startswith("<") and target.endswith(">") else target
        parts = urlsplit(bare)
        if parts.scheme or parts.netloc or not parts.path:  # other hosts, mailto:, #anchors
            external = parts.scheme in {"http", "https", ""} and (parts.netloc or parts.scheme)
            return None if image and external else target
        repo_path = self.locate(unquote(parts.path), page_repo)
        if repo_path == ".." or repo_path.startswith("../"):
            self.warnings.append(f"{page_repo}: {target} points outside the repository (kept)")
            return target
        suffix = ("?" + parts.query if parts.query else "") + (
            "#" + parts.fragment if parts.fragment else ""
        )
        on_disk = self.root / repo_path
        if repo_path in self.pages:
            dest = self.pages[repo_path]
        elif on_disk.is_file() and on_disk.suffix.lower() in IMAGE_SUFFIXES:
            dest = repo_path
            copy = self.docs_dir / dest
            if not copy.exists():
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(on_disk, copy)
        else:
            if not on_disk.exists():
                self.warnings.append(f"{page_repo}: {target}: no such file in the repository")
            return self.github(repo_path, on_disk.is_dir()) + suffix
        return self.relative(dest, page_site, html) + suffix

    def locate(self, path, page_repo):
        """The repository path that the link `path`, written in `page_repo`, points to (a
        folder whose README is a page: that page)."""
        if path.startswith("/"):  # GitHub reads /path from the repository's root
            repo_path = posixpath.normpath(path.lstrip("/") or ".")
        else:
            # From the file's folder; an executed copy's cells were written in notebooks/, so
            # what is not found beside docs/NN_*.ipynb is looked for from there.
            folders = [posixpath.dirname(page_repo)]
            if page_repo in self.pages and page_repo.endswith(".ipynb"):
                folders.append("notebooks")
            candidates = [posixpath.normpath(posixpath.join(f, path)) for f in folders]
            repo_path = next(
                (c for c in candidates if c in self.pages or (self.root / c).exists()),
                candidates[0],
            )
        readme = posixpath.normpath(posixpath.join(repo_path, "README.md"))
        if (
            repo_path not in self.pages
            and (self.root / repo_path).is_dir()
            and readme in self.pages
        ):
            return readme  # a folder shows its README on GitHub: here, that page
        return repo_path

    def label(self, text, target, page_repo):
        """A link's text as the site reads it: a page's file name ("benchmarks/README.md",
        "README") becomes the page's title; GitHub's front page is the site's Home."""
        parts = urlsplit(target.strip("<>"))
        if parts.scheme or parts.netloc or not parts.path:
            return text
        repo_path = self.locate(unquote(parts.path), page_repo)
        if repo_path not in self.titles:
            return text
        bare = text.strip("`")
        if bare == repo_path or bare.endswith("README.md") or bare == "README":
            return self.titles[repo_path]
        return re.sub(r"\bREADME\b", "front page", text) if repo_path == "README.md" else text

    def relative(self, dest, page_site, html):
        """The link from the page `page_site` to `dest` (both site source paths)."""
        if not html:
            return posixpath.relpath(dest, posixpath.dirname(page_site) or ".")
        page_url, target = self.url(page_site), self.url(dest)
        # The folder relative links start from: notebooks/01_x/ -> itself, notebooks/01_x.html
        # (no directory URLs) -> notebooks.
        start = page_url.rstrip("/") if page_url.endswith("/") else posixpath.dirname(page_url)
        rel = posixpath.relpath(target.rstrip("/") or ".", start or ".")
        return rel + "/" if target.endswith("/") or not target else rel

    def rewrite(self, text, page_repo, page_site, html):
        """The markdown `text` of `page_repo` with every link and image rewritten for the site."""

        def link(m):
            image = bool(m.group("bang"))
            label = (
                m.group("text") if image else everything(m.group("text"))
            )  # [![image](...)](...)
            new = self.resolve(m.group("target"), *where, image)
            if new is None:
                return label  # an image from another host: its alternative text
            if not image:
                label = self.label(label, m.group("target"), page_repo)
            return f"{m.group('bang')}[{label}]({new}{m.group('title') or ''})"

        def reference(m):
            target = m.group("target")
            image = posixpath.splitext(urlsplit(target.strip("<>")).path)[1] in IMAGE_SUFFIXES
            return m.group("lead") + (self.resolve(target, *where, image) or target)

        def tag(m):
            name, html_tag = m.group("tag").lower(), m.group(0)
            attribute = re.compile(HTML_ATTRIBUTE.format("href" if name == "a" else "src"), re.I)
            value = attribute.search(html_tag)
            if not value:
                return html_tag
            # Raw HTML is left as it is by mkdocs, even in a markdown page: the final URL.
            new = self.resolve(
                value.group(2) or value.group(3) or "", *where[:2], True, name != "a"
            )
            if new is None:  # an image from another host: its alternative text
                alt = re.search(HTML_ATTRIBUTE.format("alt"), html_tag, re.I)
                return (alt.group(2) or alt.group(3)) if alt else ""
            return html_tag[: value.start()] + f'{value.group(1)}"{new}"' + html_tag[value.end() :]

        where = (page_repo, page_site, html)

        def everything(prose):
            prose = LINK.sub(link, prose)
            prose = REFERENCE.sub(reference, prose)
            return HTML_TAG.sub(tag, prose)

        return outside_code(text, everything)

    # -- assembling -----------------------------------------------------------------------

    def write_markdown(self, repo_path):
        site_path = self.pages[repo_path]
        text = self.rewrite(self.read(repo_path), repo_path, site_path, html=False)
        if site_path in [page for entry in self.nav for page in entry.values()]:
            # A tab that is one page: the left navigation would list only the page itself.
            text = "---\nhide:\n  - navigation\n---\n\n" + text
        (self.docs_dir / site_path).parent.mkdir(parents=True, exist_ok=True)
        (self.docs_dir / site_path).write_text(text, encoding="utf-8")

    def write_notebook(self, path):
        repo_path = f"docs/{path.name}"
        site_path = self.pages[repo_path]
        notebook = json.loads(path.read_text(encoding="utf-8"))
        owner_name = urlsplit(self.base).path.strip("/")
        colab = f"https://colab.research.google.com/github/{owner_name}/blob/{BRANCH}/notebooks/{path.name}"
        # The notebook's own Colab badge: the page's "Open in Colab" button replaces it.
        badge = re.compile(r"\[!\[[^\]]*\]\([^)]*\)\]\(" + re.escape(colab) + r"\)[ \t]*\n?")
        for cell in notebook["cells"]:
            if cell["cell_type"] == "markdown":
                source = badge.sub("", _source(cell))
                cell["source"] = self.rewrite(source, repo_path, site_path, html=True)
        # Widget state would make nbconvert load the widget manager from a CDN; the outputs'
        # text and images stay.
        notebook["metadata"].pop("widgets", None)
        if not (self.root / "notebooks" / path.name).is_file():
            self.warnings.append(f"{repo_path}: no notebooks/{path.name} for its Colab link")
        download = f"downloads/{path.name}"
        header = (
            '<p class="notebook-links">'
            f'<a class="md-button md-button--primary" href="{colab}">Open in Colab</a> '
            f'<a class="md-button" href="{self.relative(download, site_path, html=True)}" '
            f'download="{path.name}" title="The executed notebook, with its outputs">'
            "Download notebook</a></p>"
        )
        cell = {"cell_type": "markdown", "metadata": {}, "source": header}
        if notebook.get("nbformat", 4) >= 4 and notebook.get("nbformat_minor", 0) >= 5:
            cell["id"] = "site-notebook-links"
        notebook["cells"].insert(0, cell)
        (self.docs_dir / site_path).parent.mkdir(parents=True, exist_ok=True)
        (self.docs_dir / site_path).write_text(json.dumps(notebook, ensure_ascii=False), "utf-8")
        (self.docs_dir / download).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, self.docs_dir / download)  # as it is in docs/, for the download


def prepare(src):
    """An empty site source folder at `src`: made here, or made by this script before."""
    if src.exists() and any(src.iterdir()) and not (src / MARKER).exists():
        raise SystemExit(f"{src} is not empty and was not made by {Path(__file__).name}: refused")
    shutil.rmtree(src, ignore_errors=True)
    (src / "docs").mkdir(parents=True)
    (src / MARKER).write_text("made by tools/build_site.py; deleted and remade by each build\n")


def check_out(root, src, out):
    """mkdocs empties the output folder first: refuse one that holds anything but a site."""
    if root.is_relative_to(out) or src.is_relative_to(out):
        raise SystemExit(f"--out {out} holds the repository or the site source: refused")
    if out.exists() and any(out.iterdir()) and not (out / "404.html").exists():
        raise SystemExit(f"--out {out} is not empty and holds no built site: refused")


def assemble(root, src, out, contents=None, try_page=None):
    """Write the site source (src/mkdocs.yml, src/docs/) and return the mkdocs.yml path.
    `try_page`: what `prepare_try_page` returned, or None for a site without that page."""
    config = yaml.safe_load((root / "mkdocs.yml").read_text(encoding="utf-8"))
    prepare(src)
    directory_urls = config.get("use_directory_urls", True)
    site = Site(root, src / "docs", contents, directory_urls, try_page is not None)
    site.plan()
    for repo_path, site_path in site.pages.items():
        if site_path.endswith(".md"):
            site.write_markdown(repo_path)
    for path in site.notebooks:
        site.write_notebook(path)
    if try_page is not None:
        write_try_page(root, src / "docs", try_page)
    (src / "docs" / "assets").mkdir(exist_ok=True)
    shutil.copy2(root / SITE_CSS, src / "docs" / "assets" / "site.css")  # mkdocs.yml extra_css
    for warning in site.warnings:
        print(f"warning: {warning}")
    config.update(
        docs_dir="docs",
        site_dir=str(out.resolve()),
        hooks=[str((root / hook).resolve()) for hook in config.get("hooks", [])],
        nav=site.nav,
    )
    config.setdefault("extra", {})["social"] = [
        {"icon": "fontawesome/brands/github", "link": site.base, "name": "the repository"}
    ]
    path = src / "mkdocs.yml"
    header = f"# Made by tools/build_site.py from {root / 'mkdocs.yml'}: edit that one.\n"
    path.write_text(header + yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="default: this repository")
    parser.add_argument("--src", type=Path, default=None, help="default: ROOT/artifacts/site-src")
    parser.add_argument("--out", type=Path, default=None, help="default: ROOT/artifacts/site")
    parser.add_argument(
        "--content",
        action="append",
        default=[],
        metavar="REPO_PATH=FILE",
        help="read the page REPO_PATH (e.g. benchmarks/README.md) from FILE instead (tests)",
    )
    parser.add_argument(
        "--try-page",
        choices=("auto", "require", "skip"),
        default="auto",
        help="the Try it page: built where LiteRT.js (web/node_modules) and the release's "
        ".tflite files can be had, else left out with a note (auto, the default); a build "
        "error without them (require: `make site`, the tests); left out (skip)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="the release's <name>_int8/_fp32 .tflite and .json files for the Try it page; "
        "default artifacts/tflite/<release name>/, exported there when missing",
    )
    parser.add_argument("--quiet", action="store_true", help="mkdocs prints warnings only")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    root = args.root.resolve()
    src = (args.src or root / "artifacts" / "site-src").resolve()
    out = (args.out or root / "artifacts" / "site").resolve()
    contents = dict(item.split("=", 1) for item in args.content)
    check_out(root, src, out)
    try_page = None
    if args.try_page != "skip":
        try:
            try_page = prepare_try_page(root, args.model_dir)
        except TryPageUnavailable as why:
            if args.try_page == "require":
                raise SystemExit(f"the Try it page: {why}") from None
            print(f"note: the site has no Try it page: {why}")
    config = assemble(root, src, out, contents, try_page)
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about its future
    subprocess.run(command + (["--quiet"] if args.quiet else []), check=True, env=env)
    print(f"Site: {out}/ (source: {src}/)")
    return out


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)
