"""Parity with Apple's reference (transformers' PyTorch MobileViT), randomly initialised offline."""

import keras
import numpy as np
import pytest

from mobilevit_utils import convert, models

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize(
    "variant, size",
    [
        ("xxs", 256),
        ("xs", 256),
        ("s", 256),
        ("xxs", 224),
        # MobileViTv2 (separable attention, GroupNorm with randomised affine), on sides that
        # are multiples of 64 (transformers' v2 does not resize other sizes).
        ("v2_050", 256),
        ("v2_100", 64),
        ("v2_175", 128),
    ],
)
def test_converted_weights_reproduce_reference_logits(variant, size):
    ref = convert.random_reference(variant)
    x = np.random.default_rng(1).uniform(size=(2, size, size, 3)).astype("float32")
    want = convert.reference_logits(ref, x)
    model = models.build_mobilevit(variant, input_shape=(size, size, 3))
    convert.load_torch_state_dict(model, ref.state_dict())
    got = keras.ops.convert_to_numpy(model(x, training=False))
    assert np.abs(want).max() > 0.05  # a real signal, not near-zero logits
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.argmax(got, -1).tolist() == np.argmax(want, -1).tolist()


def test_v2_parameter_counts_equal_the_reference():
    """All seven widths, 1000-class heads: trainable parameters equal transformers' count."""
    for name, alpha in [
        (f"v2_{round(a * 100):03d}", a) for a in (0.5, 0.75, 1, 1.25, 1.5, 1.75, 2)
    ]:
        ref = convert.random_reference(name)
        expected = sum(p.numel() for p in ref.parameters())
        assert convert.reference_config(name).width_multiplier == alpha
        assert models.trainable_params(models.build_mobilevit(name)) == expected, name


def test_numpy_state_dict_and_headless_model():
    ref = convert.random_reference("xxs")
    backbone_state = {k: v.numpy() for k, v in ref.mobilevit.state_dict().items()}
    model = models.build_mobilevit("xxs", include_top=False, input_shape=(64, 64, 3))
    convert.load_torch_state_dict(model, backbone_state)
    x = np.random.default_rng(2).uniform(size=(1, 64, 64, 3)).astype("float32")
    with torch.no_grad():
        want = ref.mobilevit(torch.from_numpy(x.transpose(0, 3, 1, 2))).last_hidden_state.numpy()
    got = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), atol=1e-4)


def test_mismatched_state_dict_lists_the_problem_keys():
    state = convert.random_reference("xxs", num_classes=10).state_dict()
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


def test_apple_preset_offline_is_a_one_line_error(monkeypatch):
    """Without the internet (or transformers' cache), Apple's weights fail clearly."""
    from mobilevit_utils import presets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-cache")
    with pytest.raises(ConnectionError, match="apple/mobilevit-xx-small") as error:
        presets.from_preset("apple/mobilevit-xx-small")
    assert "\n" not in str(error.value)
