"""How long `examples/photos_to_phone.sh` takes on a small folder of photos: the script the guide
copies its commands from ("From a folder of photos to your app"), with the `finetune` preset's
own epochs (3 of the head alone, 12 of every layer) unless HEAD_EPOCHS / EPOCHS say otherwise.

The folder is made here: 5 classes of 16 photos (a coloured shape on a noisy background, half
640x480 and half 480x640 JPEGs, a quarter of each class in a `more/` subfolder), and a
`new_photos/` folder of 5 more photos and one broken file. The script runs with the `mobilevit`
command on PATH (the checkout's, or a `pip install`'s) in a temporary folder, and this prints the
time of each step as the script reports it, and the total.

    python benchmarks/photos_to_phone.py > benchmarks/results/photos_to_phone.txt
    HEAD_EPOCHS=1 EPOCHS=2 python benchmarks/photos_to_phone.py     # the test's short run
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "photos_to_phone.sh"
# (class name, RGB colour, shape): learnable from colour alone even at 32x32.
CLASSES = (
    ("red_circle", (220, 40, 40), "ellipse"),
    ("green_square", (40, 170, 60), "rectangle"),
    ("blue_triangle", (40, 70, 220), "triangle"),
    ("yellow_star", (235, 205, 40), "star"),
    ("purple_ring", (140, 50, 170), "ring"),
)
SIZES = ((640, 480), (480, 640))  # (width, height): landscape and portrait
PER_CLASS = 16
STEP_LINE = re.compile(r"^== (\w+): exit status (\d+), (\d+) s$", re.M)


def _points(shape, box, rng):
    left, top, right, bottom = box
    cx, cy, r = (left + right) / 2, (top + bottom) / 2, (right - left) / 2
    if shape == "triangle":
        return [(cx, top), (right, bottom), (left, bottom)]
    turn = rng.uniform(0, np.pi)
    angles = np.arange(10) * np.pi / 5 + turn
    radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    return [(cx + d * np.cos(a), cy + d * np.sin(a)) for a, d in zip(angles, radii)]


def photo(colour, shape, size, rng):
    """One synthetic photo: a shape in `colour`, at a random place and size, on a light noisy
    background with a gradient (JPEG-like content, not flat colour)."""
    from PIL import Image, ImageDraw

    width, height = size
    base = rng.integers(150, 230, size=3)
    ramp = np.linspace(-25, 25, height)[:, None, None]
    noise = rng.normal(0, 12, size=(height, width, 3))
    background = np.clip(base + ramp + noise, 0, 255).astype("uint8")
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    side = int(min(width, height) * rng.uniform(0.45, 0.7))
    left = int(rng.integers(0, width - side))
    top = int(rng.integers(0, height - side))
    box = (left, top, left + side, top + side)
    shade = tuple(int(c) for c in np.clip(np.array(colour) + rng.integers(-20, 21, 3), 0, 255))
    if shape == "ellipse":
        draw.ellipse(box, fill=shade)
    elif shape == "rectangle":
        draw.rectangle(box, fill=shade)
    elif shape == "ring":
        draw.ellipse(box, outline=shade, width=max(8, side // 6))
    else:
        draw.polygon(_points(shape, box, rng), fill=shade)
    return image


def make_photos(folder, per_class=PER_CLASS, seed=0):
    """`folder/my_photos/<class>/` (a quarter of each class in `<class>/more/`) and
    `folder/new_photos/` (one photo per class and `broken.jpg`, which is not an image).
    Returns {"train": [paths], "new": [paths of the good new photos], "broken": path}."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    made = {"train": [], "new": []}
    for name, colour, shape in CLASSES:
        for i in range(per_class):
            sub = folder / "my_photos" / name / ("more" if i % 4 == 3 else "")
            sub.mkdir(parents=True, exist_ok=True)
            path = sub / f"IMG_{i:04d}.jpg"
            photo(colour, shape, SIZES[i % 2], rng).save(path, quality=85)
            made["train"].append(path)
        new = folder / "new_photos" / f"{name}.jpg"
        new.parent.mkdir(parents=True, exist_ok=True)
        photo(colour, shape, SIZES[len(made["new"]) % 2], rng).save(new, quality=85)
        made["new"].append(new)
    made["broken"] = folder / "new_photos" / "broken.jpg"
    made["broken"].write_bytes(b"this is not a JPEG file\n")
    return made


def run_script(workdir, env=None, command=("bash", str(SCRIPT))):
    """Run the example in `workdir`; returns (exit status, its output, seconds)."""
    start = time.perf_counter()
    result = subprocess.run(
        list(command), cwd=workdir, env=env, capture_output=True, text=True, timeout=3600
    )
    return result.returncode, result.stdout + result.stderr, time.perf_counter() - start


def main():
    epochs = {k: os.environ.get(k) for k in ("HEAD_EPOCHS", "EPOCHS") if os.environ.get(k)}
    load = os.getloadavg()[0]  # other work on the same cores slows every step
    with tempfile.TemporaryDirectory() as workdir:
        made = make_photos(workdir)
        status, output, seconds = run_script(workdir)
    if status != 0:
        sys.exit(f"the script failed (exit status {status}):\n{output[-3000:]}")
    settings = " ".join(f"{k}={v}" for k, v in epochs.items()) or "the finetune preset's epochs"
    print(f"$ {settings + ' ' if epochs else ''}python benchmarks/photos_to_phone.py")
    print(
        f"examples/photos_to_phone.sh on {len(made['train'])} photos (5 classes, 640x480 and "
        f"480x640), {settings}, {os.cpu_count()} CPU cores ({platform.machine()}), load "
        f"average {load:.1f} when it started"
    )
    for step, step_status, step_seconds in STEP_LINE.findall(output):
        print(f"{step}: {step_seconds} s (exit status {step_status})")
    print(f"total: {seconds:.0f} s")
    # What the model reached, on the 16 photos held out (an interval of about +-20 points).
    scores = re.findall(
        r"^(?:accuracy=.*|precision .*|(?:fp32|dynamic|fp16|int8) +\d.*)$", output, re.M
    )
    print("\n".join(["evaluate and export printed:", *scores]))


if __name__ == "__main__":
    main()
