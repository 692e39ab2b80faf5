"""Data augmentation from Keras preprocessing layers, with named strengths.

Images stay in 0-255 floats here; the model rescales them (one place only: its `Rescaling`
layer). Augmentation runs only on training batches; evaluation batches pass untouched.

MixUp and CutMix blend pairs of images *and their labels*, so labels become soft (one-hot
mixtures): the loss must then be categorical cross-entropy on probabilities
(`training.make_loss(soft_labels=True)`), not the sparse version.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import layers

VALUE_RANGE = (0, 255)
# Data-side layers compute in float32 whatever the global dtype policy: under mixed_float16 they
# would otherwise draw shifts and mixing masks in float16 (which some ops, such as CutMix's
# `range`, do not support) and hand soft labels to the loss at float16 precision.
DTYPE = "float32"


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Magnitudes of each transform (0 disables it). Copy and edit with `dataclasses.replace`.

    `flip`: True mirrors a random half of each batch; "alternating" mirrors a random half in
    the first epoch and then mirrors every image on alternate epochs (airbench), so that each
    image is seen both ways in any two consecutive epochs (`data.make_pipeline` applies it,
    as it needs the epoch).
    translate/zoom are fractions of the image side, rotation a fraction of a full turn;
    `translate_interpolation` "nearest" shifts by whole pixels (the classic pad-and-crop), while
    "bilinear" blurs nearly every training image by a sub-pixel shift that test images never see;
    brightness/contrast/saturation/hue are the `RandomColorJitter` factors. `mix` is None,
    "mixup" or "cutmix", with `mix_alpha` the Beta-distribution parameter.
    `erasing` is the probability that a training image has one patch (4 to 18 pixels a side at
    32x32) replaced by grey (`RandomErasing`, like cutout), from the fraction `erasing_from` of
    training on: 0.5 erases in the second half only, when the model has learnt the easy views.
    """

    flip: bool | str = True
    translate: float = 0.125
    translate_interpolation: str = "nearest"
    rotation: float = 0.0
    zoom: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    mix: str | None = None
    mix_alpha: float = 0.2
    erasing: float = 0.0
    erasing_from: float = 0.0

    @property
    def soft_labels(self):
        return self.mix is not None


POLICIES = {
    "none": AugmentationConfig(flip=False, translate=0.0),
    # The classic CIFAR recipe: horizontal flip + whole-pixel shifts of up to 4 pixels.
    "light": AugmentationConfig(),
    # Shifts without the mirror: for digits, text and other images whose mirror image is
    # another class or none.
    "shift": AugmentationConfig(flip=False),
    # The same with bilinear (sub-pixel) shifts: the released 48-epoch model's policy, kept for
    # the ablation that measures the difference.
    "light_bilinear": AugmentationConfig(translate_interpolation="bilinear"),
    "light_alternating": AugmentationConfig(flip="alternating"),
    # Regularisation for a long run's second half (issue #27): erasing at 12 epochs would only
    # slow learning, as every harder policy did there.
    "light_erasing_late": AugmentationConfig(erasing=0.5, erasing_from=0.5),
    "mixup": AugmentationConfig(mix="mixup", mix_alpha=0.2),
    "cutmix": AugmentationConfig(mix="cutmix", mix_alpha=1.0),
    "medium": AugmentationConfig(
        rotation=0.04, zoom=0.1, brightness=0.15, contrast=0.15, saturation=0.15, hue=0.03
    ),
    "strong": AugmentationConfig(
        rotation=0.06,
        zoom=0.15,
        brightness=0.2,
        contrast=0.2,
        saturation=0.2,
        hue=0.05,
        mix="cutmix",
        mix_alpha=1.0,
    ),
}


def get_augmentation(policy):
    """An `AugmentationConfig` from a policy name (see `POLICIES`) or a config (returned as
    is)."""
    if isinstance(policy, AugmentationConfig):
        return policy
    if policy is None:
        return POLICIES["none"]
    if policy not in POLICIES:
        raise ValueError(
            f"Unknown augmentation policy {policy!r}; expected one of {list(POLICIES)}."
        )
    return POLICIES[policy]


def transform_layers(config, seed=None):
    """The per-image transforms of `config`, in application order, as (name, layer) pairs."""
    config = get_augmentation(config)
    if config.flip not in (True, False, "alternating"):
        raise ValueError(f"flip must be True, False or 'alternating', got {config.flip!r}.")
    out = []
    if config.flip is True:
        out.append(("flip", layers.RandomFlip("horizontal", seed=seed, dtype=DTYPE, name="flip")))
    if config.translate:
        out.append(
            (
                "translate",
                layers.RandomTranslation(
                    config.translate,
                    config.translate,
                    fill_mode="reflect",
                    interpolation=config.translate_interpolation,
                    seed=seed,
                    dtype=DTYPE,
                    name="translate",
                ),
            )
        )
    if config.rotation:
        out.append(
            (
                "rotation",
                layers.RandomRotation(
                    config.rotation, fill_mode="reflect", seed=seed, dtype=DTYPE, name="rotation"
                ),
            )
        )
    if config.zoom:
        out.append(
            (
                "zoom",
                layers.RandomZoom(
                    config.zoom, fill_mode="reflect", seed=seed, dtype=DTYPE, name="zoom"
                ),
            )
        )
    colour = {k: getattr(config, k) for k in ("brightness", "contrast", "saturation", "hue")}
    if any(colour.values()):
        out.append(
            (
                "colour",
                layers.RandomColorJitter(
                    value_range=VALUE_RANGE,
                    brightness_factor=colour["brightness"] or None,
                    contrast_factor=colour["contrast"] or None,
                    saturation_factor=_saturation_factor(colour["saturation"]),
                    hue_factor=colour["hue"] or None,
                    seed=seed,
                    dtype=DTYPE,
                    name="colour",
                ),
            )
        )
    return out


def fixed_views(config, image_side=32):
    """Each per-image transform of `config` once, at its policy's full strength and in one
    direction, as (label, function of a 0-255 image batch) pairs: a gallery that shows what the
    random layers of `transform_layers` do at most (a random draw may barely change an image)."""
    config = get_augmentation(config)
    views = []
    if config.flip:
        views.append(("flipped", lambda x: keras.ops.flip(x, axis=2)))

    def fixed(label, layer):
        views.append((label, lambda x: keras.ops.clip(layer(x, training=True), *VALUE_RANGE)))

    if config.translate:
        pixels = round(config.translate * image_side)
        shift = (config.translate, config.translate)
        fixed(
            f"shifted {pixels} px",
            layers.RandomTranslation(
                shift, shift, fill_mode="reflect", interpolation=config.translate_interpolation
            ),
        )
    if config.rotation:
        turn = (config.rotation, config.rotation)
        fixed(f"rotated {360 * config.rotation:.0f}°", layers.RandomRotation(turn, "reflect"))
    if config.zoom:
        # A negative factor zooms in: the crop-and-rescale kind of crop.
        inward = (-config.zoom, -config.zoom)
        fixed(f"zoomed in {config.zoom:.0%}", layers.RandomZoom(inward, fill_mode="reflect"))
    if config.brightness:
        up = (config.brightness, config.brightness)
        fixed(f"brightness +{config.brightness:.0%}", layers.RandomBrightness(up, VALUE_RANGE))
    if config.contrast:
        # Contrast scales each image's deviation from its mean, as RandomContrast does.
        def contrast(x, factor=1 + config.contrast):
            mean = keras.ops.mean(x, axis=(1, 2), keepdims=True)
            return keras.ops.clip((x - mean) * factor + mean, 0, 255)

        views.append((f"contrast +{config.contrast:.0%}", contrast))
    if config.saturation:
        fixed(
            f"saturation +{config.saturation:.0%}",
            layers.RandomSaturation((0.5 + config.saturation / 2,) * 2, VALUE_RANGE),
        )
    return views


def _saturation_factor(strength):
    # RandomSaturation's factor is centred on 0.5 (= unchanged); map a strength s to 0.5 +- s/2.
    return (0.5 - strength / 2, 0.5 + strength / 2) if strength else None


def build_augmenter(config, seed=None):
    """A `keras.layers.Pipeline` applying `config`'s per-image transforms (None when there are
    none). Unlike a `Sequential` model, a Pipeline stays usable inside `tf.data` on every
    backend."""
    parts = transform_layers(config, seed)
    if not parts:
        return None
    return keras.layers.Pipeline([layer for _, layer in parts], name="augmentation")


def build_eraser(config, seed=None):
    """`keras.layers.RandomErasing` for `config.erasing` (None when 0); the training pipeline
    applies it from `config.erasing_from` of the epochs on (`data.FromEpoch`)."""
    config = get_augmentation(config)
    if not 0 <= config.erasing <= 1 or not 0 <= config.erasing_from < 1:
        raise ValueError(
            f"erasing must be in [0, 1] and erasing_from in [0, 1), got {config.erasing} and "
            f"{config.erasing_from}."
        )
    if not config.erasing:
        return None
    return layers.RandomErasing(
        # A pair: exactly this probability (a single number would draw one up to it).
        factor=(config.erasing, config.erasing),
        fill_value=127.5,
        value_range=VALUE_RANGE,
        seed=seed,
        dtype=DTYPE,
        name="erasing",
    )


def build_mixer(config, seed=None):
    """`keras.layers.MixUp` or `keras.layers.CutMix` for `config.mix`, or None.

    Called on `{"images": x, "labels": one_hot}` batches; returns the same dict, mixed.
    """
    config = get_augmentation(config)
    if config.mix is None:
        return None
    if config.mix == "mixup":
        return layers.MixUp(alpha=config.mix_alpha, seed=seed, dtype=DTYPE, name="mixup")
    if config.mix == "cutmix":
        return layers.CutMix(factor=config.mix_alpha, seed=seed, dtype=DTYPE, name="cutmix")
    raise ValueError(f"mix must be None, 'mixup' or 'cutmix', got {config.mix!r}.")
