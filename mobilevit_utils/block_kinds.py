"""The block kinds a variant's `Stage` rows can name, in one registry.

`BLOCK_KINDS` maps each `Stage.block` name to a `BlockKind`: the layer that ends such a stage,
how `models.build_mobilevit` applies the row, and what the rest of the package needs to know
about it (figures: `plots`; reference weights: `convert`; int8 refusals: `export`; whether
`num_heads` applies: `tuning`). A new kind is its layer (in `mobilevit_utils.layers`) and one
`register_block_kind(BlockKind(...))`: nothing else enumerates kinds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from mobilevit_utils.layers import (
    ConvNormAct,
    InvertedResidual,
    MobileViTBlock,
    MobileViTV2Block,
    MobileViTV3Block,
)


@dataclasses.dataclass(frozen=True)
class StageOptions:
    """The model-wide settings `build_mobilevit` hands every stage's builder."""

    num_heads: int
    mlp_ratio: float
    qkv_bias: bool
    attention_drop: float
    dropout: float  # inside the transformers


def _attention_stage(kind, x, index, stage, options):
    """A strided inverted residual, then the kind's block (`kind.layer`) of `transformer_depth`
    transformer layers of width `transformer_dim` over `patch_size` patches."""
    x = InvertedResidual(
        stage.channels,
        stage.stride,
        stage.expand_ratio,
        dynamic_kernels=stage.dynamic_kernels,
        name=f"stage{index}_downsample",
    )(x)
    # Separable attention has no heads and its own biases.
    heads = dict(num_heads=options.num_heads, qkv_bias=options.qkv_bias) if kind.has_heads else {}
    return kind.layer(
        stage.transformer_dim,
        num_transformer_layers=stage.transformer_depth,
        patch_size=stage.patch_size,
        mlp_ratio=options.mlp_ratio,
        attention_drop=options.attention_drop,
        dropout=options.dropout,
        name=f"stage{index}_mobilevit",
        **heads,
    )(x)


def _stem_stage(kind, x, index, stage, options):
    return ConvNormAct(stage.channels, 3, stage.stride, name="stem")(x)


def _inverted_residual_stage(kind, x, index, stage, options):
    for i in range(stage.depth):
        x = InvertedResidual(
            stage.channels,
            stage.stride if i == 0 else 1,
            stage.expand_ratio,
            dynamic_kernels=stage.dynamic_kernels,
            name=f"stage{index}_block{i + 1}",
        )(x)
    return x


def _final_conv_stage(kind, x, index, stage, options):
    return ConvNormAct(stage.channels, 1, name="final_conv")(x)


ROLES = ("conv", "mv2", "attention")


@dataclasses.dataclass(frozen=True)
class BlockKind:
    """What a `Stage.block` name means, for every module that needs to know: one entry of
    `BLOCK_KINDS` (added by `register_block_kind`) and the layer file of its block are all a
    new kind takes.

    name: the `Stage.block` string.
    layer: the layer class a stage of this kind ends with; `block_kind_of` finds a model's
        kinds by it (convert, export, plots).
    role: "attention" (a stage with `transformer_dim`/`transformer_depth`), "mv2" or "conv":
        how figures group and colour the stage.
    label: the block's name in figures and messages.
    build: `build(kind, x, index, stage, options)` applies a stage row; the default makes an
        inverted residual and then `layer(transformer_dim, num_transformer_layers=...,
        patch_size=..., mlp_ratio=..., attention_drop=..., dropout=..., name=...)`.
    has_heads: `layer` also takes `num_heads` and `qkv_bias` (multi-head attention; tuning
        searches `num_heads` only then).
    takes_stride: the stage's stride is one of `MobileViTConfig.strides` (the final 1x1 conv's
        is not).
    reference: the backbone of Apple's reference whose weights the block takes ("mobilevit",
        "mobilevitv2"; `convert`); None: there are none.
    int8_refusal: why LiteRT int8 export refuses a model with this block ("": it does not).
    """

    name: str
    layer: type
    role: str = "attention"
    label: str = ""
    build: Callable = _attention_stage
    has_heads: bool = False
    takes_stride: bool = True
    reference: str | None = None
    int8_refusal: str = ""

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}.")

    def apply(self, x, index, stage, options):
        return self.build(self, x, index, stage, options)


BLOCK_KINDS = {}  # name -> BlockKind, in registration order


def register_block_kind(kind):
    """Add `kind` to `BLOCK_KINDS`: stages may then name it. Returns it."""
    if kind.name in BLOCK_KINDS:
        raise ValueError(f"Block kind {kind.name!r} is already registered.")
    BLOCK_KINDS[kind.name] = kind
    return kind


def unregister_block_kind(name):
    """Remove a kind added by `register_block_kind` (tests, experiments). Returns it."""
    return BLOCK_KINDS.pop(name)


def block_kind_of(layer):
    """The first registered kind whose `layer` class `layer` is an instance of, or None."""
    return next((k for k in BLOCK_KINDS.values() if isinstance(layer, k.layer)), None)


def block_kinds_in(model):
    """The kinds of the blocks in `model` (nested layers included), each once, in model order."""
    kinds = (block_kind_of(layer) for layer in model._flatten_layers())
    return list(dict.fromkeys(kind for kind in kinds if kind is not None))


class _AttentionBlocks(Mapping):
    """`BLOCK_KINDS`' attention kinds, name -> block class: a live view, so that kinds
    registered later appear in it too."""

    def __getitem__(self, name):
        kind = BLOCK_KINDS[name]
        if kind.role != "attention":
            raise KeyError(name)
        return kind.layer

    def __iter__(self):
        return (name for name, kind in BLOCK_KINDS.items() if kind.role == "attention")

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        return repr(dict(self))


# name -> block class of the attention kinds (the MobileViT blocks), for `stage.block in ...`.
ATTENTION_BLOCKS = _AttentionBlocks()

for _kind in (
    BlockKind("conv", ConvNormAct, "conv", "3x3 conv", _stem_stage),
    BlockKind("mv2", InvertedResidual, "mv2", "inverted residuals", _inverted_residual_stage),
    BlockKind(
        "mobilevit", MobileViTBlock, label="MobileViT block", has_heads=True, reference="mobilevit"
    ),
    BlockKind("mobilevit_v2", MobileViTV2Block, label="MobileViTv2 block", reference="mobilevitv2"),
    BlockKind(
        "mobilevit_v3",
        MobileViTV3Block,
        label="v3-style block",
        has_heads=True,
        int8_refusal=(
            "their fusion concatenates the local features that also feed the transformer, "
            "and the converter then writes a model that aborts LiteRT's allocate_tensors "
            "(TensorFlow 2.21, ai-edge-litert 2.3)"
        ),
    ),
    BlockKind("conv1x1", ConvNormAct, "conv", "1x1 conv", _final_conv_stage, takes_stride=False),
):
    register_block_kind(_kind)
