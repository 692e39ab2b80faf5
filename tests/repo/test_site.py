"""The website (`make site`, tools/build_site.py), built into a temporary folder, served on
127.0.0.1 and read in headless Chromium (Debian's, through Playwright): every page loads, every
internal link, anchor and image works, each notebook page shows its stored outputs and its Colab
and download links, code has copy buttons, search works, and nothing at all is fetched from
another host (every request is intercepted; the others are aborted and listed).

Skipped where Chromium is missing (`make install` installs it with apt-get where it can), except
under CI (the variable CI set), where a missing browser fails."""

import functools
import http.server
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import unquote, urldefrag, urlsplit
from urllib.request import urlopen

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "docs").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = shutil.which("chromium") or next(
    (path for path in ["/usr/bin/chromium"] if Path(path).exists()), None
)
# Playwright adds --headless and a new, empty profile (--user-data-dir) itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = "mobilevit-keras/mobilevit-keras"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Chromium is not installed (`make install` installs it with apt-get, as root)",
)


def missing(what):
    """Skip for want of `what`; fail under CI, which must run this test."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {what} is missing (`make install` installs it)")
    pytest.skip(f"{what} is not installed (`make install` installs it)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built by tools/build_site.py as `make site` builds it, in a temporary folder."""
    if CHROMIUM is None:
        missing("Chromium (apt-get install chromium)")
    if importlib.util.find_spec("mkdocs_jupyter") is None:
        missing("mkdocs-jupyter (the `site` extra)")
    tmp = tmp_path_factory.mktemp("site")
    extra = []
    if not (ROOT / "benchmarks" / "README.md").exists():  # a placeholder until it exists
        placeholder = tmp / "benchmarks.md"
        placeholder.write_text("# Benchmarks\n\n[The ablations](results/ablations.csv).\n")
        extra = ["--content", f"benchmarks/README.md={placeholder}"]
    out = tmp / "site"
    command = [sys.executable, str(ROOT / "tools" / "build_site.py"), "--quiet"]
    command += ["--src", str(tmp / "src"), "--out", str(out), *extra]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


class Handler(http.server.SimpleHTTPRequestHandler):
    def list_directory(self, path):  # a link to a folder without index.html is broken
        self.send_error(404)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # the browser dropped a request
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(site):
    httpd = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(server):
    if importlib.util.find_spec("playwright") is None:
        missing("playwright (the `site` extra)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.outside = []  # requests to any host but 127.0.0.1: aborted, listed here

        def route(route):
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                context.outside.append(route.request.url)
                route.abort()

        context.route("**/*", route)
        yield context
        context.close()
        browser.close()


def page_urls(site, server):
    """Every page of the built site (every .html file but 404.html; index.html as its folder)."""
    paths = [p.relative_to(site).as_posix() for p in sorted(site.rglob("*.html"))]
    return [
        server + (path.removesuffix("index.html") if path.split("/")[-1] == "index.html" else path)
        for path in paths
        if path != "404.html"
    ]


# Read from each loaded page. Images get eager loading and are decoded before their size is read.
READ_PAGE = """async () => {
    const images = [...document.images];
    await Promise.all(images.map(i => { i.loading = "eager"; return i.decode().catch(() => null); }));
    const all = (selector) => [...document.querySelectorAll(selector)];
    return {
        links: all("a[href]").map(a => a.href),
        ids: all("[id], a[name]").map(e => e.id || e.name),
        images: images.map(i => ({src: i.src.slice(0, 80), width: i.naturalWidth})),
        outputs: all(".jp-OutputArea-output").length,
        output_images: all(".jp-OutputArea-output img").filter(i => i.naturalWidth > 0).length,
        code_cells: all(".jp-CodeCell .jp-InputArea").length,
        cell_copy_buttons: all(".jp-CodeCell .jp-InputArea clipboard-copy").length,
        code_blocks: all(".md-content pre > code").length,
        copy_buttons: all(".md-content pre button[data-md-type=copy], .md-content pre button.md-clipboard").length,
        colab: all(".notebook-links a").filter(a => a.textContent.includes("Colab")).map(a => a.href),
        download: all(".notebook-links a[download]").map(a => a.href),
        next: all("a.md-footer__link--next").map(a => a.href),
    };
}"""


@pytest.fixture(scope="module")
def pages(site, server, browser):
    """What each page shows, read once in Chromium: url -> dict (READ_PAGE, status, errors)."""
    found = {}
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    for url in page_urls(site, server):
        errors.clear()
        response = page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        found[url] = {
            **page.evaluate(READ_PAGE),
            "status": response.status if response else None,
            "errors": list(errors),
        }
    page.close()
    return found


def notebook_url(server, notebook):
    return f"{server}notebooks/{notebook.stem}/"


def test_every_page_loads_and_nothing_comes_from_other_hosts(pages, server, browser):
    # Benchmarks: benchmarks/README.md, or the placeholder that stands in for it.
    expected = {server, server + "notebooks/", server + "benchmarks/"}
    expected |= {notebook_url(server, notebook) for notebook in NOTEBOOKS}
    if (ROOT / "docs" / "guide.md").exists():
        expected.add(server + "guide/")
    assert expected <= set(pages)
    assert browser.outside == [], "requests to other hosts (the site must work offline)"
    assert {u: p["status"] for u, p in pages.items() if p["status"] != 200} == {}
    assert {u: p["errors"] for u, p in pages.items() if p["errors"]} == {}, "browser errors"


def test_internal_links_and_anchors_resolve(pages, server):
    targets = {}
    for url, page in pages.items():
        for link in page["links"]:
            if link.startswith(server):
                targets.setdefault(link, url)
    broken = {}
    for link in sorted({urldefrag(t)[0] for t in targets}):
        try:
            with urlopen(link) as response:
                status = response.status
        except HTTPError as error:
            status = error.code
        if status != 200:
            broken[link] = status
    assert broken == {}, "broken internal links"
    absent = {
        link: on_page
        for link, on_page in targets.items()
        if (fragment := unquote(urldefrag(link)[1]))
        and (target := urldefrag(link)[0]) in pages
        and fragment not in pages[target]["ids"]
    }
    assert absent == {}, "links to anchors that the target page lacks (link: page it is on)"


def test_every_image_loads(pages):
    broken = {u: [i["src"] for i in p["images"] if i["width"] == 0] for u, p in pages.items()}
    assert {u: b for u, b in broken.items() if b} == {}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_page_shows_outputs_and_its_links(pages, server, notebook):
    page = pages[notebook_url(server, notebook)]
    assert page["outputs"] > 0 and page["output_images"] > 0, "the stored outputs are missing"
    colab = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{notebook.name}"
    assert page["colab"] == [colab]
    assert len(page["download"]) == 1
    with urlopen(page["download"][0]) as response:  # the executed copy, untouched
        assert response.read() == notebook.read_bytes()
    # Previous / next follows the series: each notebook links to the next one.
    index = NOTEBOOKS.index(notebook)
    if index + 1 < len(NOTEBOOKS):
        assert page["next"] == [notebook_url(server, NOTEBOOKS[index + 1])]


def test_code_has_copy_buttons(pages, server, browser):
    """Notebook cells carry mkdocs-jupyter's copy button (Material's needs `pre > code`, which
    nbconvert's cells are not); markdown pages' code blocks carry Material's."""
    for notebook in NOTEBOOKS:
        page = pages[notebook_url(server, notebook)]
        assert page["code_cells"] > 0 and page["cell_copy_buttons"] == page["code_cells"]
    home = pages[server]
    assert home["code_blocks"] > 0 and home["copy_buttons"] == home["code_blocks"]

    # Clicking one copies the cell's code.
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.rstrip("/"))
    page = browser.new_page()
    page.goto(notebook_url(server, NOTEBOOKS[0]), wait_until="load")
    cell = page.locator(".jp-CodeCell .jp-InputArea").first
    cell.hover()
    cell.locator("clipboard-copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.strip() == cell.locator("pre").inner_text().strip() != ""
    page.goto(server, wait_until="load")
    block = page.locator(".md-content pre").first
    block.hover()
    block.locator("button[data-md-type=copy], button.md-clipboard").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.strip() == block.locator("code").inner_text().strip() != ""
    page.close()
    assert browser.outside == []


def test_first_notebook_page_renders(server, browser, tmp_path):
    from PIL import Image, ImageStat

    page = browser.new_page()
    page.goto(notebook_url(server, NOTEBOOKS[0]), wait_until="networkidle")
    png = page.screenshot(path=tmp_path / "notebook.png")
    page.close()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is nearly blank"
    assert max(ImageStat.Stat(image).stddev) > 10, "the screenshot is nearly uniform"
    assert browser.outside == []


def test_search_works_offline(server, browser):
    page = browser.new_page()
    page.goto(server, wait_until="networkidle")
    page.locator("input.md-search__input").click()
    page.keyboard.type("MobileViT block")
    results = page.locator(".md-search-result__item a")
    results.first.wait_for(timeout=20_000)
    hrefs = results.evaluate_all("links => links.map(a => a.href)")
    page.close()
    assert any("/notebooks/" in href for href in hrefs), hrefs
    assert browser.outside == []
