"""Fine-tuning (`train --init-from`, the `finetune` preset): the backbone's weights arrive, the
head is new, the input contract follows the source, and the two phases resume. Offline: the
released checkpoint, and an Apple-layout model whose random weights went through the converter."""

import json

import keras
import numpy as np
import pytest
from helpers import learnable_images, tiny_dataset, write_image_tree

from mobilevit_utils import cli, data, inference, models, presets, training

QUIET = {"print_fn": lambda *_: None}


def _weights(model, name):
    return [np.asarray(w) for w in model.get_layer(name).get_weights()]


def test_finetune_keeps_the_released_backbone_and_trains_a_new_head(tmp_path):
    released = presets.from_preset("mobilevit_xxs_cifar10")
    run = tmp_path / "run"
    lines = []
    result = training.train(
        "finetune",
        run_dir=run,
        dataset=tiny_dataset(n_per_class=12, classes=4),
        epochs=1,
        head_epochs=1,
        batch_size=8,
        print_fn=lines.append,
    )
    assert any(line.startswith("phase 1: the new head alone for 1 epoch") for line in lines)
    head, _ = training.load_run(run / "head", compile=False)
    final = result["model"]
    assert final.output_shape == (None, 4) and released.output_shape == (None, 10)
    for name in ("stem", "stage4", "stage5"):  # frozen in phase 1, trained in phase 2
        layer = next(layer.name for layer in final.layers if layer.name.startswith(name))
        for got, want in zip(_weights(head, layer), _weights(released, layer)):
            np.testing.assert_array_equal(got, want)
        assert any(
            not np.array_equal(a, b)
            for a, b in zip(_weights(final, layer), _weights(released, layer))
        )
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["init_from"] == "mobilevit_xxs_cifar10" and metadata["head_epochs"] == 1
    assert metadata["input_shape"] == [32, 32, 3] and metadata["variant"] == "xxs_cifar"
    assert json.loads((run / "config.json").read_text())["init_from"] == "mobilevit_xxs_cifar10"
    with pytest.raises(training.RunExistsError, match="has finished"):
        training.train("finetune", run_dir=run, resume=True, **QUIET)


@pytest.fixture
def apple_layout_checkpoint(tmp_path):
    """An Apple-layout (xxs, BGR in [0, 1]) model: random transformers weights through the
    converter, saved as a .keras file with its metadata beside it."""
    pytest.importorskip("transformers")
    from mobilevit_utils import convert

    reference = convert.random_reference("xxs", num_classes=7)
    model = models.build_mobilevit("xxs", num_classes=7, input_shape=(64, 64, 3))
    convert.load_torch_state_dict(model, reference.state_dict())
    folder = tmp_path / "apple"
    folder.mkdir()
    model.save(folder / "model.keras")
    (folder / "metadata.json").write_text(
        json.dumps(
            {
                "class_names": [f"imagenet{i}" for i in range(7)],
                "input_shape": [64, 64, 3],
                "preprocessing": models.APPLE_BGR.to_dict(),
            }
        )
    )
    return folder / "model.keras", model


def test_finetune_from_an_apple_layout_takes_rgb_pixels(tmp_path, apple_layout_checkpoint):
    """The source's size (64x64 here) and BGR [0, 1] contract move into the model: it takes
    raw RGB pixels, and its frozen backbone computes the source's features from them."""
    source_path, source = apple_layout_checkpoint
    x, y = learnable_images(10, classes=3, size=40)
    write_image_tree(tmp_path / "photos" / "train", x, y, ["cat", "dog", "emu"])
    run = tmp_path / "run"
    status = cli.main(
        [
            *("train", "--preset", "finetune", "--init-from", str(source_path)),
            *("--data-dir", str(tmp_path / "photos"), "--out", str(run)),
            *("--epochs", "1", "--head-epochs", "1", "--batch-size", "8"),
        ]
    )
    assert status == 0
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["input_shape"] == [64, 64, 3] and metadata["variant"] == "xxs"
    assert metadata["preprocessing"]["channel_order"] == "RGB"
    assert metadata["source_preprocessing"]["channel_order"] == "BGR"

    head, _ = training.load_run(run / "head", compile=False)
    assert "rgb_to_bgr" in [layer.name for layer in head.layers]
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 64, 64, 3)).astype("float32")

    def features(model, images):
        pooled = keras.Model(model.input, model.get_layer("avg_pool").output)
        return keras.ops.convert_to_numpy(pooled(images, training=False))

    np.testing.assert_allclose(
        features(head, pixels),
        features(source, models.APPLE_BGR.prepare(pixels)),
        rtol=1e-4,
        atol=1e-4,
    )
    model, metadata = inference.load_classifier(run / "model.keras")  # safe_mode loading
    assert metadata["class_names"] == ["cat", "dog", "emu"] and model.output_shape == (None, 3)


def test_init_from_problems_are_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    for source, says in [
        (tmp_path / "missing.keras", "no such file"),
        (
            "resnet50",
            "must be a preset (mobilevit_v2_050_cifar10, mobilevit_v2_050_cifar10_heldout, mob",
        ),
    ]:
        status = cli.main(["train", "--init-from", str(source), "--out", str(out)])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert says in err and not out.exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub, as offline as this machine
    status = cli.main(["train", "--init-from", "apple/mobilevit-xx-small", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and "offline?" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_interrupted_finetune_resumes_in_its_second_phase_and_final_fit(tmp_path):
    """Stopped during phase 2 of a final fit (no validation split): --resume skips the finished
    head phase and continues phase 2 from its last finished epoch."""

    class StopAtEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    images = tiny_dataset(n_per_class=10, classes=3)
    every_image = data.ImageDataset(
        images.x_train,
        images.y_train,
        images.x_val[:0],
        images.y_val[:0],
        images.class_names,
        "synthetic",
    )
    settings = dict(
        dataset=every_image, epochs=2, head_epochs=1, batch_size=8, validation_split=0.0
    )
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        training.train("finetune", run_dir=run, callbacks=[StopAtEpoch2()], **settings, **QUIET)
    assert training.run_finished(run / "head") and (run / "backup").exists()
    lines = []
    result = training.train("finetune", run_dir=run, resume=True, print_fn=lines.append, **settings)
    assert not any(line.startswith("phase 1") for line in lines)
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["2/2"]
    assert len(result["history"]) == 2 and result["metadata"]["val_images"] == 0
