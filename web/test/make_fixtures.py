"""Writes web/test/fixtures.json: what the Python side (Pillow, NumPy, mobilevit_utils) makes of
small deterministic images, for web/test/preprocess.test.js to check web/src/preprocess.js
against. Rerun after a change of Pillow or of mobilevit_utils.data's resizing:

    .venv/bin/python web/test/make_fixtures.py [OUT.json]
"""

import base64
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mobilevit_utils.data.decode import resize_image, to_rgb  # noqa: E402
from mobilevit_utils.models import Preprocessing  # noqa: E402

FILTERS = {
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "hamming": Image.HAMMING,
    "box": Image.BOX,
}


def b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def image(rng, height, width):
    """Smooth gradients plus noise: both flat and sharp regions."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 7 * 36], -1
    )
    noisy = base + rng.normal(0, 40, base.shape)
    return np.clip(np.round(noisy), 0, 255).astype("uint8")


def main():
    rng = np.random.default_rng(0)
    cases, images = [], []
    sizes = [(9, 13, 24, 24), (45, 70, 16, 16), (40, 30, 16, 16), (5, 7, 20, 11), (33, 31, 16, 16)]
    for height, width, out_h, out_w in sizes:
        pixels = image(rng, height, width)
        pil = Image.fromarray(pixels)
        images.append(b64(pixels))
        source = len(images) - 1
        for name, flt in FILTERS.items():
            out = np.asarray(pil.resize((out_w, out_h), flt))
            cases.append(
                {
                    "kind": "resize",
                    "filter": name,
                    "width": width,
                    "height": height,
                    "out_width": out_w,
                    "out_height": out_h,
                    "box": None,
                    "image": source,
                    "expected": b64(out),
                }
            )
        box = (1, 2, width - 1, height - 1)
        out = np.asarray(pil.resize((out_w, out_h), Image.BILINEAR, box=box))
        cases.append(
            {
                "kind": "resize",
                "filter": "bilinear",
                "width": width,
                "height": height,
                "out_width": out_w,
                "out_height": out_h,
                "box": list(box),
                "image": source,
                "expected": b64(out),
            }
        )
        for mode, options in [
            ("stretch", {}),
            ("crop", {"crop_to_aspect_ratio": True}),
            ("pad", {"pad_to_aspect_ratio": True}),
        ]:
            out = np.asarray(resize_image(pil, (out_h, out_w), **options))
            cases.append(
                {
                    "kind": "fit",
                    "resize": mode,
                    "width": width,
                    "height": height,
                    "out_width": out_w,
                    "out_height": out_h,
                    "image": source,
                    "expected": b64(out),
                }
            )
    # Transparency: composited on white.
    rgba = rng.integers(0, 256, (6, 7, 4), dtype="uint8")
    rgba[0, :, 3] = 0
    rgba[1, :, 3] = 255
    rgb = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    cases.append({"kind": "rgba", "pixels": b64(rgba), "expected": b64(rgb)})
    # The input tensor: channel order, scaling, int8 quantisation as TFLiteModel._quantise does.
    pixels = image(rng, 4, 5)
    for order, in_model, dtype, q_scale, zero_point in [
        ("RGB", True, "int8", 1.0, -128),
        ("BGR", False, "int8", 0.003921568859368563, -128),
        ("RGB", False, "uint8", 0.0078125, 3),
        ("BGR", False, "float32", None, None),
    ]:
        prepared = Preprocessing(order, 1 / 255, in_model).prepare(pixels[None])
        if dtype == "float32":
            expected = prepared.astype("float32")
        else:
            info = np.iinfo(dtype)
            q = np.round(prepared.astype("float32") / q_scale) + zero_point
            expected = np.clip(q, info.min, info.max).astype(dtype)
        cases.append(
            {
                "kind": "tensor",
                "channel_order": order,
                "in_model": in_model,
                "dtype": dtype,
                "scale": q_scale,
                "zero_point": zero_point,
                "pixels": b64(pixels),
                "expected": b64(expected),
            }
        )
    # The output: int8 de-quantised, then softmax.
    q = rng.integers(-128, 128, 10).astype("int8")
    scale, zero_point = 0.024168366566300392, -59
    logits = (q.astype("float32") - zero_point) * scale
    exp = np.exp(logits - logits.max())
    cases.append(
        {
            "kind": "output",
            "q": q.tolist(),
            "scale": scale,
            "zero_point": zero_point,
            "expected": (exp / exp.sum()).tolist(),
        }
    )
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("fixtures.json")
    path.write_text(
        json.dumps({"pillow": Image.__version__, "images": images, "cases": cases}) + "\n"
    )
    print(f"{len(cases)} cases: {path}")


if __name__ == "__main__":
    main()
