"""Where things live, which mode we run in, and what we run on.

Environment variables (all optional):

- `MOBILEVIT_QUICK=1`: quick mode — small subsets and few steps, so each notebook runs in about
  a minute on 2 CPU cores (what CI uses). Unset: the real thing.
- `MOBILEVIT_DATA_DIR`: a local dataset (class-per-folder tree or the CIFAR-10 JPEG archive),
  used instead of downloading; see `mobilevit_utils.data`.
- `MOBILEVIT_ARTIFACTS`: where notebooks and runs write figures, checkpoints and reports
  (default: `artifacts/` in the repository, or in the working directory outside it).
- `KERAS_BACKEND`: tensorflow (default), jax or torch — set it before Keras is imported.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import sys
from importlib import metadata
from pathlib import Path

QUICK_ENV = "MOBILEVIT_QUICK"
DATA_ENV = "MOBILEVIT_DATA_DIR"
ARTIFACTS_ENV = "MOBILEVIT_ARTIFACTS"

# Versions the notebooks were written and tested against (see environment.yml for why).
SUPPORTED = {"keras": (3, 15), "tensorflow": (2, 21)}


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (C++ log lines that bypass Python logging), e.g. TensorFlow's
    CUDA probing on machines without a GPU. Python exceptions still propagate normally."""
    if os.environ.get("MOBILEVIT_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_backend_started = False


def start_backend_quietly():
    """Initialise the backend's devices once, with its C++ start-up lines silenced (TensorFlow's
    CUDA probing prints `failed call to cuInit` on machines without a GPU). Importing the
    package does not do this; the CLI, `training.train` and the notebooks' set-up call it."""
    global _backend_started
    if _backend_started:
        return
    import keras

    with quiet_stderr():
        keras.ops.convert_to_numpy(keras.ops.zeros(()))
    _backend_started = True


def quick_mode():
    """True when `MOBILEVIT_QUICK` is set to 1/true/yes."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def project_root(start=None):
    """The repository root (the folder holding `mobilevit_utils/` and `pyproject.toml`) above
    `start` (default: the working directory), or None outside a checkout."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "mobilevit_utils").is_dir():
            return folder
    return None


def repository_file(relative, repo_url, branch="main"):
    """A committed file of the repository (`benchmarks/results/...`): the checkout's copy, else
    downloaded from `repo_url` and cached (Colab installs the package, not the repository)."""
    root = project_root()
    if root is not None and (root / relative).is_file():
        return root / relative
    import keras

    origin = f"{repo_url.rstrip('/')}/raw/{branch}/{relative}"
    return Path(keras.utils.get_file(Path(relative).name, origin))


def _relative(path):
    """`path` relative to the repository, else to the working directory; None if in neither."""
    for base in (project_root(), Path.cwd().resolve()):
        if base is not None and path.is_relative_to(base):
            return path.relative_to(base).as_posix() or "."
    return None


def display_path(path):
    """`path` as committed files record it: relative to the repository (or the working
    directory) when inside it, so no machine's absolute paths end up in results."""
    path = Path(path).resolve()
    return _relative(path) or path.name


def readable_path(path):
    """`path` for a message: relative where `display_path` makes it so (a notebook's output
    then shows no machine's absolute path), else in full, so that it can be found."""
    path = Path(path).resolve()
    return _relative(path) or str(path)


def data_dir():
    """Where downloads and caches go: `<repo>/data`, else `./data`."""
    root = project_root()
    return (root or Path.cwd()) / "data"


def keras_home_dir():
    """This project's folder beside Keras' own downloads: `~/.keras/mobilevit` (or under
    `KERAS_HOME`): downloaded checkpoints, and caches that belong nowhere else."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "mobilevit"


def artifacts_dir(*parts, create=True):
    """A folder under the artifacts root (`MOBILEVIT_ARTIFACTS` or `<repo>/artifacts`)."""
    base = os.environ.get(ARTIFACTS_ENV)
    root = Path(base) if base else (project_root() or Path.cwd()) / "artifacts"
    path = root.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


BACKENDS = ("tensorflow", "jax", "torch")


def backend_problem():
    """Why the backend `KERAS_BACKEND` names cannot run (one line), or None when it can.

    Checked before Keras is imported, whose own error is a traceback from deep inside it."""
    import importlib.util

    backend = os.environ.get("KERAS_BACKEND", "tensorflow").strip()
    if backend not in BACKENDS:
        return (
            f"KERAS_BACKEND={backend!r} is not a backend mobilevit-keras supports; "
            f"set it to one of {', '.join(BACKENDS)}"
        )
    if importlib.util.find_spec(backend) is None:
        extra = "" if backend == "tensorflow" else " (pip install -e .[backends])"
        return f"KERAS_BACKEND={backend} but {backend} is not installed{extra}"
    return None


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _major_minor(version):
    return tuple(int(p) for p in version.split(".")[:2])


def check_versions():
    """Raise a clear error when Keras is too old, warn when Keras/TensorFlow differ from the
    tested versions; return the installed versions."""
    versions = {name: _version(name) for name in ("keras", "tensorflow", "jax", "torch")}
    keras_version = versions["keras"]
    if keras_version is None or _major_minor(keras_version) < (3, 5):
        raise RuntimeError(
            f"mobilevit-keras needs Keras 3 (tested with {SUPPORTED['keras'][0]}."
            f"{SUPPORTED['keras'][1]}), found {keras_version}: run `pip install -e .` "
            "(or `pip install keras==3.15.1`) and restart the kernel."
        )
    for name, tested in SUPPORTED.items():
        found = versions.get(name)
        if found and _major_minor(found) != tested:
            import warnings

            warnings.warn(
                f"{name} {found} is installed; mobilevit-keras is tested with "
                f"{tested[0]}.{tested[1]}. If something breaks, `pip install -e .` installs the "
                "tested versions (restart the kernel afterwards).",
                stacklevel=2,
            )
    return versions


def set_seed(seed):
    """Seed Python, NumPy and the Keras backend from one number."""
    import keras
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


def describe():
    """Versions, backend and devices: recorded next to every training run."""
    import keras

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "backend": keras.backend.backend(),
        "quick_mode": quick_mode(),
        "versions": {k: v for k, v in check_versions().items() if v},
    }
    info["devices"] = _devices(info["backend"])
    return info


def _devices(backend):
    try:
        if backend == "jax":
            import jax

            return [str(d) for d in jax.devices()]
        if backend == "torch":
            import torch

            return ["cuda:0"] if torch.cuda.is_available() else ["cpu"]
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices()]
    except Exception as error:  # a description must never break a run
        return [f"unknown ({error.__class__.__name__})"]
