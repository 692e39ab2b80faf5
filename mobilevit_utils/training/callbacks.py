"""The callbacks a training run fits with (`make_callbacks`): backup, checkpoint, history,
weight averages, per-epoch lines, and schedules that follow the epoch.

The run files an epoch changes (the backup, the weight average, the checkpoint, the history
row) are staged in the run's `journal.EpochJournal` and committed together by `CSVLogger`, the
last of them: a run killed at any moment resumes from an epoch whose files all agree.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import time
from pathlib import Path

import keras
import numpy as np

from mobilevit_utils import models
from mobilevit_utils.run_files import atomic_path, write_atomic
from mobilevit_utils.training.journal import EpochJournal, ResumeError, recover
from mobilevit_utils.training.runs import BACKUP_DIR, CHECKPOINT_FILE, HISTORY_FILE, read_history


def _relative(path, journal):
    return os.path.relpath(path, journal.run_dir)


class BackupAndRestore(keras.callbacks.Callback):
    """Keras' `BackupAndRestore` for a run folder: the training state (weights and optimizer)
    saved after every epoch as backup/latest.weights.h5, restored when `fit` begins in a folder
    that holds one, so that an interrupted run continues from its last finished epoch.

    Keras' writes that file in place: a run killed mid-write could never resume. This one stages
    it in the run's journal, committed with the epoch's other files, and when `fit` begins it
    first recovers the last committed epoch (`journal.recover`), whose state it restores.
    """

    def __init__(self, backup_dir, journal=None):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.journal = journal or EpochJournal(self.backup_dir.parent)
        self.weights_path = self.backup_dir / "latest.weights.h5"

    def on_train_begin(self, logs=None):
        epochs = recover(self.journal.run_dir)
        if not epochs:
            return
        if not self.weights_path.is_file():
            raise ResumeError(
                f"{self.backup_dir} records {epochs} finished epoch(s) but has no "
                f"{self.weights_path.name}: the resume state is damaged; start a new run."
            )
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(self.weights_path)
        except (OSError, ValueError) as error:  # an older version's, written in place
            raise ResumeError(
                f"{self.weights_path} cannot be loaded ({str(error).splitlines()[0][:200]}): it is "
                "damaged, so the run cannot resume from it; start a new run."
            ) from None
        self.model._initial_epoch = epochs  # as Keras' BackupAndRestore tells fit

    def on_epoch_end(self, epoch, logs=None):
        self.journal.stage(
            epoch, _relative(self.weights_path, self.journal), self.model.save_weights
        )


class ModelCheckpoint(keras.callbacks.Callback):
    """Keras' `ModelCheckpoint(path, monitor, mode="max", save_best_only=...)`: the model after
    each epoch that improves `monitor` (every epoch without `save_best_only`). Staged in the
    run's journal (else written under a temporary name and renamed), so that model.keras
    changes with its epoch's commit only; a resumed run's best so far is its history's."""

    def __init__(self, path, journal=None, monitor="val_accuracy", save_best_only=True):
        super().__init__()
        self.path = Path(path)
        self.journal = journal
        self.monitor, self.save_best_only = monitor, save_best_only
        self.best = None

    def on_train_begin(self, logs=None):
        # After BackupAndRestore's recovery: the history holds the committed epochs only.
        self.best = best_logged(self.path.parent, self.monitor) if self.save_best_only else None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self.save_best_only:
            if value is None or not np.isfinite(value):
                return
            if self.best is not None and not value > self.best:
                return
            self.best = float(value)
        if self.journal is not None:
            self.journal.stage(epoch, _relative(self.path, self.journal), self.model.save)
            return
        with atomic_path(self.path) as temporary:
            self.model.save(temporary)


class DynamicConvTemperature(keras.callbacks.Callback):
    """Anneal the softmax temperature of every `DynamicDepthwiseConv2D` linearly from
    `start` to `end` over the first `anneal_epochs` epochs (Chen et al. 2020: 30 to 1).

    A high temperature keeps the kernels' mixture near uniform while the attention branch is
    untrained, so every kernel gets gradient. The step count comes from the optimizer, so a
    resumed run continues the schedule where it stopped.
    """

    def __init__(self, anneal_epochs, start=30.0, end=1.0):
        super().__init__()
        self.anneal_epochs = anneal_epochs
        self.start, self.end = start, end

    def on_train_begin(self, logs=None):
        from mobilevit_utils.layers import DynamicDepthwiseConv2D

        self.variables = [
            layer.temperature
            for layer in self.model._flatten_layers()
            if isinstance(layer, DynamicDepthwiseConv2D)
        ]
        self.anneal_steps = max(1, round(self.anneal_epochs * (self.params.get("steps") or 1)))
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._assign()

    def temperature(self, step):
        progress = min(1.0, step / self.anneal_steps)
        return self.start + (self.end - self.start) * progress

    def _assign(self):
        value = self.temperature(self.step)
        for variable in self.variables:
            variable.assign(value)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step <= self.anneal_steps:  # afterwards it stays at `end`
            self._assign()


class WeightAverage(keras.callbacks.Callback):
    """An exponential moving average of every float weight, BatchNorm statistics included, so
    that the averaged network's statistics are averaged with its weights (timm's ModelEmaV2).

    The decay warms up, min(`max_decay`, (1 + t) / (10 + t)) at the t-th update: early
    averages forget the random initialisation within a few updates, where a fixed 0.999 keeps
    it for thousands of steps and lags a short run. Validation, the checkpoint and the
    callbacks after this one see the averaged weights; training continues from the raw ones.
    The average is saved beside `BackupAndRestore`'s state after every epoch, so an
    interrupted run resumes with it.
    """

    def __init__(self, state_path, max_decay=0.999, interval=5, journal=None):
        super().__init__()
        self.state_path = Path(state_path)
        self.journal = journal  # stages the state with the epoch's other files
        self.max_decay, self.interval = max_decay, interval

    def on_train_begin(self, logs=None):
        # Learnt weights and BatchNorm statistics; not schedule-set values such as dynamic
        # convolution's temperature, which the average would make lag its schedule.
        self.indices = [
            i
            for i, v in enumerate(self.model.weights)
            if v.trainable or v.path.endswith(("moving_mean", "moving_variance"))
        ]
        self.steps = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.updates = 0
        self.average = self._values()
        if self.steps and self.state_path.exists():  # a resumed run
            with np.load(self.state_path) as state:
                # Saved after BackupAndRestore: a kill between the two leaves it an epoch
                # behind the weights, and it restarts from them instead.
                if int(state["updates"]) == self.steps // self.interval:
                    self.updates = int(state["updates"])
                    self.average = [state[f"w{i}"] for i in range(len(self.indices))]
        self.raw = None  # the training weights while the average is swapped in

    def _variables(self):
        # Through self.model every time: on JAX that syncs the variables with the trainer's
        # state, which holds their current values during an epoch.
        weights = self.model.weights
        return [weights[i] for i in self.indices]

    def _values(self):
        return [keras.ops.convert_to_numpy(v).copy() for v in self._variables()]

    def decay(self, update):
        return min(self.max_decay, (1 + update) / (10 + update))

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps % self.interval:
            return
        d = self.decay(self.updates)
        for average, value in zip(self.average, self._values()):
            average *= d
            average += (1 - d) * value
        self.updates += 1

    def _swap_in(self):
        if self.raw is None:
            self.raw = self._values()
            for variable, average in zip(self._variables(), self.average):
                variable.assign(average)

    def _swap_out(self):
        if self.raw is not None:
            for variable, raw in zip(self._variables(), self.raw):
                variable.assign(raw)
            self.raw = None

    def on_test_begin(self, logs=None):
        self._swap_in()

    def on_test_end(self, logs=None):
        self._swap_out()

    def on_epoch_end(self, epoch, logs=None):
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"w{i}": a for i, a in enumerate(self.average)}
        if self.journal is not None:
            target = _relative(self.state_path, self.journal)
            self.journal.stage(epoch, target, lambda p: np.savez(p, updates=self.updates, **arrays))
        else:
            with atomic_path(self.state_path) as temporary:  # never a half-written state
                np.savez(temporary, updates=self.updates, **arrays)
        self._swap_in()  # for the checkpoint; undone when the next epoch begins

    def on_epoch_begin(self, epoch, logs=None):
        self._swap_out()


class EpochClockCallback(keras.callbacks.Callback):
    """Tells `data.EpochClock`s (the alternating flip's schedule, a late transform's clock)
    which epoch begins: fit's index, so a resumed run continues where it stopped."""

    def __init__(self, *clocks):
        super().__init__()
        self.clocks = clocks

    def on_epoch_begin(self, epoch, logs=None):
        for clock in self.clocks:
            clock.set_epoch(epoch)


class EpochLogger(keras.callbacks.Callback):
    """One line per epoch — readable in a notebook, unlike hundreds of progress bars.

    Also adds the epoch's wall time (validation included) to the logs as `epoch_time_s`, so
    that history.csv records how long a run took even across interruptions and resumes.
    """

    def __init__(self, total_epochs, print_fn=print):
        super().__init__()
        self.total_epochs = total_epochs
        self.print_fn = print_fn

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        logs["epoch_time_s"] = time.perf_counter() - self._start
        shown = " ".join(
            f"{key}={logs[key]:.4f}"
            for key in ("loss", "accuracy", "val_loss", "val_accuracy")
            if key in logs
        )
        lr = _current_lr(self.model.optimizer)
        self.print_fn(
            f"epoch {epoch + 1}/{self.total_epochs} {shown} "
            f"lr={lr:.2e} time={logs['epoch_time_s']:.1f}s"
        )


class CSVLogger(keras.callbacks.CSVLogger):
    """`keras.callbacks.CSVLogger(path, append=True)`, written atomically: history.csv in its
    format (an `epoch` column, then the logs' keys sorted; without validation, `val_` columns of
    "NA"), appended across resumes, but rewritten at every epoch's end (its rows so far plus
    the new one) under a temporary name and moved into place, so that a killed run never leaves
    half a row. An existing file keeps its columns. Lines end in \\n, not the csv module's \\r\\n.
    Epochs are numbered from 0, as Keras' CSVLogger and `History` number them (the epoch lines
    and metadata's `best_epoch` count from 1): every history.csv reads the same.

    With a `journal`, the file is staged with the epoch's other files, and, the last of them,
    commits the epoch; its rows are then those of the committed epochs and the new one.
    """

    def __init__(self, path, journal=None):
        super().__init__(str(path), append=True)
        self.path = Path(path)
        self.journal = journal

    def on_train_begin(self, logs=None):
        pass  # no file held open: each epoch rewrites it

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        text = self.path.read_text() if self.path.exists() else ""
        if self.journal is not None:  # the header and the committed epochs' rows
            text = "".join(text.splitlines(keepends=True)[: epoch + 1])
        header = next(csv.reader([text.splitlines()[0]]), None) if text.strip() else None
        if not header:  # no file, or one with no header (killed before its first epoch ended)
            text, header = "", ["epoch", *history_columns(logs)]
        rows = io.StringIO()
        writer = csv.DictWriter(rows, header, extrasaction="ignore", lineterminator="\n")
        if text and not text.endswith("\n"):
            text += "\n"
        elif not text:
            writer.writeheader()
        writer.writerow({"epoch": epoch, **{k: _csv_value(logs.get(k, "NA")) for k in header[1:]}})
        text += rows.getvalue()
        if self.journal is None:
            write_atomic(self.path, text)
            return
        target = _relative(self.path, self.journal)
        self.journal.stage(epoch, target, lambda path: path.write_text(text, newline=""))
        self.journal.commit(epoch)


def history_columns(logs):
    """CSVLogger's columns for an epoch's logs: the keys sorted, and where none is a
    validation metric, a `val_` copy of each (filled with "NA")."""
    keys = sorted(logs)
    if keys and not any(key.startswith("val_") for key in keys):
        keys += [f"val_{key}" for key in keys]
    return keys


def _csv_value(value):
    """A log value as CSVLogger writes it: a sequence as "[a, b]", anything else as it is."""
    if isinstance(value, str) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return f"[{', '.join(map(str, value))}]"
    return value


def _current_lr(optimizer):
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr(optimizer.iterations) if callable(lr) else lr))


def best_logged(run_dir, monitor="val_accuracy"):
    """Best value of `monitor` in a run's history.csv (None when absent)."""
    values = [row[monitor] for row in read_history(run_dir) if monitor in row]
    return max(values) if values else None


def make_callbacks(run_dir, config, print_fn=print, validating=True):
    run_dir = Path(run_dir)
    journal = EpochJournal(run_dir)  # each epoch's files, committed together by CSVLogger
    callbacks = [
        # Saves state after every epoch; when a run is interrupted (even killed), `fit` on the
        # same folder restarts from the last finished epoch with weights and optimizer intact.
        # train removes it once the run's metadata is written (`journal.finish`).
        BackupAndRestore(run_dir / BACKUP_DIR, journal),
    ]
    if config.ema:
        # After the backup (which keeps the raw weights, so a resumed run continues training
        # them) and before the checkpoint: validation and model.keras see the averaged weights.
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if config.weight_averaging:
        callbacks.append(
            WeightAverage(
                run_dir / BACKUP_DIR / "weight_average.npz",
                config.ema_momentum,
                config.averaging_interval,
                journal=journal,
            )
        )
    callbacks += [
        # The best epoch on validation; without a validation split (a final fit on every
        # image), the last epoch.
        ModelCheckpoint(run_dir / CHECKPOINT_FILE, journal, save_best_only=validating),
        EpochLogger(config.epochs, print_fn),  # before CSVLogger, which saves its epoch_time_s
        CSVLogger(run_dir / HISTORY_FILE, journal),  # the epoch's last file: commits it
        keras.callbacks.TerminateOnNaN(),
    ]
    if any(stage.dynamic_kernels for stage in models.get_variant(config.model).stages):
        # The paper anneals over 10 of its ~300 epochs; a short run over its first tenth.
        callbacks.append(DynamicConvTemperature(anneal_epochs=min(10, config.epochs / 10)))
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    if config.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=3, min_lr=config.min_learning_rate
            )
        )
    if _installed("tensorflow") and _installed("tensorboard"):
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False))
    return callbacks


def _installed(module):
    return importlib.util.find_spec(module) is not None
