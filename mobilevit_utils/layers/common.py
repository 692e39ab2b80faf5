"""What every layer module shares: the registration package, the reference's normalisation
constants, and shape and cost helpers."""

from __future__ import annotations

import math

from keras import layers, ops

# Registered names are "mobilevit>ClassName": saved `.keras` files refer to layers by them.
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


def spatial_size(x):
    """(height, width) of a channels-last map: Python ints when static, tensors when not."""
    shape = ops.shape(x)
    return shape[1], shape[2]


def is_static(*values):
    return all(isinstance(v, int) for v in values)


def build_chain(sublayers, input_shape):
    """Build sublayers applied one after another and return the final output shape."""
    shape = tuple(input_shape)
    for layer in sublayers:
        if layer is None:
            continue
        layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def conv_output_size(size, kernel_size, strides):
    """Output side of a convolution padded `(k - 1) // 2` on every side, as the reference pads."""
    if size is None:
        return None
    pad = (kernel_size - 1) // 2
    return (size + 2 * pad - kernel_size) // strides + 1


def count_layer_macs(layer, input_shape):
    """MACs of one image through a layer of a functional model (0 for parameter-free layers)."""
    if hasattr(layer, "count_macs"):
        return int(layer.count_macs(tuple(input_shape)))
    if isinstance(layer, layers.Dense):
        return int(math.prod(input_shape) * layer.units)
    return 0
