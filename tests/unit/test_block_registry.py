"""One registry entry is all a new block kind takes: a toy kind, added with
`block_kinds.register_block_kind` alone, builds, counts its MACs, is drawn, saves and loads."""

import keras
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mobilevit_utils import block_kinds, convert, layers, models, plots  # noqa: E402


@keras.saving.register_keras_serializable(package="test_block_registry")
class ToyBlock(keras.layers.Layer):
    """Stands in for a new MobileViT block: it takes what every attention kind's layer is given
    and adds a 1x1 conv through `embedding_dim` to its input."""

    def __init__(
        self,
        embedding_dim,
        num_transformer_layers=1,
        patch_size=2,
        mlp_ratio=2.0,
        attention_drop=0.0,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.settings = dict(
            embedding_dim=embedding_dim,
            num_transformer_layers=num_transformer_layers,
            patch_size=patch_size,
            mlp_ratio=mlp_ratio,
            attention_drop=attention_drop,
            dropout=dropout,
        )
        self.expand = keras.layers.Conv2D(embedding_dim, 1, name="expand")

    def build(self, input_shape):
        self.reduce = keras.layers.Conv2D(input_shape[-1], 1, name="reduce")
        self.expand.build(input_shape)
        self.reduce.build((*input_shape[:-1], self.embedding_dim))

    def call(self, x):
        return x + self.reduce(self.expand(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shape):
        height, width, channels = input_shape
        return 2 * height * width * channels * self.embedding_dim

    def get_config(self):
        return {**super().get_config(), **self.settings}


@pytest.fixture
def toy_kind():
    kind = block_kinds.register_block_kind(
        block_kinds.BlockKind("toy", ToyBlock, label="toy block")
    )
    yield kind
    block_kinds.unregister_block_kind("toy")


def test_a_toy_block_kind_needs_one_registry_entry(toy_kind, tmp_path):
    config = models.get_variant("xxs_cifar").edit_stages_of_kind(
        "toy_cifar", ("mobilevit",), block="toy"
    )
    assert "toy" in models.ATTENTION_BLOCKS and config.embedding_dims == (64, 80, 96)
    model = models.build_mobilevit(config, num_classes=10)
    toys = [layer for layer in model.layers if isinstance(layer, ToyBlock)]
    assert [t.name for t in toys] == ["stage3_mobilevit", "stage4_mobilevit", "stage5_mobilevit"]
    assert block_kinds.block_kinds_in(model)[-1] is toy_kind

    macs = {row["layer"]: row["macs"] for row in models.layer_table(model)}
    assert macs["stage3_mobilevit"] == 2 * 8 * 8 * 48 * 64
    assert models.count_macs(model) == sum(macs.values())

    fig = plots.architecture_figure(model)
    texts = [text.get_text() for ax in fig.axes for text in ax.texts]
    assert sum(t.endswith("+ toy block") for t in texts) == 3
    plt.close(fig)

    x = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "toy.keras")
    loaded = keras.saving.load_model(tmp_path / "toy.keras", safe_mode=True)
    assert isinstance(loaded.get_layer("stage4_mobilevit"), ToyBlock)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
    )
    with pytest.raises(convert.WeightMismatchError, match="no model with these blocks [(]toy[)]"):
        convert.reference_root(model)


def test_unregistered_and_duplicate_kinds_are_clear_errors(toy_kind):
    with pytest.raises(ValueError, match="already registered"):
        block_kinds.register_block_kind(toy_kind)
    with pytest.raises(ValueError, match="role must be one of"):
        block_kinds.BlockKind("odd", ToyBlock, role="pooling")
    block_kinds.unregister_block_kind("toy")
    try:
        with pytest.raises(ValueError, match="block kind"):
            models.Stage("toy", 48)
        assert "toy" not in models.ATTENTION_BLOCKS
    finally:
        block_kinds.register_block_kind(toy_kind)  # for the fixture to remove


def test_every_kind_names_a_registered_layer_of_the_package():
    names = list(block_kinds.BLOCK_KINDS)
    assert names == ["conv", "mv2", "mobilevit", "mobilevit_v2", "mobilevit_v3", "conv1x1"]
    assert dict(models.ATTENTION_BLOCKS) == {
        "mobilevit": layers.MobileViTBlock,
        "mobilevit_v2": layers.MobileViTV2Block,
        "mobilevit_v3": layers.MobileViTV3Block,
    }
    for kind in block_kinds.BLOCK_KINDS.values():
        assert keras.saving.get_registered_name(kind.layer).startswith("mobilevit>"), kind.name
