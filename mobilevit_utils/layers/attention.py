"""Self-attention over token sequences: multi-head (MobileViT) and separable (MobileViTv2)."""

from __future__ import annotations

import keras
from keras import layers, ops

from mobilevit_utils.layers.common import PACKAGE, is_static


@keras.saving.register_keras_serializable(package=PACKAGE)
class MHSA(layers.Layer):
    """Multi-head self-attention over `(batch, tokens, embedding_dim)` sequences.

    Queries, keys and values come from one fused projection (one matmul instead of three).

    Args:
        num_heads: number of attention heads.
        embedding_dim: width of the input and output tokens.
        projection_dim: width of each head; defaults to `embedding_dim // num_heads`.
        qkv_bias: learn biases in the query/key/value projection.
        attention_drop: dropout rate on the attention probabilities.
    """

    def __init__(
        self,
        num_heads,
        embedding_dim,
        projection_dim=None,
        qkv_bias=True,
        attention_drop=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if projection_dim is None and embedding_dim % num_heads:
            # The heads would silently use only num_heads * (embedding_dim // num_heads) channels.
            raise ValueError(
                f"embedding_dim={embedding_dim} does not split into num_heads={num_heads} equal "
                "heads: choose num_heads dividing it, or pass projection_dim."
            )
        self.num_heads = num_heads
        self.embedding_dim = embedding_dim
        self.projection_dim = projection_dim or embedding_dim // num_heads
        self.qkv_bias = qkv_bias
        self.attention_drop = attention_drop
        self.scale = self.projection_dim**-0.5
        inner_dim = self.num_heads * self.projection_dim
        self.qkv_proj = layers.Dense(3 * inner_dim, use_bias=qkv_bias, name="qkv_proj")
        self.out_proj = layers.Dense(embedding_dim, name="out_proj")
        self.attn_dropout = layers.Dropout(attention_drop, name="attn_dropout")

    def build(self, input_shape):
        if input_shape[-1] != self.embedding_dim:
            raise ValueError(
                f"MHSA expects tokens of width embedding_dim={self.embedding_dim}, "
                f"got input shape {tuple(input_shape)}; set embedding_dim to the last dimension."
            )
        self.qkv_proj.build(input_shape)
        self.out_proj.build((*input_shape[:-1], self.num_heads * self.projection_dim))

    def call(self, x, training=None):
        num_tokens = ops.shape(x)[1]
        # Splitting the fused projection (gradient: a concat) instead of indexing it (gradient:
        # three StridedSliceGrads, about a tenth of the training step on CPU).
        head_shape = (-1, num_tokens, self.num_heads, self.projection_dim)
        query, key, value = (
            ops.reshape(t, head_shape) for t in ops.split(self.qkv_proj(x), 3, axis=-1)
        )
        if is_static(num_tokens) and num_tokens == 1:  # a lone token attends only to itself
            return self.out_proj(ops.reshape(value, (-1, 1, self.num_heads * self.projection_dim)))
        scores = ops.einsum("bqhd,bkhd->bhqk", query * self.scale, key)
        if self.compute_dtype != "float32":  # mixed precision: softmax sums in float32
            weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), scores.dtype)
        else:
            weights = ops.softmax(scores, axis=-1)
        weights = self.attn_dropout(weights, training=training)
        out = ops.einsum("bhqk,bkhd->bqhd", weights, value)
        out = ops.reshape(out, (-1, num_tokens, self.num_heads * self.projection_dim))
        return self.out_proj(out)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, num_tokens):
        inner = self.num_heads * self.projection_dim
        projections = num_tokens * self.embedding_dim * inner * 4  # q, k, v and output
        attention = 2 * num_tokens * num_tokens * inner  # scores and weighted sum
        return projections + attention

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            embedding_dim=self.embedding_dim,
            projection_dim=self.projection_dim,
            qkv_bias=self.qkv_bias,
            attention_drop=self.attention_drop,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeparableSelfAttention(layers.Layer):
    """MobileViTv2's separable self-attention: cost linear in the number of tokens.

    On `(batch, p * p, num_tokens, embedding_dim)` tokens: one projection to `1 + 2 d` channels
    gives a one-channel query, keys and values. The query's softmax over the tokens weighs the
    keys into a single context vector; every token's ReLU(value) is multiplied by it, then
    projected (`out_proj`). MHSA compares every pair of tokens (k^2 scores per head); this
    compares each token with one learned context (k scores), and has no heads.

    Args:
        embedding_dim: token width `d`.
        attention_drop: dropout on the context scores.
    """

    def __init__(self, embedding_dim, attention_drop=0.0, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.attention_drop = attention_drop
        self.qkv_proj = layers.Dense(1 + 2 * embedding_dim, name="qkv_proj")
        self.out_proj = layers.Dense(embedding_dim, name="out_proj")
        self.attn_dropout = layers.Dropout(attention_drop, name="attn_dropout")

    def build(self, input_shape):
        if input_shape[-1] != self.embedding_dim:
            raise ValueError(
                f"SeparableSelfAttention expects tokens of width embedding_dim="
                f"{self.embedding_dim}, got input shape {tuple(input_shape)}."
            )
        self.qkv_proj.build(input_shape)
        self.out_proj.build(input_shape)

    def call(self, x, training=None):
        query, key, value = ops.split(self.qkv_proj(x), [1, 1 + self.embedding_dim], axis=-1)
        num_tokens = ops.shape(x)[-2]
        if is_static(num_tokens) and num_tokens == 1:  # a lone token's score is 1
            context = key
        else:
            # Softmax over the tokens (axis -2), in float32 under mixed precision.
            scores = ops.cast(ops.softmax(ops.cast(query, "float32"), axis=-2), query.dtype)
            scores = self.attn_dropout(scores, training=training)
            context = ops.sum(key * scores, axis=-2, keepdims=True)  # (B, P, 1, d)
        return self.out_proj(ops.relu(value) * context)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, num_tokens):
        d = self.embedding_dim
        projections = num_tokens * d * (1 + 2 * d) + num_tokens * d * d
        return projections + 2 * num_tokens * d  # context vector and its product with values

    def get_config(self):
        config = super().get_config()
        config.update(embedding_dim=self.embedding_dim, attention_drop=self.attention_drop)
        return config
