"""Pre-norm transformer encoder layers: MobileViT's (multi-head attention, LayerNorm) and
MobileViTv2's (separable attention, GroupNorm), siblings on one shared skeleton."""

from __future__ import annotations

import keras
from keras import layers

from mobilevit_utils.layers.attention import MHSA, SeparableSelfAttention
from mobilevit_utils.layers.common import LN_EPSILON, PACKAGE


class TransformerLayerBase(layers.Layer):
    """x + attention(norm(x)), then x + MLP(norm(x)) with SiLU: what both transformer layers
    share. Each one brings its attention, its norm (`norm_layer`) and its MLP width to
    `_add_sublayers`, and its own config.

    Args:
        embedding_dim: token width.
        mlp_ratio: hidden width of the MLP relative to `embedding_dim`.
        attention_drop: dropout on the attention scores.
        dropout: dropout on the attention and MLP outputs before each residual sum.
    """

    def __init__(self, embedding_dim, mlp_ratio, attention_drop, dropout, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.mlp_ratio = mlp_ratio
        self.attention_drop = attention_drop
        self.dropout = dropout

    @staticmethod
    def norm_layer(name):
        raise NotImplementedError

    def _add_sublayers(self, attention, mlp_dim):
        # This order of attributes is the order of the weights in saved models.
        self.mlp_dim = mlp_dim
        self.attention_norm = self.norm_layer("attention_norm")
        self.attention = attention
        self.mlp_norm = self.norm_layer("mlp_norm")
        self.mlp_in = layers.Dense(mlp_dim, activation="silu", name="mlp_in")
        self.mlp_out = layers.Dense(self.embedding_dim, name="mlp_out")
        self.output_dropout = layers.Dropout(self.dropout, name="output_dropout")

    def build(self, input_shape):
        for layer in (self.attention_norm, self.attention, self.mlp_norm, self.mlp_in):
            layer.build(input_shape)
        self.mlp_out.build((*input_shape[:-1], self.mlp_dim))

    def call(self, x, training=None):
        attended = self.attention(self.attention_norm(x), training=training)
        x = x + self.output_dropout(attended, training=training)
        mlp = self.mlp_out(self.mlp_in(self.mlp_norm(x)))
        return x + self.output_dropout(mlp, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, num_tokens):
        return (
            self.attention.count_macs(num_tokens)
            + 2 * num_tokens * self.embedding_dim * self.mlp_dim
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            embedding_dim=self.embedding_dim,
            mlp_ratio=self.mlp_ratio,
            attention_drop=self.attention_drop,
            dropout=self.dropout,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerLayer(TransformerLayerBase):
    """Pre-norm transformer encoder layer: x + MHSA(LN(x)), then x + MLP(LN(x)) with SiLU.

    Args:
        embedding_dim: token width.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to `embedding_dim`.
        qkv_bias: biases in the query/key/value projection.
        attention_drop: dropout on attention probabilities.
        dropout: dropout on the attention and MLP outputs before each residual sum.
    """

    def __init__(
        self,
        embedding_dim,
        num_heads=4,
        mlp_ratio=2.0,
        qkv_bias=True,
        attention_drop=0.0,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(embedding_dim, mlp_ratio, attention_drop, dropout, **kwargs)
        self.num_heads = num_heads
        self.qkv_bias = qkv_bias
        attention = MHSA(
            num_heads,
            embedding_dim,
            qkv_bias=qkv_bias,
            attention_drop=attention_drop,
            name="attention",
        )
        self._add_sublayers(attention, mlp_dim=int(embedding_dim * mlp_ratio))

    @staticmethod
    def norm_layer(name):
        return layers.LayerNormalization(epsilon=LN_EPSILON, name=name)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, qkv_bias=self.qkv_bias)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeparableTransformerLayer(TransformerLayerBase):
    """MobileViTv2 transformer layer: x + attention(norm(x)), then x + MLP(norm(x)), with
    `SeparableSelfAttention` (no heads).

    The norms are GroupNorm with one group over each example's whole `(p * p, tokens, d)`
    tensor (the reference normalises its `(d, p * p, tokens)` map the same way), not a
    LayerNorm per token. MLP width: `mlp_ratio * d` rounded down to a multiple of 16.
    """

    def __init__(self, embedding_dim, mlp_ratio=2.0, attention_drop=0.0, dropout=0.0, **kwargs):
        super().__init__(embedding_dim, mlp_ratio, attention_drop, dropout, **kwargs)
        attention = SeparableSelfAttention(embedding_dim, attention_drop, name="attention")
        self._add_sublayers(attention, mlp_dim=int(mlp_ratio * embedding_dim) // 16 * 16)

    @staticmethod
    def norm_layer(name):
        return layers.GroupNormalization(1, epsilon=LN_EPSILON, name=name)
