"""MobileViT variants as data, and one builder.

A variant is a `MobileViTConfig`: a tuple of `Stage` rows, one per stage, each naming its block
kind and its sizes (the layout of timm's `ByoBlockCfg` rows). `build_mobilevit` turns any
variant into a Keras functional model, so a new variant is a new table, not a new builder. The
ImageNet variants reproduce Apple's reference exactly (same parameter counts, same layer order,
same padding), so `mobilevit_utils.convert` can load its weights.

The v1 layout, one row per stage (stage 0 is the stem, stage 6 the final 1x1 conv):

    0  conv       3x3 conv, stride 2                              16
    1  mv2        1 inverted residual                             XXS: 16
    2  mv2        3 inverted residuals, the first with stride 2   24
    3  mobilevit  inverted residual (stride 2) + MobileViT block  48, transformer 64 x 2 layers
    4  mobilevit  the same                                         64, transformer 80 x 4 layers
    5  mobilevit  the same                                         80, transformer 96 x 3 layers
    6  conv1x1    1x1 conv, then global average pool and classifier  320
"""

from __future__ import annotations

import dataclasses

import keras
from keras import layers

# The kinds a `Stage` may name (ATTENTION_BLOCKS: those with a transformer) live in block_kinds.
from mobilevit_utils.block_kinds import ATTENTION_BLOCKS, BLOCK_KINDS, StageOptions
from mobilevit_utils.layers import ChannelReverse, count_layer_macs, make_divisible


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What a model expects as input: one contract shared by the builder, the data pipeline, run
    metadata and the TFLite sidecar.

    Pixels start as 0-255 values in `channel_order`; they are multiplied by `scale` inside the
    model (`in_model`, its `Rescaling` layer) or by the caller before it.
    """

    channel_order: str = "RGB"
    scale: float = 1 / 255
    in_model: bool = True

    def describe(self):
        where = "the model rescales them itself" if self.in_model else "scale them before the model"
        return f"{self.channel_order} pixels 0-255 as floats times {self.scale:.6g}; {where}"

    def to_dict(self):
        return {**dataclasses.asdict(self), "description": self.describe()}

    def prepare(self, images):
        """Raw RGB uint8/float images (N, H, W, 3) as the model takes them."""
        import numpy as np

        images = np.asarray(images, dtype="float32")
        if self.channel_order == "BGR":
            images = images[..., ::-1]
        return images if self.in_model else images * self.scale


# This project's models: raw RGB pixels in, rescaled by the model, so apps and TFLite feed pixels.
RAW_RGB = Preprocessing()
# Apple's ImageNet checkpoints: BGR channel order (MobileViTImageProcessor's
# do_flip_channel_order), scaled to [0, 1] before the model.
APPLE_BGR = Preprocessing(channel_order="BGR", in_model=False)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a variant: `depth` blocks of kind `block` producing `channels` channels; the
    first block strides by `stride`.

    block: a name in `BLOCK_KINDS`: "conv" (3x3 conv-BN-SiLU, the stem), "mv2" (inverted
        residuals), "mobilevit" (an inverted residual, then a MobileViT block with
        `transformer_depth` transformer layers of width `transformer_dim` over `patch_size` x
        `patch_size` patches), "mobilevit_v2" (the same with MobileViTv2's separable-attention
        block), "mobilevit_v3" (with the MobileViTv3-style block) or "conv1x1".
    dynamic_kernels: the inverted residuals' depthwise convs become dynamic convolutions of
        this many kernels (0: static).
    """

    block: str
    channels: int
    stride: int = 1
    depth: int = 1
    expand_ratio: float = 4.0
    transformer_dim: int = 0
    transformer_depth: int = 0
    patch_size: int = 2
    dynamic_kernels: int = 0

    def __post_init__(self):
        if self.block not in BLOCK_KINDS:
            raise ValueError(
                f"Unknown block kind {self.block!r}; expected one of {tuple(BLOCK_KINDS)}."
            )


@dataclasses.dataclass(frozen=True)
class MobileViTConfig:
    """One MobileViT variant: its stage rows and the settings shared by every block."""

    name: str
    stages: tuple
    num_heads: int = 4
    mlp_ratio: float = 2.0
    default_input_shape: tuple = (256, 256, 3)
    preprocessing: Preprocessing = APPLE_BGR  # the input the variant's weights expect

    def edit_stages(self, name, **fields_per_stage):
        """A renamed copy with stage rows edited: `stage4={"patch_size": 1}`."""
        stages = list(self.stages)
        for key, fields in fields_per_stage.items():
            index = int(key.removeprefix("stage"))
            stages[index] = dataclasses.replace(stages[index], **fields)
        return dataclasses.replace(self, name=name, stages=tuple(stages))

    def edit_stages_of_kind(self, name, kinds, **fields):
        """A renamed copy with `fields` set on every stage whose block is one of `kinds`:
        `edit_stages_of_kind("v3", ("mobilevit",), block="mobilevit_v3")`."""
        stages = tuple(
            dataclasses.replace(stage, **fields) if stage.block in kinds else stage
            for stage in self.stages
        )
        return dataclasses.replace(self, name=name, stages=stages)

    def with_strides(self, strides, name=None):
        """A copy with the first strides of the stages replaced, in stage order."""
        stages = tuple(
            dataclasses.replace(stage, stride=strides[i]) if i < len(strides) else stage
            for i, stage in enumerate(self.stages)
        )
        return dataclasses.replace(self, name=name or self.name, stages=stages)

    @property
    def strides(self):
        return tuple(s.stride for s in self.stages if BLOCK_KINDS[s.block].takes_stride)

    @property
    def channels(self):
        return tuple(stage.channels for stage in self.stages)

    @property
    def embedding_dims(self):
        return tuple(
            stage.transformer_dim for stage in self.stages if stage.block in ATTENTION_BLOCKS
        )

    @property
    def output_stride(self):
        total = 1
        for stride in self.strides:
            total *= stride
        return total


def v1_variant(
    name,
    channels,
    transformer_dims,
    expand_ratio=4.0,
    transformer_depths=(2, 4, 3),
    strides=(2, 1, 2, 2, 2, 2),
    patch_size=2,
    **kwargs,
):
    """The rows of a MobileViT (v1) variant from the paper's table of widths."""
    c, s = channels, strides
    stages = (
        Stage("conv", c[0], s[0]),
        Stage("mv2", c[1], s[1], depth=1, expand_ratio=expand_ratio),
        Stage("mv2", c[2], s[2], depth=3, expand_ratio=expand_ratio),
        *(
            Stage(
                "mobilevit",
                c[3 + i],
                s[3 + i],
                expand_ratio=expand_ratio,
                transformer_dim=transformer_dims[i],
                transformer_depth=transformer_depths[i],
                patch_size=patch_size,
            )
            for i in range(3)
        ),
        Stage("conv1x1", c[6]),
    )
    return MobileViTConfig(name=name, stages=stages, **kwargs)


def v2_variant(width_multiplier, transformer_dims=(128, 192, 256), transformer_depths=(2, 4, 3)):
    """The rows of a MobileViTv2 variant for width multiplier alpha (Apple's ml-cvnets rules):
    no final 1x1 conv, expand ratio 2, transformer widths `make_divisible(base * alpha, 8)`."""
    a = width_multiplier
    stem = make_divisible(min(max(32 * a, 16), 64), 8, min_value=16)
    widths = [make_divisible(64 * a, 16)] + [make_divisible(w * a, 8) for w in (128, 256, 384, 512)]
    strides = (2, 1, 2, 2, 2, 2)
    stages = (
        Stage("conv", stem, strides[0]),
        Stage("mv2", widths[0], strides[1], depth=1, expand_ratio=2.0),
        Stage("mv2", widths[1], strides[2], depth=2, expand_ratio=2.0),
        *(
            Stage(
                "mobilevit_v2",
                widths[2 + i],
                strides[3 + i],
                expand_ratio=2.0,
                transformer_dim=make_divisible(transformer_dims[i] * a, 8),
                transformer_depth=transformer_depths[i],
            )
            for i in range(3)
        ),
    )
    name = f"mobilevit_v2_{round(a * 100):03d}"
    return MobileViTConfig(name=name, stages=stages, mlp_ratio=2.0)


_XXS = v1_variant("mobilevit_xxs", (16, 16, 24, 48, 64, 80, 320), (64, 80, 96), expand_ratio=2.0)

MODEL_CONFIGS = {
    "xxs": _XXS,
    "xs": v1_variant("mobilevit_xs", (16, 32, 48, 64, 80, 96, 384), (96, 120, 144)),
    "s": v1_variant("mobilevit_s", (16, 32, 64, 96, 128, 160, 640), (144, 192, 240)),
    # CIFAR-10 (32x32): the ImageNet layout (output stride 32) would shrink a 32x32 image to
    # 2x2 before the last MobileViT block, leaving each pixel a single token to attend to.
    # Here the stem and stage 1 keep the full 32x32 resolution, stages 2-4 halve it and stage 5
    # keeps 4x4 (output stride 8): the MobileViT blocks see 8x8, 4x4 and 4x4 maps. Striding
    # stage 2 rather than stage 5 costs 26 M instead of 80 M MACs per image and trains 2-3x
    # faster on CPU (benchmarks/results/train_throughput.txt), which buys the epochs a 2-hour
    # budget needs.
    "xxs_cifar": dataclasses.replace(
        _XXS.with_strides((1, 1, 2, 2, 2, 1)),
        name="mobilevit_xxs_cifar",
        default_input_shape=(32, 32, 3),
        preprocessing=RAW_RGB,
    ),
}
# MobileViTv2 at widths 0.5 to 2.0 (Apple's checkpoints apple/mobilevitv2-1.0-imagenet1k-256...).
for _alpha in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0):
    MODEL_CONFIGS[f"v2_{round(_alpha * 100):03d}"] = v2_variant(_alpha)
# CIFAR layouts of the structural variants, all with xxs_cifar's strides (output stride 8).
# v2 at width 0.5 is the smallest v2; its 10-class model has 1.1 M parameters against
# xxs_cifar's 0.95 M.
# Width 0.75: 2.2x the MACs of width 0.5, compared with it at equal training time.
for _alpha in (0.5, 0.75):
    _key = f"v2_{round(_alpha * 100):03d}"
    MODEL_CONFIGS[f"{_key}_cifar"] = dataclasses.replace(
        MODEL_CONFIGS[_key].with_strides((1, 1, 2, 2, 2, 1)),
        name=f"mobilevit_{_key}_cifar",
        default_input_shape=(32, 32, 3),
        preprocessing=RAW_RGB,
    )
MODEL_CONFIGS["xxs_cifar_v3"] = MODEL_CONFIGS["xxs_cifar"].edit_stages_of_kind(
    "mobilevit_xxs_cifar_v3", ("mobilevit",), block="mobilevit_v3"
)
# Dynamic convolution (4 kernels, as in Chen et al.) in every inverted residual.
MODEL_CONFIGS["xxs_cifar_dynconv"] = MODEL_CONFIGS["xxs_cifar"].edit_stages_of_kind(
    "mobilevit_xxs_cifar_dynconv", ("mv2", "mobilevit"), dynamic_kernels=4
)
# Compute moved from the 4x4 transformers (4 and 3 layers -> 2 and 2) to the 16x16 stage
# (24 -> 32 channels).
MODEL_CONFIGS["xxs_cifar_rebalanced"] = MODEL_CONFIGS["xxs_cifar"].edit_stages(
    "mobilevit_xxs_cifar_rebalanced",
    stage2={"channels": 32},
    stage4={"transformer_depth": 2},
    stage5={"transformer_depth": 2},
)
# The 4x4 maps of stages 4 and 5 hold only four 2x2 patches, so each pixel's attention sees 4
# tokens; 1x1 patches there give 16 tokens (one sequence instead of four) for about 1 % more MACs.
MODEL_CONFIGS["xxs_cifar_p1"] = MODEL_CONFIGS["xxs_cifar"].edit_stages(
    "mobilevit_xxs_cifar_p1", stage4={"patch_size": 1}, stage5={"patch_size": 1}
)


def get_variant(variant):
    """Return the `MobileViTConfig` for a variant name ("xxs", "v2_100", "xxs_cifar", ...)."""
    if isinstance(variant, MobileViTConfig):
        return variant
    key = str(variant).lower().removeprefix("mobilevit_")
    if key not in MODEL_CONFIGS:
        raise ValueError(
            f"Unknown MobileViT variant {variant!r}; expected one of {sorted(MODEL_CONFIGS)}."
        )
    return MODEL_CONFIGS[key]


def _check_input_shape(input_shape):
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"input_shape must be (height, width, channels) with known channels, got {input_shape}."
        )
    for size in input_shape[:2]:
        if size is not None and size < 32:
            raise ValueError(
                f"input_shape {input_shape}: height and width must be at least 32 (or None)."
            )


def build_mobilevit(
    config,
    num_classes=1000,
    input_shape=None,
    include_top=True,
    pooling=None,
    dropout=0.1,
    transformer_dropout=0.0,
    attention_drop=0.0,
    qkv_bias=True,
    include_rescaling=None,
    classifier_activation=None,
    name=None,
    reverse_channels=False,
):
    """Build a MobileViT classifier (or feature extractor) from a configuration.

    Args:
        config: a `MobileViTConfig` or variant name.
        num_classes: classifier outputs.
        input_shape: `(height, width, channels)`; height/width may be `None` (any size >= 32).
            Defaults to the variant's `default_input_shape`.
        include_top: add pooling, dropout and the classifier. Without it the model returns the
            final feature map, pooled when `pooling="avg"`.
        dropout: dropout before the classifier.
        transformer_dropout: dropout on attention/MLP outputs inside the transformers.
        attention_drop: dropout on attention probabilities.
        include_rescaling: start with `Rescaling(1/255)`, so the model takes raw 0-255 pixels
            (convenient for deployment). Default: the variant's `preprocessing.in_model` (True
            for the CIFAR layouts; False for the ImageNet ones, whose Apple weights expect BGR
            inputs already in [0, 1]).
        classifier_activation: `None` for logits (the reference's output) or "softmax".
        reverse_channels: reverse RGB to BGR inside the model (weights trained on BGR images,
            such as Apple's, fine-tuned on RGB pixels).
    """
    config = get_variant(config)
    input_shape = tuple(input_shape or config.default_input_shape)
    _check_input_shape(input_shape)
    if include_rescaling is None:
        include_rescaling = config.preprocessing.in_model
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs) if include_rescaling else inputs
    if reverse_channels:
        x = ChannelReverse(name="rgb_to_bgr")(x)
    options = StageOptions(
        config.num_heads, config.mlp_ratio, qkv_bias, attention_drop, transformer_dropout
    )
    # Layer names (stem, stageN_blockI, stageN_downsample, stageN_mobilevit, final_conv) are
    # what weight conversion and saved files refer to.
    for index, stage in enumerate(config.stages):
        x = BLOCK_KINDS[stage.block].apply(x, index, stage, options)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        # float32 logits under mixed precision too: the loss and softmax need the range.
        x = layers.Dense(
            num_classes, activation=classifier_activation, dtype="float32", name="classifier"
        )(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling is not None:
        raise ValueError(f"pooling must be None or 'avg', got {pooling!r}.")
    return keras.Model(inputs, x, name=name or config.name)


def mobilevit_xxs(num_classes=1000, input_shape=(256, 256, 3), **kwargs):
    """MobileViT-XXS: 1.27 M parameters with a 1000-class head."""
    return build_mobilevit("xxs", num_classes, input_shape, **kwargs)


def mobilevit_xs(num_classes=1000, input_shape=(256, 256, 3), **kwargs):
    """MobileViT-XS: 2.32 M parameters with a 1000-class head."""
    return build_mobilevit("xs", num_classes, input_shape, **kwargs)


def mobilevit_s(num_classes=1000, input_shape=(256, 256, 3), **kwargs):
    """MobileViT-S: 5.58 M parameters with a 1000-class head."""
    return build_mobilevit("s", num_classes, input_shape, **kwargs)


def mobilevit_xxs_cifar(num_classes=10, input_shape=(32, 32, 3), **kwargs):
    """MobileViT-XXS adapted to native 32x32 input (output stride 8, see `MODEL_CONFIGS`)."""
    return build_mobilevit("xxs_cifar", num_classes, input_shape, **kwargs)


def _float32_config(config):
    """A serialized model config with every mixed-precision dtype policy set to float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and "config" in config:
            name = config["config"].get("name", "")
            if name.startswith("mixed_"):
                return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(value) for value in config]
    return config


def as_float32(model):
    """`model` computing in float32: itself when it already does, else a float32 copy with the
    same weights. Mixed-precision training keeps float32 weights, so nothing is rounded; the copy
    reloads, evaluates and exports to TFLite with no float16 left in it."""
    if all(layer.dtype_policy.name == "float32" for layer in model._flatten_layers()):
        return model
    config = _float32_config(keras.saving.serialize_keras_object(model))
    clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
    clone.set_weights(model.get_weights())
    return clone


def trainable_params(model):
    return int(sum(keras.ops.size(w) for w in model.trainable_weights))


def _stage_of(layer_name):
    prefix = layer_name.split("_")[0]
    if prefix.startswith("stage") or prefix in ("stem", "rescaling"):
        return prefix
    return "head"


def layer_table(model):
    """Per-layer output shape, parameters and MACs (multiply-accumulates) for one image.

    MACs are what the MobileViT paper and most papers report as "FLOPs". Needs a model whose
    input height and width are known. Returns a list of dicts (build a DataFrame from it).
    """
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        in_shape = tuple(layer.input.shape[1:])
        if None in in_shape:
            raise ValueError(
                f"layer_table needs a fixed input size; {model.name} takes {in_shape}. "
                "Rebuild the model with e.g. input_shape=(256, 256, 3)."
            )
        rows.append(
            {
                "layer": layer.name,
                "stage": _stage_of(layer.name),
                "output_shape": tuple(layer.output.shape[1:]),
                "params": int(layer.count_params()),
                "macs": count_layer_macs(layer, in_shape),
            }
        )
    return rows


def count_macs(model):
    """Total multiply-accumulates of one forward pass for one image."""
    return sum(row["macs"] for row in layer_table(model))
