"""Port weights of Apple's PyTorch MobileViT into the Keras model.

The reference is `transformers.MobileViTForImageClassification` (checkpoints
`apple/mobilevit-xx-small`, `apple/mobilevit-x-small`, `apple/mobilevit-small`), itself a mirror
of ml-cvnets. Its modules map one-to-one onto `mobilevit_utils.layers`; only the tensor layouts
differ (PyTorch convolutions are `(out, in, kh, kw)`, Keras `(kh, kw, in, out)`; linear layers
are transposed; query/key/value are fused into one projection here).

MobileViTv2 (`transformers.MobileViTV2ForImageClassification`, checkpoints
`apple/mobilevitv2-1.0-imagenet1k-256` and the other widths) maps onto the `v2_*` variants the
same way; its 1x1 convolutions become Dense layers on channels-last tokens.

Usage where the internet is reachable::

    from transformers import MobileViTForImageClassification
    torch_model = MobileViTForImageClassification.from_pretrained("apple/mobilevit-xx-small")
    model = mobilevit_xxs()
    load_torch_state_dict(model, torch_model.state_dict())

Apple's checkpoints expect RGB scaled to [0, 1] with channels flipped to **BGR** (the
`MobileViTImageProcessor` does `do_flip_channel_order=True`), resized to 288 and centre-cropped
to 256 pixels.
"""

from __future__ import annotations

import numpy as np

from mobilevit_utils import block_kinds
from mobilevit_utils.layers import ConvNormAct, InvertedResidual
from mobilevit_utils.models import get_variant

# Buffers of the reference that have no Keras counterpart.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def _to_numpy(value):
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _conv_kernel(w):
    return np.transpose(w, (2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)


def _depthwise_kernel(w):
    return np.transpose(w, (2, 3, 0, 1))  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _linear_kernel(w):
    return np.transpose(w)


def _fused_kernel(*ws):
    return np.concatenate([np.transpose(w) for w in ws], axis=1)


def _fused_bias(*bs):
    return np.concatenate(bs, axis=0)


def _identity(w):
    return w


def _conv_norm_act(layer, prefix):
    kernel = _depthwise_kernel if layer.depthwise else _conv_kernel
    yield layer.conv.kernel, [f"{prefix}.convolution.weight"], kernel
    if layer.norm is not None:
        norm = layer.norm
        for variable, name in (
            (norm.gamma, "weight"),
            (norm.beta, "bias"),
            (norm.moving_mean, "running_mean"),
            (norm.moving_variance, "running_var"),
        ):
            yield variable, [f"{prefix}.normalization.{name}"], _identity


def _inverted_residual(layer, prefix):
    for name in ("expand_1x1", "conv_3x3", "reduce_1x1"):
        yield from _conv_norm_act(getattr(layer, name), f"{prefix}.{name}")


def _dense(layer, prefix):
    yield layer.kernel, [f"{prefix}.weight"], _linear_kernel
    if layer.use_bias:
        yield layer.bias, [f"{prefix}.bias"], _identity


def _layer_norm(layer, prefix):
    yield layer.gamma, [f"{prefix}.weight"], _identity
    yield layer.beta, [f"{prefix}.bias"], _identity


def _transformer_layer(layer, prefix):
    attention = layer.attention
    qkv = [f"{prefix}.attention.attention.{n}" for n in ("query", "key", "value")]
    yield attention.qkv_proj.kernel, [f"{k}.weight" for k in qkv], _fused_kernel
    if attention.qkv_bias:
        yield attention.qkv_proj.bias, [f"{k}.bias" for k in qkv], _fused_bias
    yield from _dense(attention.out_proj, f"{prefix}.attention.output.dense")
    yield from _layer_norm(layer.attention_norm, f"{prefix}.layernorm_before")
    yield from _layer_norm(layer.mlp_norm, f"{prefix}.layernorm_after")
    yield from _dense(layer.mlp_in, f"{prefix}.intermediate.dense")
    yield from _dense(layer.mlp_out, f"{prefix}.output.dense")


def _pointwise_kernel(w):
    return np.transpose(w[:, :, 0, 0])  # 1x1 conv (out, in, 1, 1) -> Dense (in, out)


def _pointwise(layer, prefix):
    yield layer.kernel, [f"{prefix}.convolution.weight"], _pointwise_kernel
    yield layer.bias, [f"{prefix}.convolution.bias"], _identity


def _separable_transformer_layer(layer, prefix):
    yield from _layer_norm(layer.attention_norm, f"{prefix}.layernorm_before")
    yield from _pointwise(layer.attention.qkv_proj, f"{prefix}.attention.qkv_proj")
    yield from _pointwise(layer.attention.out_proj, f"{prefix}.attention.out_proj")
    yield from _layer_norm(layer.mlp_norm, f"{prefix}.layernorm_after")
    yield from _pointwise(layer.mlp_in, f"{prefix}.ffn.conv1")
    yield from _pointwise(layer.mlp_out, f"{prefix}.ffn.conv2")


# How each reference backbone names a transformer layer's parts.
_TRANSFORMER_LAYERS = {
    "mobilevit": _transformer_layer,
    "mobilevitv2": _separable_transformer_layer,
}


def _mobilevit_block(layer, prefix, root):
    """v1 and v2 blocks: the same parts under the same names, v2 without a fusion conv."""
    transformer = _TRANSFORMER_LAYERS[root]
    yield from _conv_norm_act(layer.local_rep_layer_1, f"{prefix}.conv_kxk")
    yield from _conv_norm_act(layer.local_rep_layer_2, f"{prefix}.conv_1x1")
    for i, transformer_layer in enumerate(layer.transformer_layers):
        yield from transformer(transformer_layer, f"{prefix}.transformer.layer.{i}")
    yield from _layer_norm(layer.transformer_layer_norm, f"{prefix}.layernorm")
    yield from _conv_norm_act(layer.conv_proj, f"{prefix}.conv_projection")
    if getattr(layer, "fusion", None) is not None:
        yield from _conv_norm_act(layer.fusion, f"{prefix}.fusion")


def _reference_prefix(layer_name, root="mobilevit"):
    """Reference module path for a top-level layer of `build_mobilevit` (None: no weights).
    `root` is the reference's backbone attribute: "mobilevit" (v1) or "mobilevitv2"."""
    if layer_name == "stem":
        return f"{root}.conv_stem"
    if layer_name == "final_conv":
        return f"{root}.conv_1x1_exp"
    if layer_name == "classifier":
        return "classifier"
    if layer_name.startswith("stage"):
        stage, part = layer_name.split("_", 1)
        index = int(stage.removeprefix("stage")) - 1
        if part.startswith("block"):
            return f"{root}.encoder.layer.{index}.layer.{int(part.removeprefix('block')) - 1}"
        if part == "downsample":
            return f"{root}.encoder.layer.{index}.downsampling_layer"
        return f"{root}.encoder.layer.{index}"
    return None


def _backbone(kinds):
    """The reference backbone ("mobilevit" or "mobilevitv2", `BlockKind.reference`) that holds
    MobileViT blocks of `kinds`."""
    attention = [kind for kind in kinds if kind.role == "attention"]
    roots = {kind.reference for kind in attention}
    if None in roots or len(roots) > 1:
        names = ", ".join(sorted({kind.name for kind in attention}))
        raise WeightMismatchError(
            f"Apple's reference has no model with these blocks ({names}): only the v1 (xxs, xs, "
            "s) and v2 (v2_050 ... v2_200) variants have reference weights."
        )
    return roots.pop() if roots else "mobilevit"


def reference_root(model):
    """The reference's backbone attribute for `model`: "mobilevitv2" for MobileViTv2 models."""
    return _backbone(block_kinds.block_kinds_in(model))


def weight_map(model):
    """Yield `(keras_variable, reference_keys, transform)` for every weight of `model`."""
    root = reference_root(model)
    for layer in model.layers:
        prefix = _reference_prefix(layer.name, root)
        if prefix is None:
            continue
        if isinstance(layer, ConvNormAct):
            yield from _conv_norm_act(layer, prefix)
        elif isinstance(layer, InvertedResidual):
            yield from _inverted_residual(layer, prefix)
        elif isinstance(layer, tuple(block_kinds.ATTENTION_BLOCKS.values())):
            yield from _mobilevit_block(layer, prefix, root)
        else:
            yield from _dense(layer, prefix)


class WeightMismatchError(ValueError):
    """The state dict does not fit the model; the message lists the offending keys."""


def _summarise(title, items, limit=10):
    shown = ", ".join(items[:limit])
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"{title} ({len(items)}): {shown}{more}"


def load_torch_state_dict(model, state_dict):
    """Copy a reference state dict (torch tensors or numpy arrays) into `model`.

    Accepts the state dict of `MobileViTForImageClassification` or
    `MobileViTV2ForImageClassification` or, for models built with `include_top=False`, of
    `MobileViTModel`/`MobileViTV2Model` (keys without the `mobilevit.`/`mobilevitv2.` prefix).
    Raises `WeightMismatchError` listing missing, unexpected and mis-shaped keys; nothing is
    assigned unless everything fits.
    """
    state = dict(state_dict)
    root = reference_root(model)
    if state and not any(k.startswith((f"{root}.", "classifier.")) for k in state):
        state = {f"{root}.{k}": v for k, v in state.items()}

    used, missing, mismatched, assignments = set(), [], [], []
    for variable, keys, transform in weight_map(model):
        absent = [k for k in keys if k not in state]
        if absent:
            missing.extend(absent)
            continue
        used.update(keys)
        value = transform(*[_to_numpy(state[k]) for k in keys])
        if tuple(value.shape) != tuple(variable.shape):
            mismatched.append(
                f"{'+'.join(keys)} {tuple(value.shape)} -> {variable.path} {tuple(variable.shape)}"
            )
            continue
        assignments.append((variable, value))

    unexpected = sorted(k for k in state if k not in used and not k.endswith(_IGNORED_SUFFIXES))
    if missing or unexpected or mismatched:
        problems = [
            _summarise(title, items)
            for title, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("mis-shaped", mismatched),
            )
            if items
        ]
        raise WeightMismatchError(
            f"State dict does not match {model.name}: "
            + "; ".join(problems)
            + ". Build the variant (xxs/xs/s, v2_050 ... v2_200) and num_classes of the "
            "checkpoint."
        )
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    return model


def _width_multiplier(config):
    """The v2 width multiplier alpha that generates `config`'s rows, from its name."""
    return int(config.name.rsplit("_", 1)[-1]) / 100


def reference_config(variant, num_classes=1000):
    """`transformers.MobileViTConfig` (or `MobileViTV2Config`) of the reference model matching
    one of our ImageNet variants."""
    config = get_variant(variant)
    if _backbone(block_kinds.BLOCK_KINDS[stage.block] for stage in config.stages) == "mobilevitv2":
        from transformers import MobileViTV2Config

        return MobileViTV2Config(num_labels=num_classes, width_multiplier=_width_multiplier(config))
    from transformers import MobileViTConfig

    return MobileViTConfig(
        num_labels=num_classes,
        neck_hidden_sizes=list(config.channels),
        hidden_sizes=list(config.embedding_dims),
        expand_ratio=config.stages[1].expand_ratio,
        num_attention_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        patch_size=config.stages[3].patch_size,
    )


def random_reference(variant, num_classes=1000, seed=0):
    """A randomly initialised PyTorch reference model (offline), in eval mode.

    Normalisation statistics are randomised too: at their initial values (mean 0, variance 1)
    a mistake in mapping them would go unnoticed.
    """
    import torch
    from transformers import MobileViTForImageClassification, MobileViTV2ForImageClassification

    torch.manual_seed(seed)
    config = reference_config(variant, num_classes)
    is_v2 = config.model_type == "mobilevitv2"
    reference = MobileViTV2ForImageClassification if is_v2 else MobileViTForImageClassification
    model = reference(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):  # initialised to the identity affine
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


def reference_logits(reference, images):
    """Logits of the PyTorch reference for channels-last float images."""
    import torch

    pixels = torch.from_numpy(np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2))))
    with torch.no_grad():
        return reference(pixels).logits.numpy()
