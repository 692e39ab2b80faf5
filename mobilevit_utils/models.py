"""MobileViT v1 configurations and builders.

Each variant is one row of `MODEL_CONFIGS`; `build_mobilevit` turns any row into a Keras
functional model. The ImageNet variants reproduce Apple's reference exactly (same parameter
counts, same layer order, same padding), so `mobilevit_utils.convert` can load its weights.

Network layout (channels from the table, strides from `strides`):

    stem       3x3 conv, stride s0                          channels[0]
    stage1     1 inverted residual, stride s1               channels[1]
    stage2     3 inverted residuals, stride s2 (first one)  channels[2]
    stage3-5   inverted residual (stride s3..s5) + MobileViT block with
               `transformer_depths[i]` layers of width `embedding_dims[i]`
    final_conv 1x1 conv to channels[6], global average pool, dropout, classifier
"""

from __future__ import annotations

import dataclasses

import keras
from keras import layers

from mobilevit_utils.layers import ConvNormAct, InvertedResidual, MobileViTBlock, count_layer_macs


@dataclasses.dataclass(frozen=True)
class MobileViTConfig:
    """One MobileViT variant. Copy and edit with `dataclasses.replace(config, ...)`."""

    name: str
    channels: tuple  # stem, stage1..stage5, final 1x1 conv
    embedding_dims: tuple  # transformer width in stages 3, 4, 5
    expand_ratio: float = 4.0  # inverted-residual expansion
    transformer_depths: tuple = (2, 4, 3)
    stage2_depth: int = 3
    strides: tuple = (2, 1, 2, 2, 2, 2)  # stem, stage1..stage5
    num_heads: int = 4
    patch_size: int | tuple = 2  # one side for all MobileViT blocks, or one per block
    mlp_ratio: float = 2.0
    default_input_shape: tuple = (256, 256, 3)

    def patch_size_of(self, block):
        """Patch side of MobileViT block `block` (0, 1, 2 for stages 3, 4, 5)."""
        if isinstance(self.patch_size, int):
            return self.patch_size
        return self.patch_size[block]

    @property
    def output_stride(self):
        total = 1
        for s in self.strides:
            total *= s
        return total


_XXS = MobileViTConfig(
    name="mobilevit_xxs",
    channels=(16, 16, 24, 48, 64, 80, 320),
    embedding_dims=(64, 80, 96),
    expand_ratio=2.0,
)

MODEL_CONFIGS = {
    "xxs": _XXS,
    "xs": MobileViTConfig(
        name="mobilevit_xs",
        channels=(16, 32, 48, 64, 80, 96, 384),
        embedding_dims=(96, 120, 144),
    ),
    "s": MobileViTConfig(
        name="mobilevit_s",
        channels=(16, 32, 64, 96, 128, 160, 640),
        embedding_dims=(144, 192, 240),
    ),
    # CIFAR-10 (32x32): the ImageNet layout (output stride 32) would shrink a 32x32 image to
    # 2x2 before the last MobileViT block, leaving each pixel a single token to attend to.
    # Here the stem and stage 1 keep the full 32x32 resolution, stages 2-4 halve it and stage 5
    # keeps 4x4 (output stride 8): the MobileViT blocks see 8x8, 4x4 and 4x4 maps. Striding
    # stage 2 rather than stage 5 costs 26 M instead of 80 M MACs per image and trains 2-3x
    # faster on CPU (benchmarks/results/train_throughput.txt), which buys the epochs a 2-hour
    # budget needs.
    "xxs_cifar": dataclasses.replace(
        _XXS,
        name="mobilevit_xxs_cifar",
        strides=(1, 1, 2, 2, 2, 1),
        default_input_shape=(32, 32, 3),
    ),
}
# The 4x4 maps of stages 4 and 5 hold only four 2x2 patches, so each pixel's attention sees 4
# tokens; 1x1 patches there give 16 tokens (one sequence instead of four) for about 1 % more MACs.
MODEL_CONFIGS["xxs_cifar_p1"] = dataclasses.replace(
    MODEL_CONFIGS["xxs_cifar"], name="mobilevit_xxs_cifar_p1", patch_size=(2, 1, 1))


def get_variant(variant):
    """Return the `MobileViTConfig` for a variant name ("xxs", "xs", "s", "xxs_cifar")."""
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
    include_rescaling=False,
    classifier_activation=None,
    name=None,
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
            (convenient for deployment). Apple's weights expect inputs already in [0, 1].
        classifier_activation: `None` for logits (the reference's output) or "softmax".
    """
    config = get_variant(config)
    input_shape = tuple(input_shape or config.default_input_shape)
    _check_input_shape(input_shape)
    channels, strides = config.channels, config.strides

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255, name="rescaling")(inputs) if include_rescaling else inputs
    x = ConvNormAct(channels[0], 3, strides[0], name="stem")(x)
    x = InvertedResidual(channels[1], strides[1], config.expand_ratio, name="stage1_block1")(x)
    for i in range(config.stage2_depth):
        x = InvertedResidual(
            channels[2], strides[2] if i == 0 else 1, config.expand_ratio,
            name=f"stage2_block{i + 1}",
        )(x)
    for stage, (dim, depth) in enumerate(zip(config.embedding_dims, config.transformer_depths)):
        index = stage + 3
        x = InvertedResidual(
            channels[index], strides[index], config.expand_ratio,
            name=f"stage{index}_downsample",
        )(x)
        x = MobileViTBlock(
            dim,
            num_transformer_layers=depth,
            num_heads=config.num_heads,
            patch_size=config.patch_size_of(stage),
            mlp_ratio=config.mlp_ratio,
            qkv_bias=qkv_bias,
            attention_drop=attention_drop,
            dropout=transformer_dropout,
            name=f"stage{index}_mobilevit",
        )(x)
    x = ConvNormAct(channels[6], 1, name="final_conv")(x)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        # float32 logits under mixed precision too: the loss and softmax need the range.
        x = layers.Dense(num_classes, activation=classifier_activation, dtype="float32",
                         name="classifier")(x)
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
