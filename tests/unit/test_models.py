import keras
import numpy as np
import pytest

from mobilevit_utils import models


def to_np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "builder, expected",
    [
        (models.mobilevit_xxs, 1_272_024),
        (models.mobilevit_xs, 2_317_848),
        (models.mobilevit_s, 5_578_632),
    ],
)
def test_parameter_counts_match_reference(builder, expected):
    model = builder(num_classes=1000, input_shape=(256, 256, 3))
    assert models.trainable_params(model) == expected


@pytest.mark.parametrize(
    "name, expected", [("v2_050", 1_370_593), ("v2_100", 4_901_841), ("v2_200", 18_449_329)]
)
def test_v2_parameter_counts_match_apple(name, expected):
    """Apple's published counts (ml-cvnets, 1000 classes); tests/unit/test_convert.py checks all
    seven widths against transformers' model."""
    assert models.trainable_params(models.build_mobilevit(name, num_classes=1000)) == expected


STRUCTURAL = ["xxs_cifar_v3", "xxs_cifar_dynconv", "v2_050_cifar"]


@pytest.mark.parametrize("name", STRUCTURAL)
def test_structural_variants_save_load_and_count(name, tmp_path, rng):
    model = models.build_mobilevit(name, num_classes=10)
    x = rng.uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(to_np(loaded(x, training=False)), to_np(model(x, training=False)))
    rows = models.layer_table(model)
    assert sum(r["params"] for r in rows) == model.count_params()
    assert models.count_macs(model) > 0


def test_v3_block_frees_macs_and_dynconv_costs_few():
    macs = {n: models.count_macs(models.build_mobilevit(n)) for n in ["xxs_cifar", *STRUCTURAL]}
    # The 1x1 fusion of local and global features replaces a 3x3 conv over 2x the channels.
    assert macs["xxs_cifar_v3"] < 0.75 * macs["xxs_cifar"]
    # Four depthwise kernels per inverted residual: depthwise convs are a small part.
    assert macs["xxs_cifar"] < macs["xxs_cifar_dynconv"] < 1.15 * macs["xxs_cifar"]


def test_unknown_variant_and_bad_input_shape_are_clear_errors():
    with pytest.raises(ValueError, match="expected one of"):
        models.get_variant("tiny")
    with pytest.raises(ValueError, match="at least 32"):
        models.build_mobilevit("xxs", input_shape=(16, 16, 3))


def test_dynamic_input_sizes_match_fixed_size_models(rng):
    dynamic = models.build_mobilevit("xxs", num_classes=7, input_shape=(None, None, 3))
    for size in [(32, 32), (100, 75), (224, 224)]:
        fixed = models.build_mobilevit("xxs", num_classes=7, input_shape=(*size, 3))
        fixed.set_weights(dynamic.get_weights())
        x = rng.uniform(size=(2, *size, 3)).astype("float32")
        out = to_np(dynamic(x, training=False))
        assert out.shape == (2, 7)
        np.testing.assert_allclose(out, to_np(fixed(x, training=False)), atol=1e-5)


def test_feature_extractor_and_rescaling():
    features = models.build_mobilevit("xxs", include_top=False, input_shape=(64, 64, 3))
    assert features.output.shape == (None, 2, 2, 320)
    pooled = models.build_mobilevit(
        "xxs", include_top=False, pooling="avg", input_shape=(64, 64, 3)
    )
    assert pooled.output.shape == (None, 320)
    raw = models.mobilevit_xxs_cifar(include_rescaling=True)
    assert raw.layers[1].name == "rescaling"


def test_cifar_variant_keeps_resolution_for_attention():
    model = models.mobilevit_xxs_cifar()
    shapes = {row["layer"]: row["output_shape"] for row in models.layer_table(model)}
    assert shapes["stage1_block1"] == (32, 32, 16)  # full resolution before the first stride
    assert shapes["stage2_block3"] == (16, 16, 24)
    # Attention over 2x2 patches of 8x8, 4x4 and 4x4 maps: 16, 4 and 4 tokens (the ImageNet
    # layout would leave 1 token at stage 5).
    assert [shapes[f"stage{i}_mobilevit"][:2] for i in (3, 4, 5)] == [(8, 8), (4, 4), (4, 4)]
    assert model.output.shape == (None, 10)


def test_layer_table_adds_up():
    model = models.mobilevit_xxs()
    rows = models.layer_table(model)
    assert sum(r["params"] for r in rows) == model.count_params()
    # MobileViT-XXS at 256x256: about 0.4 G multiply-accumulates (paper: 0.4 GFLOPs).
    assert 0.35e9 < models.count_macs(model) < 0.45e9
    with pytest.raises(ValueError, match="fixed input size"):
        models.layer_table(models.build_mobilevit("xxs", input_shape=(None, None, 3)))


def test_save_and_load_with_safe_mode_gives_identical_outputs(tmp_path, rng):
    model = models.mobilevit_xxs_cifar(num_classes=10, transformer_dropout=0.1)
    x = rng.uniform(size=(4, 32, 32, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(to_np(loaded(x, training=False)), to_np(model(x, training=False)))
    assert (
        loaded.get_layer("stage3_mobilevit").get_config()
        == model.get_layer("stage3_mobilevit").get_config()
    )


def test_variants_are_stage_rows():
    xxs, cifar = models.get_variant("xxs"), models.get_variant("xxs_cifar")
    assert [s.block for s in xxs.stages] == [
        "conv",
        "mv2",
        "mv2",
        "mobilevit",
        "mobilevit",
        "mobilevit",
        "conv1x1",
    ]
    # the CIFAR layout is the XXS rows with other strides
    assert cifar.with_strides(xxs.strides).stages == xxs.stages
    assert cifar.output_stride == 8 and xxs.output_stride == 32
    edited = cifar.edit_stages("p1", stage4={"patch_size": 1})
    assert [s.patch_size for s in edited.stages[3:6]] == [2, 1, 2]
    assert models.get_variant("xxs_cifar_p1").stages[4].patch_size == 1
    with pytest.raises(ValueError, match="block kind"):
        models.Stage("transformer", 64)
    v3 = models.get_variant("xxs_cifar_v3")
    assert [s.block for s in v3.stages[3:6]] == ["mobilevit_v3"] * 3
    assert v3.stages[:3] == cifar.stages[:3]
    dyn = models.get_variant("xxs_cifar_dynconv")
    assert [s.dynamic_kernels for s in dyn.stages] == [0, 4, 4, 4, 4, 4, 0]
    v2 = models.get_variant("v2_100")
    assert [s.channels for s in v2.stages] == [32, 64, 128, 256, 384, 512]
    assert v2.embedding_dims == (128, 192, 256)
