"""Finding a local dataset on disk: the folder that holds the class folders (or the archive of
one), its train/val/test splits, and the image files of each class.

The conventions are `keras.utils.image_dataset_from_directory`'s: one folder per class, classes
sorted by name, images found recursively inside each class folder (`cat/indoor/*.jpg` is a
cat), names starting with a dot ignored. A dataset may add a level of split folders:
`train/<class>/`, and optionally `val/<class>/` and `test/<class>/`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import uuid
import zlib
from pathlib import Path

import numpy as np

from mobilevit_utils.data.errors import DataError
from mobilevit_utils.environment import DATA_ENV
from mobilevit_utils.environment import data_dir as default_data_dir



def _pillow_reads(feature):
    """Whether this Pillow was built with `feature` (webp, avif): wheels usually are."""
    from PIL import features

    try:
        return bool(features.check(feature))
    except Exception:  # an unknown feature name in an older Pillow
        return False


# The extensions read as images: what `decode.read_image` (Pillow) decodes. WebP and AVIF
# need Pillow's optional codecs, so they are listed only where this Pillow has them.
_OPTIONAL = {".webp": "webp", ".avif": "avif"}
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    *(suffix for suffix, feature in _OPTIONAL.items() if _pillow_reads(feature)),
)
# Photo formats this tool cannot decode: counted and named in one line, never silently left
# out (HEIC is the iPhone's default; camera raw files need a raw converter).
UNREAD_EXTENSIONS = tuple(
    suffix
    for suffix in (
        ".heic",
        ".heif",
        ".jxl",
        ".svg",
        ".dng",
        ".raw",
        ".cr2",
        ".cr3",
        ".nef",
        ".arw",
        ".orf",
        ".rw2",
        *_OPTIONAL,
    )
    if suffix not in IMAGE_EXTENSIONS
)
SPLITS = ("train", "val", "test")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
LOG = logging.getLogger("mobilevit_utils.data")


def _hidden(path):
    """Names starting with a dot (.git, .ipynb_checkpoints, macOS's ._* AppleDouble files) and
    macOS's __MACOSX folders are never images or classes (`image_dataset_from_directory`
    ignores dot-names too)."""
    name = path if isinstance(path, str) else path.name
    return name.startswith(".") or name == "__MACOSX"  # zip files made on macOS


def _is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not _hidden(name)


def _is_unread_image_name(name):
    return name.lower().endswith(UNREAD_EXTENSIONS) and not _hidden(name)


def report_unread(files):
    """Say in one line (a warning) how many files of `files` are photos this tool cannot read,
    naming their formats and the first few; returns them. Files of other kinds (notes, CSVs)
    are not images and pass unmentioned."""
    unread = [Path(f) for f in files if _is_unread_image_name(Path(f).name)]
    if unread:
        formats = ", ".join(sorted({f.suffix.lower() for f in unread}))
        shown = ", ".join(str(f) for f in unread[:3]) + (", ..." if len(unread) > 3 else "")
        LOG.warning(
            "skipped %d file(s) that are not images this tool reads (%s): %s; convert them to "
            "JPEG or PNG to use them",
            len(unread),
            formats,
            shown,
        )
    return unread


def iter_image_files(folder, recursive=True):
    """Image files in `folder` (and, when `recursive`, its subfolders, hidden ones left out),
    in Keras' order: each folder's files sorted by name, folders sorted by path. Symbolic links
    to folders are not followed (`follow_links=False`)."""
    if not recursive:
        yield from sorted(
            f for f in Path(folder).iterdir() if _is_image_name(f.name) and not f.is_dir()
        )
        return
    yield from (path for path in iter_files(folder) if _is_image_name(path.name))


def iter_files(folder):
    """Every file under `folder` (hidden ones left out), in `iter_image_files`' order."""
    walk = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _hidden(d)]
        walk.append((root, files))
    for root, files in sorted(walk, key=lambda entry: entry[0]):
        yield from (Path(root) / name for name in sorted(files))


def _image_files(folder, recursive=True):
    return list(iter_image_files(folder, recursive))


def _has_images(folder, recursive=True):
    return next(iter_image_files(folder, recursive), None) is not None


def _class_folders(root):
    return sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p))


def split_folders(path):
    """The split folders (train/, val/, test/) that `path` holds, in that order."""
    return [split for split in SPLITS if (Path(path) / split).is_dir()]


def _has_class_tree(path, recursive=False):
    roots = [path / split for split in split_folders(path)] or [path]
    return any(_has_images(child, recursive) for root in roots for child in _class_folders(root))


def _archives(path):
    return [p for suffix in ARCHIVE_SUFFIXES for p in sorted(path.glob(f"*{suffix}"))]


def resolve_local_root(path):
    """The folder holding the class tree: `path`, `path/<name>` inside it, or the extraction of
    a `.tar` archive (`path` itself, or found in `path`; extracted once under
    `data/extracted/`)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(
            f"Data folder {path} does not exist; point --data-dir (Python: data_dir=) or "
            f"{DATA_ENV} at a folder with train/<class>/ images (or the CIFAR-10 JPEG archive)."
        )
    if path.is_file():
        if path.name.endswith(ARCHIVE_SUFFIXES):
            return resolve_local_root(_extract(path))
        raise DataError(
            f"{path} is a file, not a folder; point --data-dir (Python: data_dir=) at the "
            "folder that holds train/<class>/ or <class>/ image folders (or at a .tar archive "
            "of one)."
        )
    if split_folders(path) or _has_class_tree(path):
        return path
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not _hidden(p)):
        if split_folders(child) and _has_class_tree(child, recursive=True):
            return child
    if _has_class_tree(path, recursive=True):  # images only in the class folders' subfolders
        return path
    archives = _archives(path)
    if archives:
        return resolve_local_root(_extract(archives[0]))
    raise DataError(
        f"{path} holds no images in class folders; expected {path}/<split>/<class>/*.jpg "
        f"(split: train, val or test), "
        f"{path}/<class>/*.jpg or a .tar archive of that layout."
    )


def training_folder(root):
    """The folder of the training class folders: `root/train`, or `root` itself when it has no
    split folders. A `root` with val/ or test/ but no train/ is refused: its split folders would
    otherwise be taken for classes."""
    root = Path(root)
    present = split_folders(root)
    if "train" in present:
        return root / "train"
    if present:
        held = " and ".join(f"{split}/" for split in present)
        raise DataError(
            f"{root} holds {held} but no train/ folder, so it has no training images (nor a "
            f"validation split carved from them); evaluate on what it has (--split "
            f"{present[-1]}), point at {root / present[-1]} itself to use its images as they "
            f"are, or add {root}/train/<class>/ images."
        )
    return root


def _extract(archive):
    """The folder `archive` is extracted in (`data/extracted/<name>`), extracted the first time:
    into a temporary folder beside it, renamed into place once whole, so that an archive that
    is damaged, unsafe (a `../` path, an absolute link: tarfile's "data" filter) or cut short,
    or an interrupted extraction, leaves nothing behind but a one-line `DataError`."""
    target = default_data_dir() / "extracted" / archive.name.split(".")[0]
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
        (partial / ".complete").write_text(str(archive))
        if target.exists() and not (target / ".complete").exists():
            shutil.rmtree(target)  # an older version's partial extraction
        try:
            partial.rename(target)
        except OSError:  # another process extracted it meanwhile
            if not (target / ".complete").exists():
                raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        if isinstance(error, OSError) and error.filename not in (None, str(archive)):
            raise  # a disk that is full or read-only: not the archive's fault
        raise DataError(f"Cannot extract {archive}: {_archive_problem(error)}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _archive_problem(error):
    """What is wrong with an archive that failed to extract, and what to do, in words."""
    if isinstance(error, tarfile.FilterError):  # ../ paths, absolute paths or links, devices
        return (
            f"{error} (an unsafe member, refused); nothing was extracted. An archive of data "
            "must keep its files inside its own folder: use another archive, or check this one "
            "and extract it yourself, then point --data-dir at the folder."
        )
    if isinstance(error, EOFError | zlib.error) or "unexpected end" in str(error):
        problem = "it is cut short (truncated, e.g. an interrupted download or copy)"
    elif isinstance(error, tarfile.ReadError):
        problem = "it is not a readable tar archive (plain, or gzip, bzip2 or xz compressed)"
    else:
        problem = f"{error.__class__.__name__}: {error}"
    return (
        f"{problem}; nothing was extracted. Replace it with a complete archive (tar tf ARCHIVE "
        "lists what it holds), or point --data-dir at a folder of images."
    )


def _check_class_folders(root, folders, class_names):
    if class_names is None:
        empty = [name for name in folders if not _has_images(root / name)]
        if empty:
            unread = {
                f.suffix.lower() for f in iter_files(root / empty[0]) if _is_unread_image_name(f.name)
            }
            raise DataError(
                f"Class folder {root / empty[0]} holds no images"
                + (f" this tool reads (only {', '.join(sorted(unread))})" if unread else "")
                + (f" (nor do {empty[1:]})" if len(empty) > 1 else "")
                + f"; add images (extensions {', '.join(IMAGE_EXTENSIONS)}) or remove it."
            )
        return tuple(folders)
    unknown = sorted(set(folders) - set(class_names))
    if unknown:
        raise DataError(
            f"{root} has class folders {unknown} that the model does not know; "
            f"expected folder names among {list(class_names)}."
        )
    return tuple(class_names)


def list_image_folder(root, class_names=None):
    """(paths, labels, class_names) of `root/<class>/**`, classes sorted by name and images
    found recursively, like Keras' `image_dataset_from_directory`. Files that are not images
    by extension are ignored; photos in a format this tool cannot read (HEIC, raw) are counted
    in one warning (`report_unread`). With `class_names`, folder names must be among them (labels
    follow their order). Hidden files and folders (names starting with a dot) are ignored;
    without `class_names`, a class folder with no images is refused (it would be a class the
    model can never learn)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; expected {root}/<class>/ image folders.")
    class_names = _check_class_folders(root, [p.name for p in _class_folders(root)], class_names)
    paths, labels, others = [], [], []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        every = list(iter_files(folder))
        files = [path for path in every if _is_image_name(path.name)]
        others += every
        paths.extend(files)
        labels.extend([label] * len(files))
    report_unread(others)
    if not paths:
        raise DataError(f"No images found in {root}/<class>/ (extensions {IMAGE_EXTENSIONS}).")
    return paths, np.asarray(labels, dtype="int32"), tuple(class_names)
