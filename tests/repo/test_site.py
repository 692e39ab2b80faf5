"""The website (`make site`, tools/build_site.py), built into a temporary folder, served on
127.0.0.1 and read in headless Chromium (Debian's, through Playwright): every page loads, every
internal link, anchor and image works, each notebook page shows its stored outputs and its Colab
and download links, code has copy buttons, search works, and nothing at all is fetched from
another host (every request is intercepted; the others are aborted and listed).

The Try it page (web/) runs the released model in the browser with LiteRT.js: its answers on a
fixed set of images, through the page's own code (file input, preprocess.js, LiteRT.js), are
compared with Python's LiteRT interpreter (`ai_edge_litert`) on the same files with the same
preprocessing (`data.read_image`, the sidecar's contract), for fp32 and int8, for the released
model and for a model of the reader's own; at a phone's viewport too. Any console error fails.

Skipped where Chromium is missing (`make install` installs it with apt-get where it can), except
under CI (the variable CI set), where a missing browser fails."""

import functools
import http.server
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import unquote, urldefrag, urlsplit
from urllib.request import urlopen

import numpy as np
import pytest
from site_support import CUT, READ_PAGE, READY, TryPage, compare, data_folder

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
LITERT = ROOT / "web" / "node_modules" / "@litertjs" / "core"

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
    # The Try it page needs LiteRT.js (npm ci) and the release's .tflite files (exported once,
    # by TensorFlow, into artifacts/tflite/): CI must build it; elsewhere it may be left out,
    # and its tests are then skipped.
    try_page = "require" if os.environ.get("CI") else "auto"
    command = [sys.executable, str(ROOT / "tools" / "build_site.py"), "--quiet"]
    command += ["--src", str(tmp / "src"), "--out", str(out), "--try-page", try_page, *extra]
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
        context = offline(browser.new_context(viewport={"width": 1280, "height": 900}))
        yield context
        context.close()
        browser.close()


def offline(context):
    """`context`, with requests to any host but 127.0.0.1 aborted and listed in `.outside`."""
    context.outside = []

    def route(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            context.outside.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    return context


@pytest.fixture(scope="module")
def phone(browser):
    """A phone's browser (390x844 CSS pixels, touch), beside the desktop one."""
    context = browser.browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )
    yield offline(context)
    context.close()


def page_urls(site, server):
    """Every page of the built site (every .html file but 404.html; index.html as its folder)."""
    paths = [p.relative_to(site).as_posix() for p in sorted(site.rglob("*.html"))]
    return [
        server + (path.removesuffix("index.html") if path.split("/")[-1] == "index.html" else path)
        for path in paths
        if path != "404.html"
    ]


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
    if os.environ.get("CI"):
        expected.add(server + "try/")
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


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_nothing_is_cut_on_a_desktop_or_a_phone(site, server, browser, phone, device, tmp_path):
    """Every page at 1280 and at 390 pixels: no clipped code block, no table wider than the page
    without a scroll container, no empty header row (screenshots of each page's first screen
    are kept in the test's folder)."""
    context = {"desktop": browser, "phone": phone}[device]
    page = context.new_page()
    found = {}
    for url in page_urls(site, server):
        page.goto(url, wait_until="load")
        cut = page.evaluate(CUT)
        if any(cut.values()):
            found[url.removeprefix(server) or "home"] = cut
        page.screenshot(path=tmp_path / f"{url.removeprefix(server).replace('/', '_')}.png")
    page.close()
    assert found == {}, f"cut at {device} width"
    assert context.outside == []


def is_file_name(text):
    return "README" in text or text.strip("`").endswith((".md", ".ipynb"))


def test_figures_zoom_and_links_read_as_page_titles(pages, server, browser):
    """A click on a notebook figure enlarges it (mkdocs-glightbox), from an image file the
    page links (not its base64 data a second time); no link to a page of the site is labelled
    with the name of the file it was made from."""
    page = browser.new_page()
    page.goto(notebook_url(server, NOTEBOOKS[1]), wait_until="load")
    figure = page.locator(".jp-OutputArea-output a.glightbox img").first
    assert "/figures/" in figure.evaluate("i => i.closest('a').href")
    figure.scroll_into_view_if_needed()
    figure.click()
    page.locator(".glightbox-container .gslide-image img").first.wait_for(timeout=10_000)
    page.close()
    named = {  # links to a page of the site labelled with the file it was made from
        url: [t for href, t in page["link_texts"] if href.startswith(server) and is_file_name(t)]
        for url, page in pages.items()
    }
    assert {url: texts for url, texts in named.items() if texts} == {}


def test_one_page_tabs_hide_the_navigation_and_search_skips_notebook_code(site, pages, server):
    """Home, Benchmarks and Guide are one page each: no left sidebar listing only themselves.
    Search indexes the notebooks' prose, not their code, so a result opens on an explanation."""
    for path in ("", "benchmarks/", "guide/"):
        assert pages[server + path]["navigation_hidden"], path or "home"
    assert not pages[notebook_url(server, NOTEBOOKS[0])]["navigation_hidden"]
    index = json.loads((site / "search" / "search_index.json").read_text())["docs"]
    notebook_text = " ".join(d["text"] for d in index if d["location"].startswith("notebooks/0"))
    assert "MobileViT" in notebook_text
    assert "os.environ.setdefault" not in notebook_text  # every notebook's first code cell


# -- the Try it page ----------------------------------------------------------------------------


def build_site_module():
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "tools" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def try_site(site):
    """The built site's Try it page folder, which CI must have (see `site`)."""
    folder = site / "try"
    if not (folder / "index.html").exists():
        missing("the Try it page (LiteRT.js: npm ci --prefix web; TensorFlow for its model files)")
    return folder


PARITY_PER_CLASS = 5  # 52 images in all: the parity is measured on at least 50


@pytest.fixture(scope="module")
def try_images(tmp_path_factory):
    """The images the page classifies: the first five CIFAR-10 training JPEGs of each class, as
    they are (50), and two made from one of them that need resizing: a wider PNG (97x61) and a
    JPEG stored on its side with an EXIF orientation (rotated upright by both sides). Without
    the data, deterministic images of the same kinds, never a skip."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("try-images")
    root = data_folder()
    paths = []
    if root is not None:
        train = root / "train" if (root / "train").is_dir() else root
        for class_folder in sorted(p for p in train.iterdir() if p.is_dir()):
            for image in sorted(class_folder.glob("*.jp*g"))[:PARITY_PER_CLASS]:
                paths.append(folder / f"{class_folder.name}_{image.name}")
                paths[-1].write_bytes(image.read_bytes())
        base = Image.open(paths[0]).convert("RGB")
    else:
        rng = np.random.default_rng(0)
        for i in range(10 * PARITY_PER_CLASS):
            y, x = np.mgrid[0:32, 0:32]
            smooth = np.stack([x * 8 * (i % 3), y * 8, (x + y) * 4 * (i % 4)], -1)
            image = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype("uint8")
            paths.append(folder / f"generated_{i}.png")
            Image.fromarray(image).save(paths[-1])
        base = Image.open(paths[0]).convert("RGB")
    paths.append(folder / "wide.png")
    base.resize((97, 61), Image.BICUBIC).save(paths[-1])
    paths.append(folder / "on_its_side.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    base.resize((48, 64), Image.BICUBIC).transpose(Image.ROTATE_90).save(
        paths[-1], quality=95, exif=exif
    )
    return paths


def test_try_page_serves_the_release_and_litert_from_the_site(try_site):
    from mobilevit_utils import presets, training

    build_site = build_site_module()
    assert build_site.RELEASE == presets.PRESETS[training.RELEASED_PRESET].checkpoint

    index = json.loads((try_site / "models" / "index.json").read_text())
    assert index["litert"] == json.loads((LITERT / "package.json").read_text())["version"]
    assert [m["id"] for m in index["models"]] == ["int8", "fp32"] and index["default"] == "int8"
    for model in index["models"]:
        sidecar = json.loads((try_site / model["sidecar"]).read_text())
        assert sidecar["precision"] == model["id"]
        assert sidecar["name"] == Path(build_site.RELEASE).name
    core = (try_site / "vendor" / "litert-core.js").read_text()
    assert '"@litertjs/' not in core  # its one import points beside it
    assert 'dtype: "int8"' in core  # the one addition to LiteRT.js


def test_try_page_gives_python_litert_answers(try_site, server, browser, try_images):
    """The released model, int8 and fp32, on the fixed images: the page's probabilities against
    Python's LiteRT interpreter on the same files (`compare`; tolerances above)."""
    tab = TryPage(browser, server + "try/")
    assert not tab.page.locator("#try-camera-label").is_visible(), "a camera button on a desktop"
    worst = {}
    for precision in ("int8", "fp32"):
        tab.use(precision)
        answers = tab.classify(try_images, precision)
        tflite = try_site / "models" / f"mobilevit_v2_050_cifar10_{precision}.tflite"
        worst[precision] = compare(answers, tflite, try_images, precision)
        assert len(answers[0]["top"]) == 5
    assert len(try_images) >= 50
    shown = tab.page.locator("#try-results li").all_inner_texts()
    assert len(shown) == 5 and "%" in shown[0]
    assert "ms for this image" in tab.page.locator("#try-timing").inner_text()
    tab.close()
    assert tab.errors == [], "console errors"
    assert browser.outside == []


def test_try_page_on_a_phone(try_site, server, phone, try_images):
    """At a phone's viewport (390x844, touch): nothing wider than the screen, the camera offered,
    and an image classified with its five classes in view."""
    tab = TryPage(phone, server + "try/")
    page = tab.page
    wide = "document.documentElement.scrollWidth"
    assert page.evaluate(wide) <= 390, "the page scrolls sideways on a phone"
    assert page.locator("#try-drop").is_visible()
    assert page.locator("#try-camera").get_attribute("capture") == "environment"
    assert page.locator("#try-camera-label").is_visible(), "no camera button on a touch screen"
    answers = tab.classify(try_images[:1], "int8")
    compare(
        answers,
        try_site / "models" / "mobilevit_v2_050_cifar10_int8.tflite",
        try_images[:1],
        "int8",
    )
    rows = page.locator("#try-results li")
    assert rows.count() == 5
    for i in range(5):
        box = rows.nth(i).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert page.evaluate(wide) <= 390
    tab.close()
    assert tab.errors == [], "console errors"
    assert phone.outside == []


@pytest.fixture(scope="module")
def own_models(tmp_path_factory):
    """A reader's own model, unlike the release in every way the sidecar describes: 3 classes,
    a 40x48 input, centre-cropped, BGR scaled to 0-1 before the model; exported by the project's
    `export.export` to fp32 and int8 (whose input quantisation then has scale 1/255)."""
    import keras

    from mobilevit_utils import export
    from mobilevit_utils.models import Preprocessing

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((40, 48, 3)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ],
        name="mine",
    )
    out = tmp_path_factory.mktemp("own-model")
    calibration = np.random.default_rng(0).uniform(0, 1, (16, 40, 48, 3)).astype("float32")
    paths = export.export(
        model,
        out,
        precisions=("fp32", "int8"),
        class_names=["left", "middle", "right"],
        calibration_images=calibration,
        preprocessing=Preprocessing(channel_order="BGR", scale=1 / 255, in_model=False),
        extra_metadata={"crop_to_aspect_ratio": True, "interpolation": "bilinear"},
    )
    return paths


def test_try_page_runs_your_own_model(try_site, server, browser, try_images, own_models, tmp_path):
    """The reader's .tflite and .json: their classes, their input contract, Python's answers;
    and a sidecar that does not fit the model is refused in one line, not a console error."""

    tab = TryPage(browser, server + "try/")
    page = tab.page
    page.locator("#try-own summary").click()
    for precision, tflite in own_models.items():
        page.set_input_files("#try-own-model", str(tflite))
        page.set_input_files("#try-own-sidecar", str(tflite.with_suffix(".json")))
        page.wait_for_function(
            f"tryIt.current === 'own' && tryIt.models.get('own').contract.precision === "
            f"'{precision}' && {READY}",
            timeout=60_000,
        )
        answers = tab.classify(try_images[-3:], "own")
        assert {name for name, _ in answers[0]["top"]} == {"left", "middle", "right"}
        compare(answers, tflite, try_images[-3:], precision)
    label = page.locator('input[name="try-model"][value="own"]').locator("xpath=..")
    assert "3 classes" in label.inner_text()

    wrong = tmp_path / "wrong.json"
    sidecar = json.loads(own_models["fp32"].with_suffix(".json").read_text())
    wrong.write_text(json.dumps({**sidecar, "class_names": ["cat", "dog"]}))
    page.set_input_files("#try-own-sidecar", str(wrong))
    page.wait_for_function("document.getElementById('try-app').dataset.state === 'error'")
    message = page.locator("#try-status").inner_text()
    assert "names 2 classes but the model outputs 3 scores" in message
    tab.close()
    assert tab.errors == [], "console errors"
    assert browser.outside == []
