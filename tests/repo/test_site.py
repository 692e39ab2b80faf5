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


# -- the Try it page ----------------------------------------------------------------------------

# How close the page's probabilities must be to Python's, image by image and class by class.
# fp32: both run XNNPack's float kernels, on x86 here and in WebAssembly there, which sum in
# other orders and with or without fused multiply-adds: float32 rounding, measured around 1e-6;
# 1e-4 is that with room, and far below anything a reader would see (the page shows 0.1 %).
FP32_TOLERANCE = 1e-4
# int8: the kernels are integer arithmetic, and the page and Python measured identical outputs;
# the bound leaves room for one step of the int8 output (0.024 logits for the release) on one
# class, where two builds of a kernel might round a requantisation differently: one step
# moves a probability by at most about step / 4 = 0.006.
INT8_TOLERANCE = 0.01
TOLERANCE = {"fp32": FP32_TOLERANCE, "int8": INT8_TOLERANCE}
READY = "['ready', 'done'].includes(document.getElementById('try-app').dataset.state)"


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


def data_folder():
    """The CIFAR-10 JPEG tree the project trains on, found as the project finds it (the variable
    MOBILEVIT_DATA_DIR, else ../shared/data beside the repository), or None."""
    from mobilevit_utils.data import resolve_local_root

    for candidate in (os.environ.get("MOBILEVIT_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if candidate and Path(candidate).exists():
            return resolve_local_root(candidate)
    return None


@pytest.fixture(scope="module")
def try_images(tmp_path_factory):
    """The images the page classifies: one CIFAR-10 training JPEG per class, as they are (the
    first of each class folder), and two made from one of them that need resizing: a wider
    PNG (97x61) and a JPEG stored on its side with an EXIF orientation (rotated upright by
    both sides). Without the data, deterministic images of the same kinds, never a skip."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("try-images")
    root = data_folder()
    paths = []
    if root is not None:
        train = root / "train" if (root / "train").is_dir() else root
        for class_folder in sorted(p for p in train.iterdir() if p.is_dir()):
            first = sorted(class_folder.glob("*.jp*g"))[0]
            paths.append(folder / f"{class_folder.name}_{first.name}")
            paths[-1].write_bytes(first.read_bytes())
        base = Image.open(paths[0]).convert("RGB")
    else:
        rng = np.random.default_rng(0)
        for i in range(10):
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


def python_answers(tflite, paths):
    """Python's side: each file read by `data.read_image` (fitted to the input as the sidecar
    says), prepared by the sidecar's `preprocessing`, run by `TFLiteModel` (ai_edge_litert);
    returns (the input tensors, as the model takes them, and the probabilities)."""
    import json

    from mobilevit_utils.data import read_image
    from mobilevit_utils.inference import TFLiteModel, predict_proba
    from mobilevit_utils.models import Preprocessing

    sidecar = json.loads(Path(tflite).with_suffix(".json").read_text())
    model = TFLiteModel(tflite)
    resize = {
        key: bool(sidecar.get(key)) for key in ("crop_to_aspect_ratio", "pad_to_aspect_ratio")
    }
    size = tuple(sidecar["input_shape"][:2])
    images = np.stack([read_image(path, size, **resize) for path in paths])
    contract = {k: sidecar["preprocessing"][k] for k in ("channel_order", "scale", "in_model")}
    prepared = Preprocessing(**contract).prepare(images)
    return model._quantise(prepared), predict_proba(model, prepared)


class TryPage:
    """The Try it page in a browser tab, driven as a reader drives it."""

    def __init__(self, context, url):
        self.page = context.new_page()
        self.errors = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_function(READY, timeout=120_000)

    def use(self, model):
        self.page.check(f'input[name="try-model"][value="{model}"]')
        self.page.wait_for_function(f"tryIt.current === '{model}' && {READY}", timeout=60_000)

    def classify(self, paths, model):
        answers = []
        for path in paths:
            runs = self.page.evaluate("tryIt.runs")
            self.page.set_input_files("#try-file", str(path))
            self.page.wait_for_function(
                f"tryIt.runs > {runs} && tryIt.last.image === {path.name!r} && "
                f"tryIt.last.model === {model!r} && {READY}",
                timeout=60_000,
            )
            answers.append(self.page.evaluate("tryIt.last"))
        return answers

    def close(self):
        self.page.close()


def compare(answers, tflite, paths, precision):
    """Max |probability difference| and top-1 agreement of the page against Python, checked."""
    inputs, probabilities = python_answers(tflite, paths)
    rows = []
    for path, answer, want_input, want in zip(paths, answers, inputs, probabilities):
        got_input = np.asarray(answer["input"], dtype=want_input.dtype).reshape(want_input.shape)
        # The same decoded, fitted, prepared pixels: any difference is the preprocessing's.
        assert np.array_equal(got_input, want_input), f"{path.name}: the input tensors differ"
        got = np.asarray(answer["probabilities"])
        rows.append(
            (np.abs(got - want).max(), got.argmax() == want.argmax(), answer["inferenceMs"])
        )
    worst = max(row[0] for row in rows)
    agreement = np.mean([row[1] for row in rows])
    print(
        f"{precision} {Path(tflite).name}: {len(rows)} images, max |p diff| {worst:.2e}, "
        f"top-1 agreement {agreement:.0%}, median {np.median([r[2] for r in rows]):.1f} ms/image"
    )
    assert worst <= TOLERANCE[precision], f"{precision}: probabilities differ by {worst}"
    assert agreement == 1.0, f"{precision}: the top class differs on some images"
    return worst


def test_try_page_serves_the_release_and_litert_from_the_site(try_site):
    from mobilevit_utils import presets, training

    build_site = build_site_module()
    assert build_site.RELEASE == presets.PRESETS[training.RELEASED_PRESET].checkpoint
    import json

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
    shown = tab.page.locator("#try-results li").all_inner_texts()
    assert len(shown) == 5 and "%" in shown[0]
    assert "ms for this image" in tab.page.locator("#try-timing").inner_text()
    tab.close()
    assert tab.errors == [], "console errors"
    assert browser.outside == []


def test_try_page_on_a_phone(try_site, server, browser, try_images):
    """At a phone's viewport (390x844, touch): nothing wider than the screen, the camera offered,
    and an image classified with its five classes in view."""
    phone = browser.browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )
    outside = []

    def route(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    phone.route("**/*", route)
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
    phone.close()
    assert tab.errors == [], "console errors"
    assert outside == []


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
    import json

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
