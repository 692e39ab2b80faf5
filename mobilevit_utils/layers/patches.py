"""Patches: `unfold` a feature map into token sequences, `fold` it back, and the bilinear
resizing that lets maps of any size be cut into whole patches."""

from __future__ import annotations

from keras import ops

from mobilevit_utils.layers.common import is_static, spatial_size


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
    height, width = spatial_size(x)
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


def patch_aligned_size(height, width, patch_size):
    """The next (height, width) that are multiples of `patch_size`."""
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
    height, width = spatial_size(x)
    new_height, new_width = patch_aligned_size(height, width, patch_size)
    # With unknown sizes (symbolic tensors) always resize: to the same size it is exact.
    needs_resize = not is_static(height, width) or (new_height, new_width) != (height, width)
    if needs_resize:
        x = resize_bilinear(x, (new_height, new_width))
    patches = transform(unfold(x, patch_size), training=training)
    x = fold(patches, (new_height // patch_size, new_width // patch_size), patch_size)
    return resize_bilinear(x, (height, width)) if needs_resize else x
