import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import learnable_images, tiny_dataset, write_image_tree

from mobilevit_utils import training

ROOT = Path(__file__).resolve().parents[2]


def test_presets_are_plain_editable_data():
    quick = training.get_recipe("quick")
    edited = dataclasses.replace(quick, epochs=5)
    assert edited.epochs == 5 and quick.epochs == 2
    assert set(training.RECIPES) == {"quick", "cpu", "gpu", "finetune"}
    assert training.RECIPES["gpu"].mixed_precision
    with pytest.raises(ValueError, match="expected one of"):
        training.get_recipe("fast")


def test_warmup_then_cosine_schedule_values():
    config = training.TrainConfig(
        epochs=10, learning_rate=1e-3, min_learning_rate=1e-5, warmup_epochs=2
    )
    schedule = training.make_schedule(config, steps_per_epoch=10)

    def lr(step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    assert lr(0) == pytest.approx(1e-5, rel=1e-3)
    assert lr(10) == pytest.approx(0.5 * (1e-3 + 1e-5), rel=1e-2)  # half-way up the warm-up
    assert lr(20) == pytest.approx(1e-3, rel=1e-3)  # peak after warm-up
    assert lr(60) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5, rel=1e-2)  # half-way down
    assert lr(100) == pytest.approx(1e-5, rel=1e-2)
    assert training.make_schedule(dataclasses.replace(config, schedule="plateau"), 10) == 1e-3


def test_optimizer_skips_weight_decay_on_norms_and_biases():
    config = training.TrainConfig(epochs=1)
    optimizer = training.make_optimizer(config, 10)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    dense = keras.layers.Dense(3)
    norm = keras.layers.LayerNormalization()
    dense.build((None, 4))
    norm.build((None, 3))
    optimizer.build(dense.trainable_variables + norm.trainable_variables)
    decayed = {
        v.name: optimizer._use_weight_decay(v)
        for v in dense.trainable_variables + norm.trainable_variables
    }
    assert decayed == {"kernel": True, "bias": False, "gamma": False, "beta": False}
    for name, cls in [("adam", keras.optimizers.Adam), ("sgd", keras.optimizers.SGD)]:
        assert isinstance(
            training.make_optimizer(dataclasses.replace(config, optimizer=name), 10), cls
        )


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's tracing")
def test_tensorflow_traces_the_train_step_once():
    """compile_model creates the optimizer's variables; left to the first traced step, their
    creation makes tf.function trace the whole step a second time (tens of seconds a run)."""
    config = training.TrainConfig(epochs=2, batch_size=4)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(10)(inputs))
    training.compile_model(model, config, steps_per_epoch=2, num_classes=10)
    assert model.optimizer.built
    traces = []
    train_step = model.train_step
    model.train_step = lambda data: traces.append(1) or train_step(data)  # runs when traced
    y = keras.utils.to_categorical(np.arange(8) % 10, 10)
    model.fit(np.ones((8, 6), "float32"), y, batch_size=4, epochs=2, verbose=0)
    assert len(traces) == 1


def test_loss_follows_label_type():
    assert training.uses_soft_labels(training.TrainConfig(label_smoothing=0.1))
    assert training.uses_soft_labels(training.TrainConfig(label_smoothing=0, augmentation="strong"))
    assert not training.uses_soft_labels(
        training.TrainConfig(label_smoothing=0, augmentation="light")
    )
    assert isinstance(training.make_loss(True, 0.1), keras.losses.CategoricalCrossentropy)
    assert isinstance(training.make_loss(False), keras.losses.SparseCategoricalCrossentropy)
    with pytest.raises(ValueError, match="soft"):
        training.make_loss(False, 0.1)


def test_callbacks_are_wired(tmp_path):
    config = dataclasses.replace(
        training.get_recipe("quick"), early_stopping_patience=3, schedule="plateau"
    )
    kinds = {type(c).__name__ for c in training.make_callbacks(tmp_path, config)}
    assert {
        "BackupAndRestore",
        "ModelCheckpoint",
        "CSVLogger",
        "TerminateOnNaN",
        "EpochLogger",
        "EarlyStopping",
        "ReduceLROnPlateau",
        "TensorBoard",
    } <= kinds


def test_quick_training_run_writes_everything(trained_run):
    run = trained_run
    lines = (run.parent / "printed.txt").read_text().splitlines()
    for name in ("model.keras", "config.json", "environment.json", "history.csv", "metadata.json"):
        assert (run / name).exists(), name
    assert not (run / "backup").exists()  # removed after a finished run
    assert sum(line.startswith("epoch ") for line in lines) == 3
    assert "checkpoint" in lines[-1]
    metadata = json.loads((run / "metadata.json").read_text())
    assert (
        metadata["class_names"] == ["class0", "class1", "class2"]
        and metadata["epochs_completed"] == 3
    )
    assert json.loads((run / "config.json").read_text())["epochs"] == 3
    assert json.loads((run / "environment.json").read_text())["backend"] == keras.backend.backend()
    model, meta = training.load_run(run)
    assert model.output.shape == (None, 3) and meta["input_shape"] == [32, 32, 3]
    with pytest.raises(training.RunExistsError, match="resume"):
        training.train("quick", run_dir=run, dataset=tiny_dataset())
    with pytest.raises(training.RunExistsError, match="has finished"):
        training.train("quick", run_dir=run, dataset=tiny_dataset(), resume=True)


def test_run_stopped_before_its_first_epoch_is_not_finished(tmp_path):
    """Killed during epoch 1: config.json and an empty history.csv, no backup yet. Resuming
    starts it again instead of calling it finished."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "history.csv").write_text("")
    assert not training.run_finished(run)
    training.train("quick", run_dir=run, dataset=tiny_dataset(), resume=True, epochs=1)
    assert training.run_finished(run)
    assert len(training.read_history(run)) == 1


def test_same_seed_gives_same_metrics(trained_run, tmp_path):
    """Repeat the session's quick run with the same seed: the same history, to the digit."""
    again = training.train(
        "quick",
        run_dir=tmp_path / "again",
        dataset=tiny_dataset(n_per_class=16),
        epochs=3,
        batch_size=8,
        print_fn=lambda *_: None,
    )

    def metrics(history):  # all but the epochs' wall times
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in history]

    assert metrics(again["history"]) == metrics(training.read_history(trained_run))
    assert all(row["epoch_time_s"] > 0 for row in again["history"])


def _run_cli(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "mobilevit_utils", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def test_cli_errors_are_one_line(tmp_path, capsys):
    # One error as its own process: nothing but the one line reaches stderr (no TensorFlow
    # start-up noise); the others through the same entry point in this process.
    missing = _run_cli(
        "train",
        "--preset",
        "quick",
        "--data-dir",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "run"),
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr

    from mobilevit_utils import cli

    def run_cli(*args):  # (exit status, stdout, stderr) of `python -m mobilevit_utils ARGS`
        capsys.readouterr()
        try:
            status = cli.main(list(args))
        except SystemExit as exit_:  # argparse: usage errors and --help
            status = exit_.code
        return status, *capsys.readouterr()

    status, _, err = run_cli("train", "--preset", "turbo", "--out", str(tmp_path / "run"))
    assert status == 2 and "invalid choice: 'turbo'" in err
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    if os.access(tmp_path / "ro", os.W_OK):  # root ignores permissions: use a file as a parent
        target = tmp_path / "file" / "run"
        (tmp_path / "file").write_text("")
    else:
        target = tmp_path / "ro" / "run"
    status, _, err = run_cli("train", "--preset", "quick", "--out", str(target))
    assert status == 2 and "Traceback" not in err
    assert err.startswith("error: ")
    status, _, err = run_cli("train", "--validation-split", "1.5", "--out", str(tmp_path / "run"))
    assert status == 2 and err.strip().count("\n") == 0
    assert "--validation-split must be at least 0 and below 1, got 1.5" in err
    status, help_text, _ = run_cli("train", "--help")
    assert status == 0
    for flag in (
        "--preset",
        "--model",
        "--data-dir",
        "--out",
        "--epochs",
        "--batch-size",
        "--lr",
        "--seed",
        "--resume",
    ):
        assert flag in help_text


def test_train_command_reproduces_a_recipe():
    from mobilevit_utils import cli

    recipe = dataclasses.replace(
        training.get_recipe("cpu"),
        model="xxs",
        epochs=7,
        learning_rate=1e-3,
        seed=3,
        ema=True,
        label_smoothing=0.2,
        class_weight="balanced",
        mixed_precision=True,
        jit_compile=False,
        validation_split=0.0,
    )
    command, unexpressed = cli.train_command(recipe.to_dict(), "data", "runs/x")
    assert "--class-weight balanced" in command and "--validation-split 0.0" in command
    assert command.startswith("python -m mobilevit_utils train --preset cpu ")
    assert unexpressed == {}
    args = cli.build_parser().parse_args(command.split()[3:])
    assert (args.data_dir, args.out) == ("data", "runs/x")
    rebuilt = dataclasses.replace(training.get_recipe(args.preset), **cli.train_overrides(args))
    assert rebuilt == recipe
    # Every TrainConfig field has a flag (tests/integration/test_cli_inputs.py); a recorded field no flag
    # sets (one of an older version, say) is reported, not silently dropped.
    _, unexpressed = cli.train_command({**recipe.to_dict(), "retired_knob": 0.5})
    assert unexpressed == {"retired_knob": 0.5}


def test_killed_run_resumes_from_last_finished_epoch(tmp_path):
    """Kill the CLI during epoch 2; --resume continues at epoch 2 and ends with 3 epochs."""
    write_image_tree(
        tmp_path / "images" / "train", *learnable_images(30), ["class0", "class1", "class2"]
    )
    run = tmp_path / "run"
    args = [
        "train",
        "--preset",
        "quick",
        "--data-dir",
        str(tmp_path / "images"),
        "--out",
        str(run),
        "--epochs",
        "3",
        "--batch-size",
        "8",
    ]
    env = {**os.environ, "MOBILEVIT_ARTIFACTS": str(tmp_path / "artifacts")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mobilevit_utils", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    output = []
    for line in process.stdout:  # wait for epoch 1 to finish, then kill during epoch 2
        output.append(line)
        if line.startswith("epoch 1/3"):
            time.sleep(0.5)
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(output)
    assert (run / "backup").exists()
    assert len(training.read_history(run)) == 1

    resumed = subprocess.run(
        [sys.executable, "-m", "mobilevit_utils", *args, "--resume"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    epochs = [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs == ["2/3", "3/3"]
    history = training.read_history(run)
    assert [int(row["epoch"]) for row in history] == [0, 1, 2]
    assert "best checkpoint: " in resumed.stdout and (run / "model.keras").exists()


def test_data_side_layers_stay_float32_under_mixed_precision():
    """Augmentation, MixUp/CutMix and one-hot labels compute in float32 even when the model is
    built under mixed_float16 (CutMix's range op has no float16 kernel)."""
    from mobilevit_utils import augmentation as aug
    from mobilevit_utils import data

    x, y = learnable_images(4)
    with training.dtype_policy("mixed_float16"):
        policy = aug.get_augmentation("strong")
        batches = data.make_batches(
            x,
            y,
            4,
            num_classes=3,
            training=True,
            augmenter=aug.build_augmenter(policy, 0),
            mixer=aug.build_mixer(policy, 0),
        )
    images, labels = next(iter(batches))
    assert images.dtype == labels.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # restored after the block


def test_mixed_precision_model_has_float32_logits_and_converts_to_float32():
    from mobilevit_utils import models

    with training.dtype_policy("mixed_float16"):
        mixed = models.build_mobilevit("xxs_cifar", num_classes=3, include_rescaling=True)
    assert mixed.get_layer("stem").compute_dtype == "float16"
    x = learnable_images(2)[0].astype("float32")
    logits = mixed(x, training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    plain = models.as_float32(mixed)
    assert {layer.dtype_policy.name for layer in plain._flatten_layers()} == {"float32"}
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain(x)), keras.ops.convert_to_numpy(logits), atol=0.05
    )
    assert models.as_float32(plain) is plain


def test_slow_settings_on_a_cpu_are_named():
    assert training.hardware_warnings(training.get_recipe("cpu")) == []
    lines = training.hardware_warnings(training.get_recipe("gpu"))
    assert any("float16" in line for line in lines)
    assert any("XLA" in line for line in lines)
    # a few-epoch check of the recipe is not worth a warning
    assert (
        training.hardware_warnings(dataclasses.replace(training.get_recipe("gpu"), epochs=1)) == []
    )


@pytest.mark.parametrize("backend", ["tensorflw", "mxnet"])
def test_unknown_backend_is_one_line(backend):
    result = subprocess.run(
        [sys.executable, "-m", "mobilevit_utils", "train", "--help"],
        env={**os.environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "not a backend" in result.stderr and "tensorflow, jax, torch" in result.stderr


def test_extra_callbacks_see_every_epoch_of_an_ema_run(tmp_path):
    """`callbacks=` (an Optuna pruner, say) runs after the recipe's own; EMA runs validate."""

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append((epoch, logs["val_accuracy"], logs["epoch_time_s"]))

    recorder = Recorder()
    result = training.train(
        "quick",
        run_dir=tmp_path / "run",
        dataset=tiny_dataset(),
        epochs=2,
        batch_size=8,
        ema=True,
        callbacks=[recorder],
        print_fn=lambda *_: None,
    )
    assert [epoch for epoch, _, _ in recorder.seen] == [0, 1]
    assert [row["val_accuracy"] for row in result["history"]] == [
        acc for _, acc, _ in recorder.seen
    ]
    assert result["config"].ema and (tmp_path / "run" / "model.keras").exists()


def test_dynamic_conv_temperature_is_annealed_during_training(tmp_path):
    """A dynamic-convolution model trains with its softmax temperature annealed from 30 to 1
    (Chen et al.), and the saved model holds the final temperature."""
    from mobilevit_utils.layers import DynamicDepthwiseConv2D

    schedule = training.DynamicConvTemperature(anneal_epochs=2)
    schedule.anneal_steps = 10
    assert [schedule.temperature(s) for s in (0, 5, 10, 20)] == [30.0, 15.5, 1.0, 1.0]
    run = tmp_path / "run"
    training.train(
        "quick", run_dir=run, dataset=tiny_dataset(), model="xxs_cifar_dynconv", epochs=1
    )
    model, _ = training.load_run(run)
    temperatures = [
        float(keras.ops.convert_to_numpy(layer.temperature))
        for layer in model._flatten_layers()
        if isinstance(layer, DynamicDepthwiseConv2D)
    ]
    # 7 inverted residuals: 1 + 3 in stages 1-2, the downsampling one of stages 3-5.
    assert temperatures == [1.0] * 7


def test_balanced_class_weight_reaches_fit(tmp_path, monkeypatch):
    """class_weight="balanced" weighs the loss by n / (classes * count) of the training labels:
    on a 3:1 imbalanced set the rare class gets 3x the common one's weight."""
    weights = training.fit_class_weight("balanced", np.array([0, 0, 0, 1]), 2)
    assert weights == {0: 4 / 6, 1: 4 / 2}
    assert training.fit_class_weight(None, np.array([0, 1]), 2) is None
    with pytest.raises(ValueError, match="balanced"):
        training.fit_class_weight("inverse", np.array([0, 1]), 2)
    seen = {}
    fit = keras.Model.fit

    def spy(self, *args, **kwargs):
        seen["class_weight"] = kwargs.get("class_weight")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    dataset = tiny_dataset()
    keep = np.concatenate(
        [np.flatnonzero(dataset.y_train != 2), np.flatnonzero(dataset.y_train == 2)[:3]]
    )
    dataset = dataclasses.replace(
        dataset, x_train=dataset.x_train[keep], y_train=dataset.y_train[keep]
    )
    training.train(
        "quick", run_dir=tmp_path / "run", dataset=dataset, epochs=1, class_weight="balanced"
    )
    counts = np.bincount(dataset.y_train)
    expected = {c: len(dataset.y_train) / (3 * counts[c]) for c in range(3)}
    assert seen["class_weight"] == pytest.approx(expected)
    assert seen["class_weight"][2] > seen["class_weight"][0]


def test_final_fit_trains_on_every_image_and_keeps_the_last_epoch(tmp_path):
    """validation_split=0: the release recipe's last step, a fit on all training images."""
    from mobilevit_utils import evaluation

    write_image_tree(tmp_path / "data" / "train", *learnable_images(8), ["a", "b", "c"])
    lines = []
    options = dict(data_dir=tmp_path / "data", validation_split=0.0, batch_size=8, epochs=2)
    result = training.train("quick", run_dir=tmp_path / "run", print_fn=lines.append, **options)
    metadata = result["metadata"]
    assert (metadata["train_images"], metadata["val_images"]) == (24, 0)
    assert metadata["best_epoch"] == 2 and metadata["best_val_accuracy"] is None
    assert re.search(r"24 images of \d+x\d+, no validation \(final fit\)", "\n".join(lines))
    assert len(result["history"]) == 2 and "val_accuracy" not in result["history"][0]
    saved = keras.saving.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    for ours, theirs in zip(saved.get_weights(), result["model"].get_weights()):
        np.testing.assert_array_equal(ours, theirs)  # the last epoch's weights
    with pytest.raises(ValueError, match="trained on every training image"):
        evaluation.held_out_data(metadata, tmp_path / "data")
    with pytest.raises(ValueError, match="trained on every training image"):
        evaluation.evaluation_data(metadata, tmp_path / "data", "val")  # `evaluate --split val`
    with pytest.raises(ValueError, match="needs a fixed number of epochs"):
        training.train("quick", run_dir=tmp_path / "run2", early_stopping_patience=2, **options)


def test_weight_average_follows_its_warming_decay_and_training_continues_from_raw(tmp_path):
    """The checkpointed weights are the warming-up average of every step's weights (BatchNorm
    statistics included); the next epoch trains on from the raw weights."""
    average_cb = training.WeightAverage(tmp_path / "state.npz", max_decay=0.9, interval=1)
    assert [round(average_cb.decay(t), 4) for t in (0, 1, 8, 1000)] == [0.1, 0.1818, 0.5, 0.9]

    class Record(keras.callbacks.Callback):
        """Before WeightAverage in the list: sees raw weights at batch and epoch ends."""

        def on_train_begin(self, logs=None):
            self.steps, self.epoch_starts = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.steps.append([w.copy() for w in self.model.get_weights()])

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:  # after every callback's on_epoch_begin
                self.epoch_starts.append([w.copy() for w in self.model.get_weights()])

    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    record = Record()
    model.fit(x, x[:, :2], batch_size=8, epochs=2, verbose=0, callbacks=[record, average_cb])

    first = record.epoch_starts[0]
    expected = [w.astype("float64") for w in first]
    for t, step in enumerate(record.steps):
        d = average_cb.decay(t)
        expected = [d * e + (1 - d) * w for e, w in zip(expected, step)]
    for got, want in zip(model.get_weights(), expected):  # BN moving mean/variance too
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The second epoch started from the raw weights of the first epoch's last step.
    for got, want in zip(record.epoch_starts[1], record.steps[3]):
        np.testing.assert_array_equal(got, want)
    with np.load(tmp_path / "state.npz") as state:
        assert int(state["updates"]) == 8


def test_weight_averaging_run_resumes_with_its_average(tmp_path):
    class StopAtEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    settings = dict(
        dataset=tiny_dataset(),
        epochs=3,
        batch_size=8,
        weight_averaging=True,
        averaging_interval=1,
        augmentation="light_alternating",
        print_fn=lambda *_: None,
    )
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        training.train("quick", run_dir=run, callbacks=[StopAtEpoch2()], **settings)
    with np.load(run / "backup" / "weight_average.npz") as state:
        assert int(state["updates"]) == 3  # 27 training images, batches of 8
    result = training.train("quick", run_dir=run, resume=True, **settings)
    assert len(result["history"]) == 3 and not (run / "backup").exists()
    with pytest.raises(ValueError, match="choose one"):
        training.train("quick", run_dir=tmp_path / "both", ema=True, **settings)


def test_alternating_flip_mirrors_every_image_on_alternate_epochs():
    from mobilevit_utils import data

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 8, 8, 3)).astype("uint8")
    y = np.arange(20)  # the label names the image

    def mirrored_in(batches):
        flags = {}
        for images, labels in batches:
            for image, label in zip(np.asarray(images), np.asarray(labels)):
                if np.array_equal(image, x[label]):
                    flags[int(label)] = False
                else:
                    np.testing.assert_array_equal(image, x[label][:, ::-1])
                    flags[int(label)] = True
        return flags

    for make in (data.make_pipeline, data._array_batches_class()):
        schedule = data.FlipSchedule(len(x), seed=1)
        batches = make(x, y, 5, training=True, flip_schedule=schedule)
        epochs = []
        for epoch in range(3):
            schedule.set_epoch(epoch)
            epochs.append(mirrored_in(batches))
        assert sorted(epochs[0]) == list(range(20))
        assert 0 < sum(epochs[0].values()) < 20  # a random half, roughly, in the first epoch
        assert all(epochs[1][i] != epochs[0][i] for i in range(20))
        assert epochs[2] == epochs[0]


def test_late_erasing_starts_at_its_epoch():
    """`light_erasing_late`'s RandomErasing leaves the first half of training alone, then
    greys one patch of every image it picks (probability 1 here), in both pipelines."""
    from mobilevit_utils import augmentation, data

    policy = dataclasses.replace(augmentation.get_augmentation("light_erasing_late"), erasing=1.0)
    x = np.zeros((10, 32, 32, 3), "uint8")
    for make in (data.make_pipeline, data._array_batches_class()):
        clock = data.EpochClock()
        late = data.FromEpoch(augmentation.build_eraser(policy, seed=0), start=1, clock=clock)
        batches = make(x, np.arange(10), 5, training=True, late=late)
        assert all(np.all(np.asarray(images) == 0) for images, _ in batches)  # epoch 0
        clock.set_epoch(1)
        for images, _ in batches:
            grey = np.asarray(images) == 127.5
            assert grey.reshape(5, -1).any(axis=1).all() and not grey.all()
    with pytest.raises(ValueError, match="erasing_from"):
        augmentation.build_eraser(dataclasses.replace(policy, erasing_from=1.0))


def test_a_run_with_late_erasing_trains_through_the_switch(tmp_path):
    """Two epochs of `light_erasing_late`: erasing starts at epoch 1, so both halves run."""
    result = training.train(
        "quick",
        run_dir=tmp_path / "run",
        dataset=tiny_dataset(),
        epochs=2,
        batch_size=8,
        augmentation="light_erasing_late",
        print_fn=lambda *_: None,
    )
    assert len(result["history"]) == 2 and all(np.isfinite(r["loss"]) for r in result["history"])
