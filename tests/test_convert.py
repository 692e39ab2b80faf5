"""Parity with Apple's reference (transformers' PyTorch MobileViT), randomly initialised offline."""

import keras
import numpy as np
import pytest

from mobilevit_utils import convert, models

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REFERENCE_CONFIGS = {
    "xxs": dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0),
    "xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
    "s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}


def reference_model(variant, num_labels=1000, seed=0):
    torch.manual_seed(seed)
    config = transformers.MobileViTConfig(num_labels=num_labels, **REFERENCE_CONFIGS[variant])
    model = transformers.MobileViTForImageClassification(config).eval()
    with torch.no_grad():  # non-trivial normalisation statistics, so a mix-up would show
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.mark.parametrize("variant, size", [("xxs", 256), ("xs", 256), ("s", 256), ("xxs", 224)])
def test_converted_weights_reproduce_reference_logits(variant, size):
    ref = reference_model(variant)
    x = np.random.default_rng(1).uniform(size=(2, size, size, 3)).astype("float32")
    with torch.no_grad():
        want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).logits.numpy()
    model = models.build_mobilevit(variant, input_shape=(size, size, 3))
    convert.load_torch_state_dict(model, ref.state_dict())
    got = keras.ops.convert_to_numpy(model(x, training=False))
    assert np.abs(got - want).max() <= 1e-4
    assert np.argmax(got, -1).tolist() == np.argmax(want, -1).tolist()


def test_numpy_state_dict_and_headless_model():
    ref = reference_model("xxs")
    backbone_state = {k: v.numpy() for k, v in ref.mobilevit.state_dict().items()}
    model = models.build_mobilevit("xxs", include_top=False, input_shape=(64, 64, 3))
    convert.load_torch_state_dict(model, backbone_state)
    x = np.random.default_rng(2).uniform(size=(1, 64, 64, 3)).astype("float32")
    with torch.no_grad():
        want = ref.mobilevit(torch.from_numpy(x.transpose(0, 3, 1, 2))).last_hidden_state.numpy()
    got = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), atol=1e-4)


def test_mismatched_state_dict_lists_the_problem_keys():
    state = reference_model("xxs", num_labels=10).state_dict()
    model = models.build_mobilevit("xxs", num_classes=1000)
    with pytest.raises(convert.WeightMismatchError, match="mis-shaped [(]2[)]") as info:
        convert.load_torch_state_dict(model, state)
    assert "classifier.weight (320, 10) -> classifier/kernel (320, 1000)" in str(info.value)
    with pytest.raises(convert.WeightMismatchError, match="Build the variant"):
        convert.load_torch_state_dict(models.build_mobilevit("xs", num_classes=10), state)
    state = dict(state)
    state.pop("mobilevit.conv_stem.convolution.weight")
    state["extra.weight"] = np.zeros(1)
    with pytest.raises(convert.WeightMismatchError) as info:
        convert.load_torch_state_dict(models.build_mobilevit("xxs", num_classes=10), state)
    message = str(info.value)
    assert "missing keys (1): mobilevit.conv_stem.convolution.weight" in message
    assert "unexpected keys (1): extra.weight" in message
