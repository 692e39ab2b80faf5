"""Helpers of tests/repo/test_site.py: what the browser reads from each page, and the Try it
page's side (Python's answers for the same images, the page driven as a reader drives it, and
the comparison of the two)."""

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

# Read from each loaded page. Images get eager loading and are decoded before their size is read.
READ_PAGE = """async () => {
    const images = [...document.images];
    await Promise.all(images.map(i => { i.loading = "eager"; return i.decode().catch(() => null); }));
    const all = (selector) => [...document.querySelectorAll(selector)];
    return {
        links: all("a[href]").map(a => a.href),
        link_texts: all(".md-content a[href]").map(a => [a.href, a.textContent.trim()]),
        navigation_hidden: all(".md-sidebar--primary[hidden]").length > 0,
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


# What a reader would find cut on a page: code that scrolls sideways instead of wrapping
# (commands must read whole), a table wider than its place outside a box that scrolls within
# the page, an empty table header row, a page wider than the screen. Rich's text tables (Keras'
# model summary, whose output sets `white-space: pre` itself) are drawings: they scroll in
# their own box, as tables do.
CUT = """() => {
    const shown = (e) => e.getClientRects().length > 0;
    const width = document.documentElement.clientWidth;
    const drawing = (pre) => pre.closest(".jp-OutputArea-output") &&
        (pre.getAttribute("style") || "").replace(/\\s/g, "").includes("white-space:pre;");
    const code = [...document.querySelectorAll("pre, pre > code")].filter(shown)
        .filter(e => !drawing(e.closest("pre")) && e.scrollWidth > e.clientWidth + 1)
        .map(e => e.textContent.trim().split("\\n")[0].slice(0, 60));
    const scrolls = (t) => {
        for (let a = t; a && a !== document.body; a = a.parentElement) {
            const overflow = getComputedStyle(a).overflowX;
            if (["auto", "scroll"].includes(overflow) &&
                a.getBoundingClientRect().right <= width + 1) return true;
        }
        return false;
    };
    const tables = [...document.querySelectorAll("table")].filter(shown).filter(t => {
        const right = Math.min(width, t.parentElement.getBoundingClientRect().right);
        return t.getBoundingClientRect().right > right + 1 && !scrolls(t);
    }).map(t => t.textContent.trim().slice(0, 60));
    const empty_headers = [...document.querySelectorAll("thead tr")]
        .filter(r => shown(r) && !r.textContent.trim()).length;
    return {code, tables, empty_headers, page_too_wide: document.documentElement.scrollWidth > width + 1};
}"""

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


def data_folder():
    """The CIFAR-10 JPEG tree the project trains on, found as the project finds it (the variable
    MOBILEVIT_DATA_DIR, else ../shared/data beside the repository), or None."""
    from mobilevit_utils.data import resolve_local_root

    for candidate in (os.environ.get("MOBILEVIT_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if candidate and Path(candidate).exists():
            return resolve_local_root(candidate)
    return None


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
