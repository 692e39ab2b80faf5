"""Small synthetic data shared by tests and their subprocess scripts."""

import os
from pathlib import Path

import numpy as np

from mobilevit_utils import data


def learnable_images(n_per_class=12, classes=3, size=32, seed=0):
    """(images, labels): each class has its own mean brightness, so a model can learn it."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = np.clip(
        rng.normal(60 + 60 * y[:, None, None, None], 30, size=(len(y), size, size, 3)), 0, 255
    )
    return x.astype("uint8"), y


def tiny_dataset(n_per_class=12, classes=3, size=32, seed=0):
    """`learnable_images` split 75/25 into an `ImageDataset` with classes class0, class1, ..."""
    x, y = learnable_images(n_per_class, classes, size, seed)
    x_train, y_train, x_val, y_val = data.stratified_split(x, y, 0.25, seed)
    names = tuple(f"class{c}" for c in range(classes))
    return data.ImageDataset(x_train, y_train, x_val, y_val, names, "synthetic")


def write_image_tree(root, images, labels, class_names):
    """Save images as root/<class name>/NNNN.png, the layout `data.load_dataset` reads."""
    root = Path(root)
    data.save_image_folder(root.parent, images, labels, class_names, split=root.name)
    return root


def random_images(count, size=(32, 32), seed=0):
    """Uniform-noise RGB images (count, height, width, 3) as uint8."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, *size, 3), dtype=np.uint8)


def run_cli(capsys, *args):
    """(exit status, stdout, stderr) of `python -m mobilevit_utils ARGS`, in this process."""
    from mobilevit_utils import cli

    capsys.readouterr()
    try:
        status = cli.main([str(a) for a in args])
    except SystemExit as exit:  # argparse
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def refused(capsys, *args, says):
    """The command exits 2 with one `error:` line, no traceback, naming every part of `says`."""
    status, out, err = run_cli(capsys, *args)
    assert status == 2, (out, err)
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert "Traceback" not in err
    for part in [says] if isinstance(says, str) else says:
        assert part in err, err
    return err


# XLA's CPU backend compiles JAX's steps (and eager ops) without LLVM optimisation here: the
# tests check what the code computes, not how fast, and a JAX run spends most of its time
# compiling (backend_roundtrip.py on 2 cores, timed once by hand: 177 s at the default level,
# 126 s at level 0).
# TensorFlow, whose XLA steps gained nothing from it, keeps the default.
FAST_XLA_COMPILE = "--xla_backend_optimization_level=0"


def backend_env(backend, xla_flags=()):
    """os.environ for a subprocess on `backend`, with quiet TensorFlow logs; `xla_flags` are
    added to XLA_FLAGS (and, on JAX, the fast compile above)."""
    flags = [*xla_flags, *([FAST_XLA_COMPILE] if backend == "jax" else [])]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if flags:
        env["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()
    return env
