"""Image files to uint8 RGB arrays: the one decoder that training, evaluation, prediction and
int8 calibration all go through (`read_image`), and `decode_images` for many files at once.

What it does to a file, in order:

- turns it upright by its EXIF orientation (`PIL.ImageOps.exif_transpose`): a phone photo
  taken in portrait comes out in portrait, as every image viewer shows it;
- scales 16-bit and 32-bit greyscale (Pillow's I;16 and I modes) to 0-255 by the bit depth
  the file declares (16 unless a TIFF says otherwise), where a plain conversion clips
  every value above 255 to white;
- composites transparent images (RGBA, LA, PA, and palette or greyscale images with a
  transparent colour) on white, the background a viewer or web page shows them on:
  dropping the alpha channel instead would show whatever colour the transparent pixels hold,
  often black;
- converts every other mode (palette, CMYK, greyscale, 1-bit, YCbCr...) to RGB;
- resizes to `image_size` when given (bilinear, `INTERPOLATION`): stretched (the default), or without distortion with
  Keras' `crop_to_aspect_ratio` (the largest centred window of the target shape) or
  `pad_to_aspect_ratio` (the whole image, black bars), as `image_dataset_from_directory`.
"""

from __future__ import annotations

import collections
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mobilevit_utils.data.errors import BadImageError, DataError
from mobilevit_utils.data.folders import UNREAD_EXTENSIONS

LOG = logging.getLogger("mobilevit_utils.data")
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
PAD_VALUE = (0, 0, 0)  # pad_to_aspect_ratio's bars, black like tf.image.resize_with_pad
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# How every resize samples the image (Keras' default too); exported sidecars record it, so that
# an app resizes photos as training did.
INTERPOLATION = "bilinear"


class _UnsupportedModeError(ValueError):
    pass


def _check_aspect(crop_to_aspect_ratio, pad_to_aspect_ratio):
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise DataError(
            "Choose one of crop_to_aspect_ratio and pad_to_aspect_ratio, not both: cropping "
            "keeps the centre of each image, padding all of it with black bars."
        )


def _declared_bits(image):
    """The bit depth a wide greyscale file declares: TIFF's BitsPerSample, else 16 for I;16
    modes and 16-bit-range "I" images (PNG stores at most 16), else 32."""
    tags = getattr(image, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None  # BitsPerSample
    if bits:
        return int(bits[0] if isinstance(bits, tuple | list) else bits)
    if image.mode.startswith("I;16"):
        return 16
    return None  # decided from the values


def _wide_grey_to_8bit(image, bits):
    """An "L" image from a 16/32-bit integer or float greyscale one, scaled, not clipped."""
    from PIL import Image

    pixels = np.asarray(image).astype("float64")
    if image.mode == "F":  # floats: 0-1 when they lie there, else 0-255
        scale = 255.0 if pixels.size and pixels.max() <= 1.0 else 1.0
    else:
        if bits is None:
            bits = 16 if (pixels.size == 0 or pixels.max() < 65536) else 32
        scale = 255.0 / (2**bits - 1)
    eight = np.clip(np.round(pixels * scale), 0, 255).astype("uint8")
    return Image.fromarray(eight, mode="L")


def to_rgb(image):
    """An upright 8-bit RGB copy of a PIL image (see the module docstring for each mode)."""
    from PIL import Image, ImageOps

    bits = _declared_bits(image) if image.mode in _WIDE_GREY_MODES else None
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_GREY_MODES:
        image = _wide_grey_to_8bit(image, bits)
    if image.mode in ("P", "L", "RGB", "1") and "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as error:  # LAB and other modes Pillow cannot convert directly
        raise _UnsupportedModeError(image.mode) from error


def resize_image(image, image_size, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False):
    """A PIL RGB image resized (`INTERPOLATION`) to `image_size=(height, width)`: stretched, or
    with the aspect ratio kept by cropping the centre or padding (Keras' conventions)."""
    from PIL import Image

    _check_aspect(crop_to_aspect_ratio, pad_to_aspect_ratio)
    height, width = (int(side) for side in image_size)
    w, h = image.size
    if (w, h) == (width, height):
        return image
    if crop_to_aspect_ratio:  # the largest centred window of the target shape (smart_resize)
        crop_h, crop_w = min(h, int(w * height / width)), min(w, int(h * width / height))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        box = (left, top, left + crop_w, top + crop_h)
        return image.resize((width, height), Image.BILINEAR, box=box)
    if pad_to_aspect_ratio:  # the whole image, centred between bars
        scale = min(width / w, height / h)
        inner = (max(1, round(w * scale)), max(1, round(h * scale)))
        canvas = Image.new("RGB", (width, height), PAD_VALUE)
        offset = ((width - inner[0]) // 2, (height - inner[1]) // 2)
        canvas.paste(image.resize(inner, Image.BILINEAR), offset)
        return canvas
    return image.resize((width, height), Image.BILINEAR)


def _what_is_wrong(path, error):
    """What a user can act on, instead of PIL's `cannot identify image file <_io.BytesIO ...>`."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return "is a broken symbolic link (its target does not exist)"
    if not path.exists():
        return "does not exist (moved or deleted while loading?)"
    if path.is_dir():
        return "is a folder, not an image"
    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    if isinstance(error, PermissionError):
        return "cannot be read (permission denied)"
    if isinstance(error, _UnsupportedModeError):
        return f"has colour mode {error}, which cannot be converted to RGB here"
    if path.suffix.lower() in UNREAD_EXTENSIONS:
        return f"is {path.suffix[1:].upper()}, a format this tool does not read; convert it to JPEG or PNG"
    if "cannot identify image file" in str(error):
        return "is not an image that Pillow can read (not JPEG, PNG, BMP, GIF...), or is damaged"
    return f"is damaged or truncated ({error.__class__.__name__}: {str(error)[:80]})"


def read_image(path, image_size=None, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False):
    """The one image decoder: `path` as an upright uint8 RGB array (H, W, 3), resized to
    `image_size=(height, width)` when given (see `resize_image`).

    Raises `BadImageError` (naming the file and what is wrong with it) when it cannot.
    """
    from PIL import Image

    _check_aspect(crop_to_aspect_ratio, pad_to_aspect_ratio)
    try:
        with Image.open(path) as image:
            rgb = to_rgb(image)
        if image_size:
            rgb = resize_image(rgb, image_size, crop_to_aspect_ratio, pad_to_aspect_ratio)
        return np.asarray(rgb, dtype="uint8")
    except Exception as error:  # PIL raises several types for broken files
        raise BadImageError(path, _what_is_wrong(path, error)) from None


def common_size(images):
    """The most common (height, width) of decoded images (ties: the first one met)."""
    return collections.Counter(image.shape[:2] for image in images).most_common(1)[0][0]


def decode_images(
    paths,
    image_size=None,
    on_error="raise",
    workers=None,
    crop_to_aspect_ratio=False,
    pad_to_aspect_ratio=False,
):
    """Decode image files (`read_image`) to a uint8 array (N, H, W, 3).

    `image_size=(h, w)` resizes every image; without it, images of differing sizes are resized
    to the most common size among them (a warning says which). `on_error="skip"` drops
    undecodable files instead of raising. Returns (images, kept_indices, skipped_paths).
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    _check_aspect(crop_to_aspect_ratio, pad_to_aspect_ratio)
    size = tuple(image_size) if image_size else None

    def decode(path):
        try:
            return read_image(path, size, crop_to_aspect_ratio, pad_to_aspect_ratio)
        except BadImageError as error:
            if on_error == "raise":
                raise
            LOG.warning("skipped %s: it %s", path, error.reason)
            return None

    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        decoded = list(pool.map(decode, paths))
    kept = [i for i, image in enumerate(decoded) if image is not None]
    skipped = tuple(str(paths[i]) for i, image in enumerate(decoded) if image is None)
    if skipped:
        LOG.warning("skipped %d unreadable file(s) of %d", len(skipped), len(paths))
    if not kept:
        raise DataError("None of the images could be decoded; check the files named above.")
    images = [decoded[i] for i in kept]
    if len({image.shape for image in images}) > 1:
        images = _to_common_size(images, crop_to_aspect_ratio, pad_to_aspect_ratio)
    return np.stack(images), np.asarray(kept), skipped


def _to_common_size(images, crop_to_aspect_ratio, pad_to_aspect_ratio):
    from PIL import Image

    target = common_size(images)
    sizes = sorted({image.shape[:2] for image in images})
    LOG.warning(
        "Images have %d different sizes (%s); resized them to %dx%d, the most common "
        "(choose with --image-size HEIGHT WIDTH, Python: image_size=(height, width))",
        len(sizes),
        ", ".join(f"{h}x{w}" for h, w in sizes[:4]) + ("..." if len(sizes) > 4 else ""),
        *target,
    )
    return [
        image
        if image.shape[:2] == target
        else np.asarray(
            resize_image(Image.fromarray(image), target, crop_to_aspect_ratio, pad_to_aspect_ratio)
        )
        for image in images
    ]
