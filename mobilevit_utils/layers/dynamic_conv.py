"""Dynamic depthwise convolution: a per-example mixture of depthwise kernels."""

from __future__ import annotations

import keras
from keras import layers, ops

from mobilevit_utils.layers.common import PACKAGE, spatial_size


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
        height, width = spatial_size(out)
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
