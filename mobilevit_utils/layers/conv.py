"""Convolutions: conv-BN-SiLU padded like the reference, its BatchNorm, MobileNetV2's inverted
residual, and the RGB-to-BGR input flip that Apple's weights need."""

from __future__ import annotations

import keras
from keras import layers, ops

from mobilevit_utils.layers.common import (
    BN_EPSILON,
    BN_MOMENTUM,
    PACKAGE,
    build_chain,
    conv_output_size,
    make_divisible,
)
from mobilevit_utils.layers.dynamic_conv import DynamicDepthwiseConv2D


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
        build_chain([self.pad, self.conv, self.norm], input_shape)

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
            conv_output_size(height, self.kernel_size, self.strides),
            conv_output_size(width, self.kernel_size, self.strides),
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
        build_chain([self.expand_1x1, self.conv_3x3, self.reduce_1x1], input_shape)

    def call(self, data, training=None):
        out = self.expand_1x1(data, training=training)
        out = self.conv_3x3(out, training=training)
        out = self.reduce_1x1(out, training=training)
        return out + data if self.use_residual else out

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (
            batch,
            conv_output_size(height, 3, self.strides),
            conv_output_size(width, 3, self.strides),
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
