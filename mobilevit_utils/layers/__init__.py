"""MobileViT building blocks (Mehta & Rastegari, ICLR 2022), written with `keras.ops` only.

Every layer here runs unchanged on the TensorFlow, JAX and PyTorch backends, is registered for
`keras.saving.load_model(..., safe_mode=True)`, and mirrors one module of Apple's reference
implementation (ml-cvnets, mirrored by `transformers.MobileViTForImageClassification`), so that
ported weights reproduce the reference logits (see `mobilevit_utils.convert`).

Layout is channels-last throughout: feature maps are `(batch, height, width, channels)`.

One module per role:

    common        registration package, normalisation constants, shape and MAC helpers
    patches       unfold / fold / apply_to_patches, bilinear resizing
    conv          ConvNormAct, BatchNorm, InvertedResidual, ChannelReverse
    dynamic_conv  DynamicDepthwiseConv2D
    attention     MHSA, SeparableSelfAttention
    transformer   TransformerLayer, SeparableTransformerLayer (siblings on TransformerLayerBase)
    blocks        MobileViTBlock, MobileViTV2Block, MobileViTV3Block (siblings on
                  MobileViTBlockBase)

Importing this package registers every layer. `models.BLOCK_KINDS` says which block each
`Stage.block` name builds.
"""

from mobilevit_utils.layers.attention import MHSA, SeparableSelfAttention
from mobilevit_utils.layers.blocks import (
    MobileViTBlock,
    MobileViTBlockBase,
    MobileViTV2Block,
    MobileViTV3Block,
)
from mobilevit_utils.layers.common import (
    BN_EPSILON,
    BN_MOMENTUM,
    LN_EPSILON,
    PACKAGE,
    count_layer_macs,
    make_divisible,
)
from mobilevit_utils.layers.conv import BatchNorm, ChannelReverse, ConvNormAct, InvertedResidual
from mobilevit_utils.layers.dynamic_conv import DynamicDepthwiseConv2D
from mobilevit_utils.layers.patches import apply_to_patches, fold, resize_bilinear, unfold
from mobilevit_utils.layers.transformer import (
    SeparableTransformerLayer,
    TransformerLayer,
    TransformerLayerBase,
)

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "LN_EPSILON",
    "MHSA",
    "PACKAGE",
    "BatchNorm",
    "ChannelReverse",
    "ConvNormAct",
    "DynamicDepthwiseConv2D",
    "InvertedResidual",
    "MobileViTBlock",
    "MobileViTBlockBase",
    "MobileViTV2Block",
    "MobileViTV3Block",
    "SeparableSelfAttention",
    "SeparableTransformerLayer",
    "TransformerLayer",
    "TransformerLayerBase",
    "apply_to_patches",
    "count_layer_macs",
    "fold",
    "make_divisible",
    "resize_bilinear",
    "unfold",
]
