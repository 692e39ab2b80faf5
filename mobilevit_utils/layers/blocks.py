"""MobileViT blocks: v1 (Mehta & Rastegari, ICLR 2022), v2 (separable attention) and v3-style,
three siblings on one skeleton: local convolutions -> unfold -> transformer -> fold -> 1x1
projection. Each block states what it adds: its transformer layers and how it fuses."""

from __future__ import annotations

import keras
from keras import layers, ops

from mobilevit_utils.layers.common import PACKAGE, build_chain
from mobilevit_utils.layers.conv import ConvNormAct
from mobilevit_utils.layers.patches import apply_to_patches, patch_aligned_size
from mobilevit_utils.layers.transformer import SeparableTransformerLayer, TransformerLayer


class MobileViTBlockBase(layers.Layer):
    """What every MobileViT block shares (paper Sec. 3.1).

    `local_rep_layer_1` (kxk conv-BN-SiLU) and `local_rep_layer_2` (1x1 conv to
    `embedding_dim`) encode local structure; `transformer_layers` then relate pixels across
    patches (see `unfold`), followed by `transformer_layer_norm`; the folded map is projected
    back to the input width by `conv_proj` (1x1 conv-BN) and handed to the block's `fuse`.
    When a map is not a multiple of `patch_size` it is resized bilinearly to the next multiple
    and back, as the reference does. Output shape = input shape.

    A block's `__init__` creates its `transformer_layers` and `transformer_layer_norm`; its
    `build` calls `_build_skeleton` with its choices, then builds its own fusion layers.

    Args:
        embedding_dim: token width inside the transformer.
        num_transformer_layers: how many transformer layers.
        patch_size: side of the square patches.
        mlp_ratio, attention_drop, dropout: see the transformer layers.
        kernel_size: kernel of the local convolution (and of v1's fusion).
    """

    def __init__(
        self,
        embedding_dim,
        num_transformer_layers,
        patch_size,
        mlp_ratio,
        attention_drop,
        dropout,
        kernel_size,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.num_transformer_layers = num_transformer_layers
        self.patch_size = patch_size
        self.mlp_ratio = mlp_ratio
        self.attention_drop = attention_drop
        self.dropout = dropout
        self.kernel_size = kernel_size

    def _build_skeleton(self, input_shape, depthwise_local, linear_projection, token_shape):
        """Create and build the local convolutions and `conv_proj`; build the transformer."""
        channels = input_shape[-1]
        self.local_rep_layer_1 = ConvNormAct(
            channels, self.kernel_size, depthwise=depthwise_local, name="local_rep_layer_1"
        )
        self.local_rep_layer_2 = ConvNormAct(
            self.embedding_dim, 1, use_norm=False, use_activation=False, name="local_rep_layer_2"
        )
        self.conv_proj = ConvNormAct(
            channels, 1, use_activation=not linear_projection, name="conv_proj"
        )
        build_chain([self.local_rep_layer_1, self.local_rep_layer_2], input_shape)
        for layer in self.transformer_layers:
            layer.build(token_shape)
        self.transformer_layer_norm.build(token_shape)
        self.conv_proj.build((*input_shape[:-1], self.embedding_dim))

    def global_representation(self, patches, training=None):
        """The transformer over unfolded `(B * p * p, N, embedding_dim)` token sequences."""
        for layer in self.transformer_layers:
            patches = layer(patches, training=training)
        return self.transformer_layer_norm(patches)

    def fuse(self, data, local, global_features, training=None):
        """The block's output from its input, its local features and the projected global
        ones."""
        raise NotImplementedError

    def call(self, data, training=None):
        local = self.local_rep_layer_1(data, training=training)
        local = self.local_rep_layer_2(local, training=training)
        x = apply_to_patches(local, self.patch_size, self.global_representation, training)
        return self.fuse(data, local, self.conv_proj(x, training=training), training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shape):
        """MACs of the skeleton; a block adds its fusion's."""
        height, width, _ = input_shape
        new_h, new_w = patch_aligned_size(height, width, self.patch_size)
        num_tokens = (new_h // self.patch_size) * (new_w // self.patch_size)
        sequences = self.patch_size**2
        total = self.local_rep_layer_1.count_macs(input_shape)
        total += self.local_rep_layer_2.count_macs(input_shape)
        total += sequences * sum(t.count_macs(num_tokens) for t in self.transformer_layers)
        return total + self.conv_proj.count_macs((height, width, self.embedding_dim))

    def get_config(self):
        config = super().get_config()
        config.update(
            embedding_dim=self.embedding_dim,
            num_transformer_layers=self.num_transformer_layers,
            patch_size=self.patch_size,
            mlp_ratio=self.mlp_ratio,
            attention_drop=self.attention_drop,
            dropout=self.dropout,
            kernel_size=self.kernel_size,
        )
        return config


def _multi_head_transformer(block):
    """v1 and v3's `transformer_layers` (MHSA `TransformerLayer`s) and LayerNorm."""
    transformer_layers = [
        TransformerLayer(
            block.embedding_dim,
            block.num_heads,
            block.mlp_ratio,
            block.qkv_bias,
            block.attention_drop,
            block.dropout,
            name=f"transformer_{i}",
        )
        for i in range(block.num_transformer_layers)
    ]
    return transformer_layers, TransformerLayer.norm_layer("transformer_layer_norm")


class _MultiHeadBlock(MobileViTBlockBase):
    """What v1 and v3 blocks share beyond the skeleton: multi-head `TransformerLayer`s (with
    `num_heads` and `qkv_bias`) and the concatenation their fusions read. Not registered: only
    the blocks below are saved."""

    def __init__(
        self,
        embedding_dim,
        num_transformer_layers=2,
        num_heads=4,
        patch_size=2,
        mlp_ratio=2.0,
        qkv_bias=True,
        attention_drop=0.0,
        dropout=0.0,
        kernel_size=3,
        **kwargs,
    ):
        super().__init__(
            embedding_dim,
            num_transformer_layers,
            patch_size,
            mlp_ratio,
            attention_drop,
            dropout,
            kernel_size,
            **kwargs,
        )
        self.num_heads = num_heads
        self.qkv_bias = qkv_bias
        self.transformer_layers, self.transformer_layer_norm = _multi_head_transformer(self)
        self.concat = layers.Concatenate(axis=-1, name="concat")

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, qkv_bias=self.qkv_bias)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileViTBlock(_MultiHeadBlock):
    """MobileViT block (paper Sec. 3.1, Fig. 1b): local convolutions, global attention over
    unfolded patches, fold back, fuse with the input.

    The skeleton of `MobileViTBlockBase` with multi-head `TransformerLayer`s; the projected
    global features are concatenated with the block input and fused by a kxk conv-BN-SiLU
    (`fusion`).

    Args:
        embedding_dim: token width inside the transformer.
        num_transformer_layers: how many `TransformerLayer`s.
        num_heads, mlp_ratio, qkv_bias, attention_drop, dropout: see `TransformerLayer`.
        patch_size: side of the square patches.
        kernel_size: kernel of the local and fusion convolutions.
    """

    def build(self, input_shape):
        self._build_skeleton(
            input_shape,
            depthwise_local=False,
            linear_projection=False,
            token_shape=(None, None, self.embedding_dim),
        )
        channels = input_shape[-1]
        self.fusion = ConvNormAct(channels, self.kernel_size, name="fusion")
        self.fusion.build((*input_shape[:-1], 2 * channels))  # the input and global features

    def fuse(self, data, local, global_features, training=None):
        return self.fusion(self.concat([data, global_features]), training=training)

    def count_macs(self, input_shape):
        height, width, channels = input_shape
        fusion = self.fusion.count_macs((height, width, 2 * channels))
        return super().count_macs(input_shape) + fusion


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileViTV3Block(_MultiHeadBlock):
    """MobileViTv3 block (Wadekar & Chaurasia 2022) for the v1 layout.

    Three changes to `MobileViTBlock`: `local_rep_layer_1` is a depthwise 3x3 conv; `fusion`
    is a 1x1 conv over the local features (the output of `local_rep_layer_2`) concatenated with
    the global ones, instead of a 3x3 conv over the block input and the global features; and
    the block input is added to the fused output (`out + data`). The 3x3 fusion over
    2 x channels was the costliest conv of a v1 block; a 1x1 one costs a ninth of it per
    input channel. Arguments as `MobileViTBlock`'s.
    """

    def build(self, input_shape):
        self._build_skeleton(
            input_shape,
            depthwise_local=True,
            linear_projection=False,
            token_shape=(None, None, self.embedding_dim),
        )
        channels = input_shape[-1]
        self.fusion = ConvNormAct(channels, 1, name="fusion")
        self.fusion.build((*input_shape[:-1], self.embedding_dim + channels))  # local + global

    def fuse(self, data, local, global_features, training=None):
        out = self.fusion(self.concat([local, global_features]), training=training)
        return out + data

    def count_macs(self, input_shape):
        height, width, channels = input_shape
        fusion = self.fusion.count_macs((height, width, self.embedding_dim + channels))
        return super().count_macs(input_shape) + fusion


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileViTV2Block(MobileViTBlockBase):
    """MobileViTv2 block: local depthwise conv, separable-attention transformer over unfolded
    patches, fold, 1x1 projection back. No fusion conv and no concatenation with the input.

    `local_rep_layer_1` (depthwise 3x3 conv-BN-SiLU) and `local_rep_layer_2` (1x1 conv to
    `embedding_dim`) encode local structure; `transformer_layers` (`SeparableTransformerLayer`)
    and `transformer_layer_norm` (GroupNorm(1)) the global one; `conv_proj` (1x1 conv-BN, no
    activation) returns to the input width. Output shape = input shape.
    """

    def __init__(
        self,
        embedding_dim,
        num_transformer_layers=2,
        patch_size=2,
        mlp_ratio=2.0,
        attention_drop=0.0,
        dropout=0.0,
        kernel_size=3,
        **kwargs,
    ):
        super().__init__(
            embedding_dim,
            num_transformer_layers,
            patch_size,
            mlp_ratio,
            attention_drop,
            dropout,
            kernel_size,
            **kwargs,
        )
        self.transformer_layers = [
            SeparableTransformerLayer(
                embedding_dim, mlp_ratio, attention_drop, dropout, name=f"transformer_{i}"
            )
            for i in range(num_transformer_layers)
        ]
        self.transformer_layer_norm = SeparableTransformerLayer.norm_layer("transformer_layer_norm")

    def build(self, input_shape):
        self._build_skeleton(
            input_shape,
            depthwise_local=True,
            linear_projection=True,
            token_shape=(None, self.patch_size**2, None, self.embedding_dim),
        )

    def global_representation(self, patches, training=None):
        """Separable-attention layers over `(B * p * p, N, d)` tokens, normalised per image:
        GroupNorm(1) sees each image's `(p * p, N, d)` tokens together."""
        num_tokens = ops.shape(patches)[1]
        x = ops.reshape(patches, (-1, self.patch_size**2, num_tokens, self.embedding_dim))
        x = super().global_representation(x, training=training)
        return ops.reshape(x, (-1, num_tokens, self.embedding_dim))

    def fuse(self, data, local, global_features, training=None):
        return global_features  # v2 neither concatenates nor fuses
