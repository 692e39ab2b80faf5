"""The one image decoder (`data.read_image`): upright, 8-bit RGB, whatever the file's mode."""

import numpy as np
import pytest
from PIL import Image

from mobilevit_utils import data

RED, WHITE = (255, 0, 0), (255, 255, 255)


def gradient(height=8, width=12):
    """An 8-bit greyscale ramp that spans 0-255."""
    return np.linspace(0, 255, height * width).round().astype("uint8").reshape(height, width)


def test_exif_orientation_6_comes_out_upright(tmp_path):
    """A phone held upright stores a landscape sensor image with orientation 6 ("rotate 90°
    clockwise to view"): stored 60 wide x 40 tall, shown 40 wide x 60 tall, and what the
    sensor has at its top-left is at the viewer's top-right."""
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:10, :10] = RED
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    upright = data.read_image(path)
    assert upright.shape == (60, 40, 3)
    top_right, top_left = upright[:8, -8:].mean((0, 1)), upright[:8, :8].mean((0, 1))
    np.testing.assert_allclose(top_right, RED, atol=20)
    assert top_left.max() < 20
    # Resizing happens after the rotation: the model sees the photo as its owner does.
    assert data.read_image(path, image_size=(30, 20)).shape == (30, 20, 3)


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    grey = gradient()
    Image.fromarray(grey.astype("uint16") * 257).save(tmp_path / "deep.png")  # 0-65535
    Image.fromarray(grey).save(tmp_path / "plain.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    deep, plain = data.read_image(tmp_path / "deep.png"), data.read_image(tmp_path / "plain.png")
    assert deep.shape == plain.shape == (8, 12, 3)
    assert np.abs(deep.astype(int) - plain.astype(int)).max() <= 1
    assert deep.min() == 0 and deep.max() == 255 and (deep < 255).mean() > 0.9  # not white


def test_sixteen_bit_tiff_and_wide_integer_images_are_scaled(tmp_path):
    grey = gradient()
    Image.fromarray(grey.astype("uint16") * 257).save(tmp_path / "deep.tif")
    decoded = data.read_image(tmp_path / "deep.tif")
    assert np.abs(decoded[..., 0].astype(int) - grey).max() <= 1
    # 32-bit integer pixels holding 16-bit values (older Pillows open 16-bit PNGs so).
    wide = data.to_rgb(Image.fromarray(grey.astype("int32") * 257, mode="I"))
    assert np.abs(np.asarray(wide)[..., 0].astype(int) - grey).max() <= 1


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (6, 4), 0)
    image.putpalette([0, 0, 255] + [255, 0, 0] + [0] * 762)  # 0 blue, 1 red
    image.paste(1, (0, 0, 3, 4))  # left half red, right half blue
    image.info["transparency"] = 0  # blue is the transparent colour
    image.save(tmp_path / "logo.png", transparency=0)
    decoded = data.read_image(tmp_path / "logo.png")
    np.testing.assert_array_equal(decoded[:, :3], np.broadcast_to(RED, (4, 3, 3)))
    np.testing.assert_array_equal(decoded[:, 3:], np.broadcast_to(WHITE, (4, 3, 3)))
    gif = tmp_path / "logo.gif"
    image.save(gif, transparency=0)
    np.testing.assert_array_equal(data.read_image(gif), decoded)


def test_rgba_is_composited_on_white(tmp_path):
    pixels = np.zeros((2, 3, 4), np.uint8)
    pixels[0] = (0, 0, 0, 0)  # transparent black: white, not black
    pixels[1] = (0, 0, 200, 255)  # opaque blue stays blue
    pixels[1, 2] = (0, 0, 0, 128)  # half-transparent black: mid grey
    Image.fromarray(pixels, "RGBA").save(tmp_path / "rgba.png")
    decoded = data.read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(decoded[0], np.broadcast_to(WHITE, (3, 3)))
    np.testing.assert_array_equal(decoded[1, :2], [(0, 0, 200)] * 2)
    np.testing.assert_allclose(decoded[1, 2], [127] * 3, atol=1)


def test_la_grey_with_alpha_is_composited_on_white(tmp_path):
    pixels = np.zeros((2, 2, 2), np.uint8)
    pixels[0] = (40, 255)  # opaque dark grey
    pixels[1] = (40, 0)  # transparent
    Image.fromarray(pixels, "LA").save(tmp_path / "la.png")
    decoded = data.read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(decoded[0], [(40, 40, 40)] * 2)
    np.testing.assert_array_equal(decoded[1], [WHITE] * 2)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "print.jpg", quality=95)
    decoded = data.read_image(tmp_path / "print.jpg")
    assert decoded.shape == (16, 16, 3)
    np.testing.assert_allclose(decoded.mean((0, 1)), RED, atol=12)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_one_bit_become_three_equal_channels(tmp_path, mode):
    grey = gradient()
    image = Image.fromarray(grey).convert(mode) if mode == "1" else Image.fromarray(grey)
    image.save(tmp_path / f"{mode}.png")
    decoded = data.read_image(tmp_path / f"{mode}.png")
    assert decoded.shape == (8, 12, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 1])
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    if mode == "L":
        np.testing.assert_array_equal(decoded[..., 0], grey)
    else:
        assert set(np.unique(decoded).tolist()) == {0, 255}


def test_plain_rgb_is_unchanged(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(data.read_image(tmp_path / "rgb.png"), pixels)


def test_resizing_stretches_crops_or_pads(tmp_path):
    """Keras' conventions: stretch by default, `crop_to_aspect_ratio` keeps the centre,
    `pad_to_aspect_ratio` keeps everything between black bars."""
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :10] = RED  # a red band at the left, which a centre crop cuts off
    wide[:, 10:30] = (0, 0, 255)
    wide[:, 30:] = (0, 255, 0)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    path = tmp_path / "wide.png"
    stretched = data.read_image(path, (20, 20))
    assert stretched[:, 0, 0].min() > 200  # the red band, squeezed
    cropped = data.read_image(path, (20, 20), crop_to_aspect_ratio=True)
    np.testing.assert_array_equal(cropped, np.broadcast_to((0, 0, 255), (20, 20, 3)))
    padded = data.read_image(path, (20, 20), pad_to_aspect_ratio=True)
    assert (padded[:5] == 0).all() and (padded[-5:] == 0).all()  # bars above and below
    assert padded[10, 0, 0] > 200 and padded[10, -1, 1] > 200  # both ends kept
    with pytest.raises(data.DataError, match="one of"):
        data.read_image(path, (20, 20), crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)


def test_an_unreadable_file_names_itself(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(data.BadImageError, match="bad.png") as info:
        data.read_image(bad)
    assert "\n" not in str(info.value)
