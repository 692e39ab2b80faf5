"""MobileViT building blocks (Mehta & Rastegari, ICLR 2022), written with `keras.ops` only.

Every layer here runs unchanged on the TensorFlow, JAX and PyTorch backends, is registered for
`keras.saving.load_model(..., safe_mode=True)`, and mirrors one module of Apple's reference
implementation (ml-cvnets, mirrored by `transformers.MobileViTForImageClassification`), so that
ported weights reproduce the reference logits (see `mobilevit_utils.convert`).

Layout is channels-last throughout: feature maps are `(batch, height, width, channels)`.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

PACKAGE = "mobilevit"

# PyTorch defaults used by the reference: BatchNorm eps/momentum and LayerNorm eps.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Keras momentum = 1 - PyTorch momentum (0.1)
LN_EPSILON = 1e-5


def make_divisible(value, divisor=8, min_value=None):
    """Round `value` to a multiple of `divisor` without losing more than 10 % (MobileNetV2 rule)."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return int(new_value)


def _spatial_size(x):
    """(height, width) of a channels-last map: Python ints when static, tensors when not."""
    shape = ops.shape(x)
    return shape[1], shape[2]


def _is_static(*values):
    return all(isinstance(v, int) for v in values)


def _resize_axis(x, out_size, axis):
    """Bilinear resampling of one axis with half-pixel centres (PyTorch `align_corners=False`)."""
    in_size = ops.shape(x)[axis]
    scale = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    src = (ops.cast(ops.arange(out_size), "float32") + 0.5) * scale - 0.5
    src = ops.maximum(src, 0.0)  # PyTorch clamps negative source coordinates to 0
    low = ops.cast(ops.floor(src), "int32")
    low = ops.minimum(low, in_size - 1)
    high = ops.minimum(low + 1, in_size - 1)
    frac = src - ops.cast(low, "float32")
    frac = ops.cast(ops.reshape(frac, [-1] + [1] * (3 - axis)), x.dtype)
    low_values = ops.take(x, low, axis=axis)
    high_values = ops.take(x, high, axis=axis)
    return low_values + (high_values - low_values) * frac


def resize_bilinear(x, size):
    """Resize a channels-last batch to `size=(height, width)`, matching
    `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`.

    Written with gathers instead of `keras.ops.image.resize` because the target size may be a
    symbolic tensor (inputs of unknown height/width), which `ops.image.resize` does not accept,
    and because backends differ in how they resample; this gives one answer everywhere.
    """
    x = _resize_axis(x, size[0], axis=1)
    return _resize_axis(x, size[1], axis=2)


def unfold(x, patch_size):
    """Split a `(B, H, W, C)` map into `(B * p * p, H/p * W/p, C)` token sequences.

    Sequence `i` holds the pixel at the same position `i` of every `p x p` patch, so attention
    relates each pixel to its counterparts in all other patches: every output pixel sees the
    whole image at a cost of `1 / p^2` of full self-attention. H and W must be multiples of p.
    """
    height, width = _spatial_size(x)
    channels = x.shape[-1]
    num_h, num_w = height // patch_size, width // patch_size
    x = ops.reshape(x, (-1, num_h, patch_size, num_w, patch_size, channels))
    x = ops.transpose(x, (0, 2, 4, 1, 3, 5))  # (B, p, p, H/p, W/p, C)
    return ops.reshape(x, (-1, num_h * num_w, channels))


def fold(patches, num_patches_hw, patch_size):
    """Inverse of `unfold`: `(B * p * p, N, C)` back to `(B, H, W, C)`."""
    num_h, num_w = num_patches_hw
    channels = patches.shape[-1]
    x = ops.reshape(patches, (-1, patch_size, patch_size, num_h, num_w, channels))
    x = ops.transpose(x, (0, 3, 1, 4, 2, 5))  # (B, H/p, p, W/p, p, C)
    return ops.reshape(x, (-1, num_h * patch_size, num_w * patch_size, channels))


def _patch_aligned_size(height, width, patch_size):
    p = patch_size
    return (height + p - 1) // p * p, (width + p - 1) // p * p


def apply_to_patches(x, patch_size, transform, training=None):
    """Unfold a `(B, H, W, C)` map into token sequences, apply `transform` to the
    `(B * p * p, N, C)` tokens, and fold the result back to `(B, H, W, C')`.

    A map whose sides are not multiples of `patch_size` is resized bilinearly to the next
    multiple and back, as the reference does. There are no positional embeddings: `fold`
    puts every token back where it came from, and the convolutions around the transformer
    see positions.
    """
    height, width = _spatial_size(x)
    new_height, new_width = _patch_aligned_size(height, width, patch_size)
    # With unknown sizes (symbolic tensors) always resize: to the same size it is exact.
    needs_resize = not _is_static(height, width) or (new_height, new_width) != (height, width)
    if needs_resize:
        x = resize_bilinear(x, (new_height, new_width))
    patches = transform(unfold(x, patch_size), training=training)
    x = fold(patches, (new_height // patch_size, new_width // patch_size), patch_size)
    return resize_bilinear(x, (height, width)) if needs_resize else x


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelReverse(layers.Layer):
    """RGB to BGR: Apple's checkpoints were trained on BGR images. Inside a model fine-tuned
    from them it lets the model take RGB pixels, like every other model of this project."""

    def build(self, input_shape):
        self.built = True  # no weights

    def call(self, x):
        return keras.ops.flip(x, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNorm(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step uses TensorFlow's fused kernel.

    Keras 3 normalises with `moments` and elementwise ops on every backend. On TensorFlow's CPU
    those ops and their gradients (Mul, Sum, SquaredDifference, Sub, Mean, Tile) took up to 30 %
    of the MobileViT training step; `FusedBatchNormV3` computes the same function, and its
    gradient, in one kernel each: 1.3x faster steps (benchmarks/results/train_throughput.txt).
    The result and the moving statistics are those of the stock layer (tested); other backends,
    inference and unusual settings use the stock path.
    """

    # Class-wide switch, so benchmarks/train_throughput.py --stock-batchnorm can compare.
    fused_on_tensorflow = True

    def _fused_path(self, inputs, training, mask):
        return (
            self.fused_on_tensorflow
            and training
            and self.trainable
            and mask is None
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.scale
            and self.center
            and not self.renorm
            and not self.synchronized
            # float16 inputs too (mixed precision): the kernel accumulates its statistics in
            # float32 and takes float32 gamma/beta, the safety the stock layer's upcast gives.
            and keras.backend.standardize_dtype(inputs.dtype) in ("float32", "float16")
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused_path(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # only reached on the TensorFlow backend

        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma,
            self.beta,
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the unbiased (n - 1) batch variance; Keras tracks the biased one.
        count = ops.cast(ops.prod(ops.shape(inputs)[:-1]), variance.dtype)
        variance = variance * (count - 1.0) / count
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return outputs


@keras.saving.register_keras_serializable(package=PACKAGE)
class DynamicDepthwiseConv2D(layers.Layer):
    """Dynamic depthwise convolution (Chen et al., "Dynamic Convolution", CVPR 2020).

    `num_kernels` depthwise kernels are mixed per example by attention weights
    `softmax(logits / temperature)`, where the logits come from a squeeze-and-excitation-style
    branch: global average pool, Dense(C / reduction, ReLU), Dense(num_kernels). A large
    temperature (30) starts the mixture near uniform so that every kernel learns; training
    anneals it to 1 (`training.DynamicConvTemperature`).

    Convolution is linear, so mixing the K outputs of the K kernels with the weights equals
    convolving with the mixed kernel. This layer computes the former: one depthwise conv with
    `depth_multiplier=K` and a weighted sum, which every backend and TFLite's builtin ops
    run (a different kernel per example would need a per-example convolution, which TFLite
    has no builtin for). It costs K times a depthwise conv's MACs, still small next to the
    1x1 convolutions around it.
    """

    def __init__(
        self,
        kernel_size=3,
        strides=1,
        padding="same",
        num_kernels=4,
        temperature=30.0,
        reduction=4,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_kernels < 1:
            raise ValueError(f"num_kernels must be at least 1, got {num_kernels}.")
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.num_kernels = num_kernels
        self.initial_temperature = float(temperature)
        self.reduction = reduction
        self.kernels = layers.DepthwiseConv2D(
            kernel_size,
            strides,
            padding=padding,
            depth_multiplier=num_kernels,
            use_bias=False,
            name="kernels",
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        self.attention_reduce = layers.Dense(
            max(channels // self.reduction, 4), activation="relu", name="attention_reduce"
        )
        self.attention_logits = layers.Dense(self.num_kernels, name="attention_logits")
        self.kernels.build(input_shape)
        self.attention_reduce.build((None, channels))
        self.attention_logits.build((None, self.attention_reduce.units))
        self.temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False,
            name="temperature",
        )

    def kernel_weights(self, x):
        """Per-example mixing weights `(batch, num_kernels)`, summing to 1."""
        logits = self.attention_logits(self.attention_reduce(ops.mean(x, axis=(1, 2))))
        logits = ops.cast(logits, "float32") / ops.cast(self.temperature, "float32")
        return ops.cast(ops.softmax(logits, axis=-1), x.dtype)

    def call(self, x):
        weights = self.kernel_weights(x)
        out = self.kernels(x)  # (B, H, W, C * K); channel c's outputs are c*K ... c*K + K-1
        height, width = _spatial_size(out)
        channels = x.shape[-1]
        out = ops.reshape(out, (-1, height * width, channels, self.num_kernels))
        out = ops.sum(out * weights[:, None, None, :], axis=-1)
        return ops.reshape(out, (-1, height, width, channels))

    def compute_output_shape(self, input_shape):
        return self.kernels.compute_output_shape(input_shape)[:-1] + (input_shape[-1],)

    def count_macs(self, input_shape):
        height, width, channels = input_shape
        _, out_h, out_w, _ = self.compute_output_shape((None, height, width, channels))
        k = self.num_kernels
        convolutions = out_h * out_w * channels * self.kernel_size**2 * k
        hidden = self.attention_reduce.units
        attention = channels * hidden + hidden * k
        return convolutions + attention + out_h * out_w * channels * k  # + the weighted sum

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            num_kernels=self.num_kernels,
            temperature=self.initial_temperature,
            reduction=self.reduction,
        )
        return config


def _build_chain(sublayers, input_shape):
    """Build sublayers applied one after another and return the final output shape."""
    shape = tuple(input_shape)
    for layer in sublayers:
        if layer is None:
            continue
        layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def _conv_output_size(size, kernel_size, strides):
    if size is None:
        return None
    pad = (kernel_size - 1) // 2
    return (size + 2 * pad - kernel_size) // strides + 1


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvNormAct(layers.Layer):
    """Convolution → BatchNorm → SiLU, padded like the PyTorch reference.

    PyTorch pads `(k - 1) // 2` pixels on every side. Keras' `padding="same"` does too for
    stride 1, but for stride 2 on an even input it pads only the bottom/right, which shifts the
    sampling grid by one pixel and makes ported weights produce different features; strided
    convolutions therefore pad explicitly and convolve with `"valid"`.

    Args:
        filters: output channels (ignored when `depthwise=True`: output = input channels).
        kernel_size: square kernel size.
        strides: 1 or 2.
        depthwise: a depthwise (per-channel) convolution, as in MobileNetV2.
        use_norm: apply BatchNormalization.
        use_activation: apply SiLU.
        dynamic_kernels: with `depthwise`, a `DynamicDepthwiseConv2D` mixing this many kernels
            per example instead of one fixed kernel (0: a plain depthwise convolution).
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        depthwise=False,
        use_norm=True,
        use_activation=True,
        dynamic_kernels=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if dynamic_kernels and not depthwise:
            raise ValueError("dynamic_kernels needs depthwise=True (a dynamic depthwise conv).")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.depthwise = depthwise
        self.use_norm = use_norm
        self.use_activation = use_activation
        self.dynamic_kernels = dynamic_kernels
        pad = (kernel_size - 1) // 2
        explicit_pad = pad > 0 and strides > 1
        self.pad = layers.ZeroPadding2D(pad, name="pad") if explicit_pad else None
        padding = "valid" if explicit_pad else "same"
        if dynamic_kernels:
            self.conv = DynamicDepthwiseConv2D(
                kernel_size, strides, padding=padding, num_kernels=dynamic_kernels, name="conv"
            )
        elif depthwise:
            self.conv = layers.DepthwiseConv2D(
                kernel_size, strides, padding=padding, use_bias=False, name="conv"
            )
        else:
            self.conv = layers.Conv2D(
                filters, kernel_size, strides, padding=padding, use_bias=False, name="conv"
            )
        self.norm = (
            BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="norm") if use_norm else None
        )
        self.act = layers.Activation("silu", name="act") if use_activation else None

    def build(self, input_shape):
        _build_chain([self.pad, self.conv, self.norm], input_shape)

    def call(self, inputs, training=None):
        x = self.pad(inputs) if self.pad is not None else inputs
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, training=training)
        if self.act is not None:
            x = self.act(x)
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        out_channels = channels if self.depthwise else self.filters
        return (
            batch,
            _conv_output_size(height, self.kernel_size, self.strides),
            _conv_output_size(width, self.kernel_size, self.strides),
            out_channels,
        )

    def count_macs(self, input_shape):
        """Multiply-accumulates for one image of `input_shape` (H, W, C)."""
        if self.dynamic_kernels:
            return self.conv.count_macs(input_shape)
        _, out_h, out_w, out_c = self.compute_output_shape((None, *input_shape))
        per_pixel = self.kernel_size**2 * (1 if self.depthwise else input_shape[-1])
        return out_h * out_w * out_c * per_pixel

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            depthwise=self.depthwise,
            use_norm=self.use_norm,
            use_activation=self.use_activation,
            dynamic_kernels=self.dynamic_kernels,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class InvertedResidual(layers.Layer):
    """MobileNetV2 inverted residual: 1x1 expand → 3x3 depthwise → 1x1 project (linear).

    The block adds its input (`out + data`) when it keeps resolution and channel count, so the
    narrow "bottleneck" tensors carry the residual stream (Sandler et al., 2018).

    Args:
        filters: output channels.
        strides: stride of the depthwise convolution.
        expand_ratio: hidden width = `make_divisible(round(in_channels * expand_ratio), 8)`.
        dynamic_kernels: make the depthwise conv a `DynamicDepthwiseConv2D` of this many
            kernels (0: the usual static one).
    """

    def __init__(self, filters, strides=1, expand_ratio=4.0, dynamic_kernels=0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.expand_ratio = expand_ratio
        self.dynamic_kernels = dynamic_kernels

    def build(self, input_shape):
        in_channels = input_shape[-1]
        hidden = make_divisible(int(round(in_channels * self.expand_ratio)), 8)
        self.use_residual = self.strides == 1 and in_channels == self.filters
        self.expand_1x1 = ConvNormAct(hidden, 1, name="expand_1x1")
        self.conv_3x3 = ConvNormAct(
            hidden,
            3,
            self.strides,
            depthwise=True,
            dynamic_kernels=self.dynamic_kernels,
            name="conv_3x3",
        )
        self.reduce_1x1 = ConvNormAct(self.filters, 1, use_activation=False, name="reduce_1x1")
        _build_chain([self.expand_1x1, self.conv_3x3, self.reduce_1x1], input_shape)

    def call(self, data, training=None):
        out = self.expand_1x1(data, training=training)
        out = self.conv_3x3(out, training=training)
        out = self.reduce_1x1(out, training=training)
        return out + data if self.use_residual else out

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (
            batch,
            _conv_output_size(height, 3, self.strides),
            _conv_output_size(width, 3, self.strides),
            self.filters,
        )

    def count_macs(self, input_shape):
        shape = tuple(input_shape)
        total = 0
        for layer in (self.expand_1x1, self.conv_3x3, self.reduce_1x1):
            total += layer.count_macs(shape)
            shape = layer.compute_output_shape((None, *shape))[1:]
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            expand_ratio=self.expand_ratio,
            dynamic_kernels=self.dynamic_kernels,
        )
        return config


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
        if _is_static(num_tokens) and num_tokens == 1:  # a lone token attends only to itself
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
class TransformerLayer(layers.Layer):
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
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.attention_drop = attention_drop
        self.dropout = dropout
        self.mlp_dim = self._mlp_width()
        self.attention_norm = self.norm_layer("attention_norm")
        self.attention = self._attention()
        self.mlp_norm = self.norm_layer("mlp_norm")
        self.mlp_in = layers.Dense(self.mlp_dim, activation="silu", name="mlp_in")
        self.mlp_out = layers.Dense(embedding_dim, name="mlp_out")
        self.output_dropout = layers.Dropout(dropout, name="output_dropout")

    # What SeparableTransformerLayer changes: the norms, the attention and the MLP width.
    def _mlp_width(self):
        return int(self.embedding_dim * self.mlp_ratio)

    @staticmethod
    def norm_layer(name):
        return layers.LayerNormalization(epsilon=LN_EPSILON, name=name)

    def _attention(self):
        return MHSA(
            self.num_heads,
            self.embedding_dim,
            qkv_bias=self.qkv_bias,
            attention_drop=self.attention_drop,
            name="attention",
        )

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
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            attention_drop=self.attention_drop,
            dropout=self.dropout,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileViTBlock(layers.Layer):
    """MobileViT block (paper Sec. 3.1, Fig. 1b): local convolutions, global attention over
    unfolded patches, fold back, fuse with the input.

    `local_rep_layer_1` (3x3 conv-BN-SiLU) and `local_rep_layer_2` (1x1 conv to
    `embedding_dim`) encode local structure; `transformer_layers` then relate pixels across
    patches (see `unfold`), followed by `transformer_layer_norm`; the folded map is projected
    back to the input width (`conv_proj`), concatenated with the block input and fused by a 3x3
    conv (`fusion`). When a map is not a multiple of `patch_size` it is resized bilinearly to the
    next multiple and back, as the reference does. Output shape = input shape.

    Args:
        embedding_dim: token width inside the transformer.
        num_transformer_layers: how many `TransformerLayer`s.
        num_heads, mlp_ratio, qkv_bias, attention_drop, dropout: see `TransformerLayer`.
        patch_size: side of the square patches.
        kernel_size: kernel of the local and fusion convolutions.
    """

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
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.num_transformer_layers = num_transformer_layers
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.attention_drop = attention_drop
        self.dropout = dropout
        self.kernel_size = kernel_size
        self.transformer_layers = [
            self._transformer_layer(f"transformer_{i}") for i in range(num_transformer_layers)
        ]
        self.transformer_layer_norm = self.transformer_layers_class.norm_layer(
            "transformer_layer_norm"
        )
        self.concat = layers.Concatenate(axis=-1, name="concat")

    # What the v3 and v2 blocks change.
    transformer_layers_class = TransformerLayer
    depthwise_local = False  # v2, v3: a depthwise local conv
    fusion_kernel_size = None  # None: kernel_size; v3: 1; v2 has no fusion
    conv_proj_activation = True  # v2: linear

    def _transformer_layer(self, name):
        return TransformerLayer(
            self.embedding_dim,
            self.num_heads,
            self.mlp_ratio,
            self.qkv_bias,
            self.attention_drop,
            self.dropout,
            name=name,
        )

    def _token_shape(self):
        return (None, None, self.embedding_dim)

    def _fusion_channels(self, channels):
        return 2 * channels  # the block input and the global features

    def build(self, input_shape):
        channels = input_shape[-1]
        self.local_rep_layer_1 = ConvNormAct(
            channels, self.kernel_size, depthwise=self.depthwise_local, name="local_rep_layer_1"
        )
        self.local_rep_layer_2 = ConvNormAct(
            self.embedding_dim, 1, use_norm=False, use_activation=False, name="local_rep_layer_2"
        )
        self.conv_proj = ConvNormAct(
            channels, 1, use_activation=self.conv_proj_activation, name="conv_proj"
        )
        _build_chain([self.local_rep_layer_1, self.local_rep_layer_2], input_shape)
        token_shape = self._token_shape()
        for layer in self.transformer_layers:
            layer.build(token_shape)
        self.transformer_layer_norm.build(token_shape)
        self.conv_proj.build((*input_shape[:-1], self.embedding_dim))
        self.fusion = None
        if self._fusion_channels(channels):
            self.fusion = ConvNormAct(
                channels, self.fusion_kernel_size or self.kernel_size, name="fusion"
            )
            self.fusion.build((*input_shape[:-1], self._fusion_channels(channels)))

    def _patch_aligned_size(self, height, width):
        return _patch_aligned_size(height, width, self.patch_size)

    def global_representation(self, patches, training=None):
        """The transformer over unfolded `(B * p * p, N, embedding_dim)` token sequences."""
        for layer in self.transformer_layers:
            patches = layer(patches, training=training)
        return self.transformer_layer_norm(patches)

    def call(self, x, training=None):
        residual = x
        x = self.local_rep_layer_1(x, training=training)
        x = self.local_rep_layer_2(x, training=training)
        x = apply_to_patches(x, self.patch_size, self.global_representation, training)
        x = self.conv_proj(x, training=training)
        return self.fusion(self.concat([residual, x]), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shape):
        height, width, channels = input_shape
        new_h, new_w = self._patch_aligned_size(height, width)
        num_tokens = (new_h // self.patch_size) * (new_w // self.patch_size)
        sequences = self.patch_size**2
        total = self.local_rep_layer_1.count_macs(input_shape)
        total += self.local_rep_layer_2.count_macs(input_shape)
        total += sequences * sum(t.count_macs(num_tokens) for t in self.transformer_layers)
        total += self.conv_proj.count_macs((height, width, self.embedding_dim))
        if self.fusion is not None:
            total += self.fusion.count_macs((height, width, self._fusion_channels(channels)))
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            embedding_dim=self.embedding_dim,
            num_transformer_layers=self.num_transformer_layers,
            num_heads=self.num_heads,
            patch_size=self.patch_size,
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            attention_drop=self.attention_drop,
            dropout=self.dropout,
            kernel_size=self.kernel_size,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileViTV3Block(MobileViTBlock):
    """MobileViTv3 block (Wadekar & Chaurasia 2022) for the v1 layout.

    Three changes to `MobileViTBlock`: `local_rep_layer_1` is a depthwise 3x3 conv; `fusion`
    is a 1x1 conv over the local features (the output of `local_rep_layer_2`) concatenated with
    the global ones, instead of a 3x3 conv over the block input and the global features; and
    the block input is added to the fused output (`out + data`). The 3x3 fusion over
    2 x channels was the costliest conv of a v1 block; a 1x1 one costs a ninth of it per
    input channel.
    """

    depthwise_local = True
    fusion_kernel_size = 1

    def _fusion_channels(self, channels):
        return self.embedding_dim + channels  # the local and the global features

    def call(self, data, training=None):
        local = self.local_rep_layer_1(data, training=training)
        local = self.local_rep_layer_2(local, training=training)
        x = apply_to_patches(local, self.patch_size, self.global_representation, training)
        x = self.conv_proj(x, training=training)
        out = self.fusion(self.concat([local, x]), training=training)
        return out + data


# --------------------------------------------------------------------------------------------
# MobileViTv2 (Mehta & Rastegari 2022, "Separable Self-attention for Mobile Vision Transformers")


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
        if _is_static(num_tokens) and num_tokens == 1:  # a lone token's score is 1
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


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeparableTransformerLayer(TransformerLayer):
    """MobileViTv2 transformer layer: x + attention(norm(x)), then x + MLP(norm(x)), with
    `SeparableSelfAttention` (no heads).

    The norms are GroupNorm with one group over each example's whole `(p * p, tokens, d)`
    tensor (the reference normalises its `(d, p * p, tokens)` map the same way), not a
    LayerNorm per token. MLP width: `mlp_ratio * d` rounded down to a multiple of 16.
    """

    def __init__(self, embedding_dim, mlp_ratio=2.0, attention_drop=0.0, dropout=0.0, **kwargs):
        super().__init__(
            embedding_dim,
            mlp_ratio=mlp_ratio,
            attention_drop=attention_drop,
            dropout=dropout,
            **kwargs,
        )

    def _mlp_width(self):
        return int(self.mlp_ratio * self.embedding_dim) // 16 * 16

    @staticmethod
    def norm_layer(name):
        return layers.GroupNormalization(1, epsilon=LN_EPSILON, name=name)

    def _attention(self):
        return SeparableSelfAttention(self.embedding_dim, self.attention_drop, name="attention")

    def get_config(self):
        config = super().get_config()
        for unused in ("num_heads", "qkv_bias"):
            config.pop(unused)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MobileViTV2Block(MobileViTBlock):
    """MobileViTv2 block: local depthwise conv, separable-attention transformer over unfolded
    patches, fold, 1x1 projection back. No fusion conv and no concatenation with the input.

    `local_rep_layer_1` (depthwise 3x3 conv-BN-SiLU) and `local_rep_layer_2` (1x1 conv to
    `embedding_dim`) encode local structure; `transformer_layers` (`SeparableTransformerLayer`)
    and `transformer_layer_norm` (GroupNorm(1)) the global one; `conv_proj` (1x1 conv-BN, no
    activation) returns to the input width. Output shape = input shape.
    """

    transformer_layers_class = SeparableTransformerLayer
    depthwise_local = True
    conv_proj_activation = False

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
            patch_size=patch_size,
            mlp_ratio=mlp_ratio,
            attention_drop=attention_drop,
            dropout=dropout,
            kernel_size=kernel_size,
            **kwargs,
        )

    def _transformer_layer(self, name):
        return SeparableTransformerLayer(
            self.embedding_dim, self.mlp_ratio, self.attention_drop, self.dropout, name=name
        )

    def _token_shape(self):
        return (None, self.patch_size**2, None, self.embedding_dim)

    def _fusion_channels(self, channels):
        return 0  # no fusion

    def global_representation(self, patches, training=None):
        """Separable-attention layers over `(B * p * p, N, d)` tokens, normalised per image."""
        num_tokens = ops.shape(patches)[1]
        x = ops.reshape(patches, (-1, self.patch_size**2, num_tokens, self.embedding_dim))
        x = super().global_representation(x, training=training)
        return ops.reshape(x, (-1, num_tokens, self.embedding_dim))

    def call(self, x, training=None):
        x = self.local_rep_layer_1(x, training=training)
        x = self.local_rep_layer_2(x, training=training)
        x = apply_to_patches(x, self.patch_size, self.global_representation, training)
        return self.conv_proj(x, training=training)

    def get_config(self):
        config = super().get_config()
        for unused in ("num_heads", "qkv_bias"):
            config.pop(unused)
        return config


def count_layer_macs(layer, input_shape):
    """MACs of one image through a layer of a functional model (0 for parameter-free layers)."""
    if hasattr(layer, "count_macs"):
        return int(layer.count_macs(tuple(input_shape)))
    if isinstance(layer, layers.Dense):
        return int(math.prod(input_shape) * layer.units)
    return 0
