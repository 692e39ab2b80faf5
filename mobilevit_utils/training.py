"""Training: recipe presets, compile helpers, callbacks, resumable runs.

A run directory holds everything a run produces::

    RUN_DIR/model.keras        best checkpoint (highest validation accuracy)
    RUN_DIR/config.json        the resolved TrainConfig
    RUN_DIR/environment.json   versions, backend, devices
    RUN_DIR/history.csv        one row per epoch (appended across resumes)
    RUN_DIR/metadata.json      class names, preprocessing, wall time, best epoch and accuracy
    RUN_DIR/backup/            BackupAndRestore state; an interrupted run resumes from here
    RUN_DIR/logs/              TensorBoard logs (when TensorFlow is installed)
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from mobilevit_utils import augmentation as aug
from mobilevit_utils import data as data_lib
from mobilevit_utils import environment, models


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training recipe: plain data. Copy and edit with `dataclasses.replace(RECIPES[...], ...)`."""

    name: str = "custom"
    model: str = "xxs_cifar"
    num_heads: int | None = None  # attention heads per transformer; None keeps the variant's
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 2e-3  # peak, reached after warm-up
    min_learning_rate: float = 2e-5  # end of the cosine decay
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # "cosine" (warm-up + cosine) or "plateau" (ReduceLROnPlateau)
    optimizer: str = "adamw"  # "adamw", "adam" or "sgd" (momentum 0.9, nesterov)
    weight_decay: float = 0.05  # AdamW/SGD; never applied to norms and biases
    gradient_clip_norm: float | None = 1.0  # clip the global gradient norm: rare spikes derail runs
    ema: bool = False  # validate and checkpoint an exponential moving average of the weights
    ema_momentum: float = 0.999  # the average's memory: about 1 / (1 - momentum) steps
    # Validate and checkpoint an average of the weights and BatchNorm statistics whose decay
    # warms up, min(ema_momentum, (1 + t) / (10 + t)) at its t-th update, one update every
    # `averaging_interval` steps (`WeightAverage`); unlike `ema`, it does not lag a short run.
    weight_averaging: bool = False
    averaging_interval: int = 5
    label_smoothing: float = 0.1
    # "balanced": weigh each class's loss by n / (classes * its count), so that an imbalanced
    # dataset's rare classes count as much as the common ones (sklearn's rule); None: equal.
    class_weight: str | None = None
    augmentation: str = "light"  # a preset of mobilevit_utils.augmentation
    dropout: float = 0.1  # before the classifier
    transformer_dropout: float = 0.0
    validation_split: float = 0.1
    max_per_class: int | None = None  # train on a subset (quick runs)
    early_stopping_patience: int | None = None
    mixed_precision: bool = False  # float16 compute, float32 weights and logits: for GPUs
    # XLA on TensorFlow, torch.compile on PyTorch (JAX always compiles). "auto" is Keras' rule:
    # XLA only where TensorFlow sees a GPU/TPU. On CPU, XLA measured 5x slower than TensorFlow's
    # own kernels (benchmarks/results/train_throughput.txt).
    jit_compile: bool | str = "auto"
    # Augment batches in parallel (tf.data AUTOTUNE): keeps a GPU fed, but the order in which
    # the random layers draw from their seed varies, so runs are no longer bit-reproducible.
    parallel_augmentation: bool = False
    # Fine-tuning: start from a trained model, a preset name (`presets.list_presets()`) or a
    # .keras file. Its backbone's weights, input size and preprocessing are kept; the head is
    # new, sized for the data's classes.
    init_from: str | None = None
    # With init_from: the new head alone first (backbone frozen, BatchNorm in inference mode),
    # for head_epochs at head_learning_rate; then `epochs` of every layer at learning_rate.
    head_epochs: int = 0
    head_learning_rate: float = 1e-3
    seed: int = 42

    def to_dict(self):
        return dataclasses.asdict(self)

    def problems(self):
        """(field, what it must be, its value) for every out-of-range number; empty when none."""
        checks = {
            "epochs": (self.epochs >= 1, "at least 1"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "learning_rate": (self.learning_rate > 0, "above 0"),
            "min_learning_rate": (self.min_learning_rate >= 0, "at least 0"),
            "warmup_epochs": (0 <= self.warmup_epochs, "at least 0"),
            "weight_decay": (self.weight_decay >= 0, "at least 0"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "at least 0 and below 1"),
            "dropout": (0 <= self.dropout < 1, "at least 0 and below 1"),
            "transformer_dropout": (0 <= self.transformer_dropout < 1, "at least 0 and below 1"),
            "validation_split": (0 <= self.validation_split < 1, "at least 0 and below 1"),
            "ema_momentum": (0 <= self.ema_momentum < 1, "at least 0 and below 1"),
            "averaging_interval": (self.averaging_interval >= 1, "at least 1"),
            "max_per_class": (self.max_per_class is None or self.max_per_class >= 1, "at least 1"),
            "seed": (self.seed >= 0, "at least 0"),
            "head_epochs": (self.head_epochs >= 0, "at least 0"),
            "head_learning_rate": (self.head_learning_rate > 0, "above 0"),
        }
        if self.gradient_clip_norm is not None:
            checks["gradient_clip_norm"] = (self.gradient_clip_norm > 0, "above 0")
        return [
            (field, need, getattr(self, field)) for field, (ok, need) in checks.items() if not ok
        ]

    def validate(self):
        """Raise ValueError naming the first out-of-range field (a negative learning rate
        trains to a loss of 1e24 and saves the checkpoint without complaint)."""
        for field, need, value in self.problems():
            raise ValueError(f"{field} must be {need}, got {value}.")
        if self.ema and self.weight_averaging:
            raise ValueError("ema and weight_averaging both average the weights; choose one.")
        return self


RECIPES = {
    # CI and notebooks in quick mode: a few hundred images, two epochs, seconds.
    "quick": TrainConfig(
        name="quick",
        epochs=2,
        batch_size=32,
        max_per_class=40,
        warmup_epochs=0.5,
        learning_rate=1e-3,
        augmentation="light",
    ),
    # Sized to 2 hours on 2 CPU cores from measured speed (benchmarks/README.md). MobileViTv2
    # width 0.5: at 12 epochs it beat v1 (xxs_cifar) by 3.12 and 2.62 points on two seeds; at
    # equal training time it tied the rebalanced v1 layout (82.48 against 82.78 %, within the
    # seeds' 0.86-point spread), so the layout with the larger gain per epoch won. 64 epochs at
    # its measured ~95 s per epoch here. Whole-pixel shifts ("light") gained 1.4 points at 12
    # epochs and 0.8 at 48 over the bilinear ones, now "light_bilinear". A run with peak
    # learning rate 2e-3 and no gradient clipping diverged halfway (epoch 15).
    "cpu": TrainConfig(
        name="cpu",
        model="v2_050_cifar",
        epochs=64,
        batch_size=128,
        learning_rate=1.5e-3,
        warmup_epochs=2.0,
        augmentation="light",
        label_smoothing=0.1,
    ),
    # The full recipe for one GPU (a Colab T4 or better), after the MobileViT paper's CIFAR
    # fine-tuning practice: 200 epochs, because the small model keeps gaining well past 48
    # (benchmarks/results/epoch_scaling.txt); batch 256, which float16 activations of this
    # 26 M-MAC model fit in a few GB; peak learning rate 4e-3 (AdamW scales with batch size:
    # 1.5e-3 at 128 was stable, 2e-3 diverged without clipping) after 5 warm-up epochs;
    # CutMix and colour jitter against the overfitting the 48-epoch CPU run began to show.
    # Weight EMA, as in the reference training code (ml-cvnets); at 12 CPU epochs it cost 1.3
    # points (benchmarks/results/ablations.csv: the average of the last ~1,000 steps lags a
    # short run), over 200 epochs that lag is under 1 % of training. Float16 compute (tensor
    # cores), XLA compilation, parallel augmentation. TensorFlow is
    # the backend to use: it also exports TFLite, and Colab ships it with GPU support.
    "gpu": TrainConfig(
        name="gpu",
        epochs=200,
        batch_size=256,
        learning_rate=4e-3,
        warmup_epochs=5.0,
        augmentation="strong",
        weight_decay=0.05,
        transformer_dropout=0.1,
        mixed_precision=True,
        jit_compile=True,
        parallel_augmentation=True,
        ema=True,
    ),
    # Fine-tuning a trained model on a small dataset of your own (docs/guide.md, "Your own
    # images"): by default the v1 CIFAR-10 model (the previous release), from which its learning
    # rates and its measured gains were obtained; or any preset / .keras file (init_from).
    "finetune": TrainConfig(
        name="finetune",
        init_from="mobilevit_xxs_cifar10",
        # A random head's large early gradients would otherwise reach, and wreck, the
        # pretrained features: the head trains alone first, at a high rate (it is one layer).
        head_epochs=3,
        head_learning_rate=3e-3,
        # Then every layer, below the from-scratch peak (1.5e-3). Chosen on scikit-learn's
        # digits, 50 per class, judged on held-out training digits: 2e-4 / 1e-3 gave 86.1 %,
        # 5e-4 / 3e-3 96.4 %, 1e-3 / 3e-3 97.5 % (benchmarks/results/finetune_digits_lr.txt).
        # Small datasets: 20 % held out, small batches for enough steps.
        epochs=12,
        learning_rate=1e-3,
        min_learning_rate=2e-6,
        warmup_epochs=1.0,
        batch_size=32,
        validation_split=0.2,
        augmentation="light",
        label_smoothing=0.1,
    ),
}


def get_recipe(name):
    if isinstance(name, TrainConfig):
        return name
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; expected one of {sorted(RECIPES)}.")
    return RECIPES[name]


# --------------------------------------------------------------------------------------------
# Compile helpers


def make_schedule(config, steps_per_epoch):
    """Linear warm-up to `learning_rate`, then cosine decay to `min_learning_rate`
    (a constant rate for the "plateau" schedule, which a callback lowers)."""
    if config.schedule == "plateau":
        return config.learning_rate
    if config.schedule != "cosine":
        raise ValueError(f"schedule must be 'cosine' or 'plateau', got {config.schedule!r}.")
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 100 if warmup else config.learning_rate,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
        decay_steps=total - warmup,
        # A peak below the recipe's floor (--lr 1e-9, say) stays flat instead of rising.
        alpha=min(1.0, config.min_learning_rate / config.learning_rate),
    )


def make_optimizer(config, steps_per_epoch):
    schedule = make_schedule(config, steps_per_epoch)
    common = {
        "global_clipnorm": config.gradient_clip_norm,
        "use_ema": config.ema,
        "ema_momentum": config.ema_momentum,
    }
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay, **common)
    elif config.optimizer == "adam":
        return keras.optimizers.Adam(schedule, **common)
    elif config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=config.weight_decay, **common
        )
    else:
        raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd', got {config.optimizer!r}.")
    # Decaying normalisation scales/offsets and biases only hurts; decay the weight matrices.
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def uses_soft_labels(config):
    """One-hot labels are needed for label smoothing and for MixUp/CutMix."""
    return config.label_smoothing > 0 or aug.get_augmentation(config.augmentation).soft_labels


def make_loss(soft_labels, label_smoothing=0.0):
    if soft_labels:
        return keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        )
    if label_smoothing:
        raise ValueError("label smoothing needs soft (one-hot) labels.")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def make_metrics(soft_labels, num_classes):
    """Accuracy, and top-5 accuracy where there are more than 5 classes (with 5 or fewer every
    label is in the top 5, so it would read 1.0)."""
    if soft_labels:
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        top5 = keras.metrics.TopKCategoricalAccuracy
    else:
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        top5 = keras.metrics.SparseTopKCategoricalAccuracy
    if num_classes > 5:
        metrics.append(top5(5, name="top5_accuracy"))
    return metrics


def compile_model(model, config, steps_per_epoch, num_classes, steps_per_execution=1):
    """`model.compile` with the recipe's optimizer, loss and metrics. A model built under the
    mixed_float16 policy gets Keras' dynamic loss scaling (`auto_scale_loss`), which keeps small
    float16 gradients from flushing to zero."""
    soft = uses_soft_labels(config)
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=make_loss(soft, config.label_smoothing),
        metrics=make_metrics(soft, num_classes),
        jit_compile=config.jit_compile,
        steps_per_execution=steps_per_execution,
    )
    # Without a distribution strategy TensorFlow's trainer creates the optimizer's variables
    # inside the first traced step, and tf.function then traces that step a second time.
    # Creating them here saves that second trace (tens of seconds on a CPU). Unbuilt
    # (subclassed) models have no variables yet to build it for; they still trace twice.
    if model.built:
        model.optimizer.build(model.trainable_variables)
    return model


@contextlib.contextmanager
def dtype_policy(name):
    """Build layers under Keras' global dtype policy `name`, restoring the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def hardware_warnings(config, devices=None):
    """One line per recipe setting that will run slowly on `devices` (default: this machine's,
    as `environment.describe()` lists them)."""
    devices = environment.describe()["devices"] if devices is None else devices
    accelerators = [d for d in devices if "CPU" not in d.upper()]
    if accelerators or config.epochs <= 2:
        return []
    warnings = []
    if config.mixed_precision:
        warnings.append(
            "warning: float16 compute on a CPU is several times slower than float32; "
            "use the cpu recipe (or mixed_precision=False) for a long CPU run"
        )
    if config.jit_compile is True and keras.backend.backend() == "tensorflow":
        warnings.append(
            "warning: XLA (jit_compile=True) trains about 5x slower than TensorFlow's "
            "own CPU kernels; use jit_compile='auto' on a CPU"
        )
    return warnings


# --------------------------------------------------------------------------------------------
# Callbacks


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

    def __init__(self, state_path, max_decay=0.999, interval=5):
        super().__init__()
        self.state_path = Path(state_path)
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
        tmp = self.state_path.with_suffix(".tmp.npz")
        arrays = {f"w{i}": a for i, a in enumerate(self.average)}
        np.savez(tmp, updates=self.updates, **arrays)
        tmp.replace(self.state_path)  # never a half-written state
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


def _current_lr(optimizer):
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr(optimizer.iterations) if callable(lr) else lr))


def best_logged(run_dir, monitor="val_accuracy"):
    """Best value of `monitor` in a run's history.csv (None when absent)."""
    values = [row[monitor] for row in read_history(run_dir) if monitor in row]
    return max(values) if values else None


def make_callbacks(run_dir, config, print_fn=print, validating=True):
    run_dir = Path(run_dir)
    callbacks = [
        # Saves state after every epoch; when a run is interrupted (even killed), `fit` on the
        # same folder restarts from the last finished epoch with weights and optimizer intact.
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=True),
    ]
    if config.ema:
        # After the backup (which keeps the raw weights, so a resumed run continues training
        # them) and before the checkpoint: validation and model.keras see the averaged weights.
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if config.weight_averaging:
        callbacks.append(
            WeightAverage(
                run_dir / "backup" / "weight_average.npz",
                config.ema_momentum,
                config.averaging_interval,
            )
        )
    callbacks += [
        # The best epoch on validation; without a validation split (a final fit on every
        # image), the last epoch.
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "model.keras"),
            monitor="val_accuracy",
            mode="max",
            save_best_only=validating,
            initial_value_threshold=best_logged(run_dir) if validating else None,
        ),
        EpochLogger(config.epochs, print_fn),  # before CSVLogger, which saves its epoch_time_s
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
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
    import importlib.util

    return importlib.util.find_spec(module) is not None


# --------------------------------------------------------------------------------------------
# Distribution


def distribution_scope(strategy=None):
    """A context in which to build and compile the model for multi-device training.

    `strategy`: None (one device), a `tf.distribute.Strategy` (TensorFlow backend:
    `MirroredStrategy` for several GPUs, `TPUStrategy`), or "data_parallel" (JAX backend:
    `keras.distribution.DataParallel` over all devices).
    """
    if strategy is None:
        return contextlib.nullcontext()
    if strategy == "data_parallel":
        if keras.backend.backend() != "jax":
            raise ValueError(
                "strategy='data_parallel' needs the JAX backend; on TensorFlow pass "
                "a tf.distribute strategy such as tf.distribute.MirroredStrategy()."
            )
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    if hasattr(strategy, "scope"):
        return strategy.scope()
    raise ValueError(f"Unsupported strategy {strategy!r}.")


# --------------------------------------------------------------------------------------------
# Running


class RunExistsError(FileExistsError):
    pass


def run_finished(run_dir):
    """True once `train` has written the run's metadata and removed its resume state. A run
    stopped before its first epoch ended has a history.csv but neither, and starts again."""
    run_dir = Path(run_dir)
    return (run_dir / "metadata.json").exists() and not (run_dir / "backup").exists()


def prepare_run_dir(run_dir, resume=False, overwrite=False):
    """Create `run_dir`. An existing run is continued (`resume`), replaced (`overwrite`), or
    refused so that nothing is lost by accident."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunExistsError(f"{run_dir} is a file; the run needs a folder: choose another path.")
    existing = run_dir.exists() and any(run_dir.iterdir())
    if resume and run_finished(run_dir):
        raise RunExistsError(
            f"The run in {run_dir} has finished (its resume state is removed on completion); "
            "start a new run in another folder."
        )
    if existing and overwrite and not resume:
        shutil.rmtree(run_dir)
    elif existing and not resume:
        raise RunExistsError(
            f"{run_dir} already holds a run; continue it with --resume (resume=True), replace "
            "it with --overwrite (overwrite=True), or choose another output folder."
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise PermissionError(
            f"Cannot write to {run_dir}: {error.strerror}; choose another output folder."
        ) from None
    return run_dir


def fit_class_weight(class_weight, labels, num_classes):
    """`model.fit`'s class_weight for the recipe's setting: None, or "balanced" computed from
    the training labels (`data.class_weights`)."""
    if class_weight is None:
        return None
    if class_weight != "balanced":
        raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}.")
    return data_lib.class_weights(labels, num_classes)


def _write_json(path, payload):
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


def build_model(config, num_classes, input_shape, reverse_channels=False):
    variant = models.get_variant(config.model)
    if config.num_heads is not None:
        variant = dataclasses.replace(variant, num_heads=config.num_heads)
    return models.build_mobilevit(
        variant,
        num_classes=num_classes,
        input_shape=input_shape,
        include_rescaling=models.RAW_RGB.in_model,  # trained on raw pixels, whatever the variant
        dropout=config.dropout,
        transformer_dropout=config.transformer_dropout,
        reverse_channels=reverse_channels,
    )


HEAD_LAYERS = ("classifier",)  # replaced when fine-tuning (pooling and dropout have no weights)


def init_source(source):
    """(model, metadata) to fine-tune from: a preset name or a `.keras` file (its metadata from
    metadata.json beside it, as for `inference.load_classifier`)."""
    from mobilevit_utils import inference, presets

    if source in presets.PRESETS:
        preset = presets.PRESETS[source]
        if preset.hub_id:  # one download and conversion for both
            return presets.models_from_hub(preset)
        return presets.from_preset(source), presets.preset_metadata(source)
    path = Path(source)
    if path.suffix != ".keras":
        raise ValueError(
            f"init_from must be a preset ({', '.join(presets.PRESETS)}) or a .keras file, "
            f"got {source!r}."
        )
    if not path.exists():
        raise FileNotFoundError(
            f"init_from {path}: no such file; pass a .keras file or a preset "
            f"({', '.join(presets.PRESETS)})."
        )
    model, metadata = inference.load_classifier(path)
    return models.as_float32(model), metadata


def source_variant(model, metadata):
    """The variant name of a model to fine-tune from (its metadata's, else its name's)."""
    name = metadata.get("variant") or model.name
    try:
        models.get_variant(name)
    except ValueError:
        raise ValueError(
            f"{name!r} is not a MobileViT variant of this package; fine-tuning starts from a "
            "model it built (a preset, or a .keras file that train or the converter saved)."
        ) from None
    return str(name).lower().removeprefix("mobilevit_")


def transfer_weights(source, target, include_head=False):
    """Copy every layer's weights from `source` into the layer of the same name in `target`
    (the head too with `include_head`); returns how many layers were copied. A layer of
    `target` with weights and no counterpart of the same shapes is an error: the layouts differ."""
    copied = 0
    for layer in target.layers:
        if not layer.weights or (layer.name in HEAD_LAYERS and not include_head):
            continue
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            raise ValueError(
                f"{source.name} has no layer {layer.name!r}: its layout differs from {target.name}."
            ) from None
        if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(
                f"Layer {layer.name!r} of {source.name} has other shapes than {target.name}'s."
            )
        layer.set_weights(weights)
        copied += 1
    return copied


def train(
    config="quick",
    run_dir=None,
    dataset=None,
    data_dir=None,
    resume=False,
    overwrite=False,
    strategy=None,
    print_fn=print,
    callbacks=(),
    image_size=None,
    on_error="raise",
    **overrides,
):
    """Train a model on a dataset with a recipe; returns a dict describing the run.

    Args:
        config: a preset name or `TrainConfig`; `overrides` replace its fields (epochs=...).
        run_dir: output folder (default `artifacts/runs/<preset>`).
        dataset: an `ImageDataset`; default `data.load_dataset(data_dir, ...)`.
        resume: continue the run in `run_dir` from its last finished epoch.
        overwrite: replace an existing run in `run_dir`.
        strategy: see `distribution_scope`.
        image_size: `(height, width)` to resize every image to (recorded in the metadata, so
            that evaluation and prediction resize the same way); default the images' own size.
        on_error: "raise" on an unreadable image file, or "skip" it (each one printed).
        callbacks: extra Keras callbacks, run after the recipe's own (which log, checkpoint and
            back up first), e.g. an Optuna pruning callback reading `val_accuracy`.
    """
    config = dataclasses.replace(get_recipe(config), **overrides).validate()
    start = None
    if config.init_from:  # resolved first: a missing file or an offline hub refuses at once
        source, source_metadata = init_source(config.init_from)
        config = dataclasses.replace(config, model=source_variant(source, source_metadata))
        # Without metadata, the variant's own contract (Apple's layouts: BGR in [0, 1]).
        contract = (
            source_metadata.get("preprocessing")
            or models.get_variant(config.model).preprocessing.to_dict()
        )
        names = {layer.name for layer in source.layers}
        start = {
            "model": source,
            "metadata": source_metadata,
            "reverse": contract.get("channel_order") == "BGR" or "rgb_to_bgr" in names,
            "head": False,
            "freeze": False,
        }
        if image_size is None:  # the source's input size
            image_size = tuple(source_metadata.get("input_shape") or source.input_shape[1:])[:2]
    run_dir = Path(run_dir or environment.artifacts_dir("runs", config.name, create=False))
    nothing_to_resume = resume and not any(
        (run_dir / name).exists() for name in ("backup", "history.csv", "head")
    )
    created = not run_dir.exists()
    run_dir = prepare_run_dir(run_dir, resume, overwrite)
    if nothing_to_resume:
        print_fn(f"no run to resume in {run_dir}: starting a new one")
    try:
        return _train(
            config,
            run_dir,
            dataset,
            data_dir,
            strategy,
            print_fn,
            callbacks,
            image_size,
            on_error,
            start,
        )
    except ValueError:  # DataError included
        if created and run_dir.exists() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # refused before training: leave nothing behind
        raise


def _train(
    config, run_dir, dataset, data_dir, strategy, print_fn, callbacks, image_size, on_error, start
):
    environment.start_backend_quietly()
    environment.set_seed(config.seed)
    run_environment = environment.describe()  # versions and devices, once per run
    for line in hardware_warnings(config, run_environment["devices"]):
        print_fn(line)

    if dataset is None:
        dataset = data_lib.load_dataset(
            data_dir,
            validation_split=config.validation_split,
            seed=config.seed,
            image_size=image_size,
            max_per_class=config.max_per_class,
            on_error=on_error,
        )
    num_classes = dataset.num_classes
    if num_classes < 2:
        raise data_lib.DataError(
            f"The data has {num_classes} class ({', '.join(dataset.class_names)}); a classifier "
            "needs at least 2 class folders."
        )
    counts = np.bincount(np.asarray(dataset.y_train), minlength=num_classes)
    if not counts.all():  # e.g. every file of a class skipped as unreadable
        empty = [name for name, n in zip(dataset.class_names, counts) if n == 0]
        raise data_lib.DataError(
            f"Class {empty[0]!r} has no training images left"
            + (f" (nor do {empty[1:]})" if len(empty) > 1 else "")
            + "; add readable images to it or remove its folder."
        )
    if start and config.head_epochs and not start["freeze"]:
        head_dir = run_dir / "head"
        if not run_finished(head_dir):
            print_fn(
                f"phase 1: the new head alone for {config.head_epochs} epoch(s), backbone frozen"
            )
            head_config = dataclasses.replace(
                config,
                epochs=config.head_epochs,
                learning_rate=config.head_learning_rate,
                min_learning_rate=min(config.min_learning_rate, config.head_learning_rate),
                warmup_epochs=0.0,
                head_epochs=0,
            )
            _train(
                head_config,
                prepare_run_dir(head_dir, resume=True),
                dataset,
                None,
                strategy,
                print_fn,
                (),
                image_size,
                on_error,
                {**start, "freeze": True},
            )
        start = {**start, "model": load_run(head_dir, compile=False)[0], "head": True}
        print_fn(f"phase 2: every layer for {config.epochs} epoch(s)")
    soft = uses_soft_labels(config)
    policy = aug.get_augmentation(config.augmentation)
    flips = (
        data_lib.FlipSchedule(len(dataset.y_train), config.seed)
        if policy.flip == "alternating"
        else None
    )
    eraser = aug.build_eraser(policy, config.seed)
    late = (
        data_lib.FromEpoch(
            eraser, round(policy.erasing_from * config.epochs), data_lib.EpochClock()
        )
        if eraser is not None
        else None
    )
    clocks = [clock for clock in (flips, late and late.clock) if clock is not None]
    train_batches = data_lib.make_batches(
        dataset.x_train,
        dataset.y_train,
        config.batch_size,
        num_classes=num_classes,
        training=True,
        augmenter=aug.build_augmenter(policy, config.seed),
        mixer=aug.build_mixer(policy, config.seed),
        soft_labels=soft,
        seed=config.seed,
        parallel=config.parallel_augmentation,
        flip_schedule=flips,
        late=late,
    )
    validating = len(dataset.y_val) > 0
    if not validating and (config.early_stopping_patience or config.schedule == "plateau"):
        raise ValueError(
            "Early stopping and the plateau schedule watch the validation split; a final fit "
            "(validation_split=0) needs a fixed number of epochs and the cosine schedule."
        )
    val_batches = (
        data_lib.make_batches(
            dataset.x_val,
            dataset.y_val,
            config.batch_size,
            num_classes=num_classes,
            soft_labels=soft,
        )
        if validating
        else None
    )
    steps_per_epoch = max(1, len(dataset.y_train) // config.batch_size)
    class_weight = fit_class_weight(config.class_weight, dataset.y_train, num_classes)

    precision = "mixed_float16" if config.mixed_precision else "float32"
    with distribution_scope(strategy), dtype_policy(precision):
        model = build_model(
            config,
            num_classes,
            dataset.image_shape,
            reverse_channels=bool(start and start["reverse"]),
        )
        if start:
            transfer_weights(start["model"], model, include_head=start["head"])
            if start["freeze"]:  # frozen BatchNorm layers also run in inference mode
                for layer in model.layers:
                    layer.trainable = layer.name in HEAD_LAYERS
        compile_model(model, config, steps_per_epoch, num_classes)

    _write_json(run_dir / "config.json", config.to_dict())
    _write_json(run_dir / "environment.json", run_environment)
    held_out = (
        f"validating on {len(dataset.y_val):,}" if validating else "no validation (final fit)"
    )
    print_fn(
        f"training {model.name} ({models.trainable_params(model):,} parameters) on "
        f"{len(dataset.y_train):,} images, {held_out}; run folder {run_dir}"
    )
    fit_start = time.perf_counter()
    model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=config.epochs,
        verbose=0,
        shuffle=False,  # the pipeline shuffles
        class_weight=class_weight,
        callbacks=[
            *make_callbacks(run_dir, config, print_fn, validating),
            *([EpochClockCallback(*clocks)] if clocks else []),
            *callbacks,
        ],
    )
    wall = time.perf_counter() - fit_start
    checkpoint = run_dir / "model.keras"
    if config.mixed_precision:
        # The checkpoint holds float32 weights under mixed policies; save it as a float32 model,
        # which is what evaluation, other backends and the TFLite converter expect.
        float32_checkpoint(checkpoint)
        model = models.as_float32(model)

    history = read_history(run_dir)
    if validating:
        best = max(history, key=lambda row: row["val_accuracy"]) if history else {}
    else:  # the checkpoint holds the last epoch's weights
        best = history[-1] if history else {}
    metadata = {
        "model": model.name,
        "variant": config.model,
        "class_names": list(dataset.class_names),
        "input_shape": list(dataset.image_shape),
        "preprocessing": models.RAW_RGB.to_dict(),
        "preset": config.name,
        "seed": config.seed,
        "validation_split": config.validation_split,
        "max_per_class": config.max_per_class,
        "epochs_completed": len(history),
        "best_epoch": int(best.get("epoch", -1)) + 1,
        "best_val_accuracy": best.get("val_accuracy"),
        "wall_time_s_last_session": round(wall, 1),
        "train_images": int(len(dataset.y_train)),
        "val_images": int(len(dataset.y_val)),
        "data_source": dataset.source,
        "environment": run_environment,
    }
    if start:
        metadata["init_from"] = config.init_from
        metadata["head_epochs"] = config.head_epochs
        # The source's input contract; this model takes raw RGB pixels whatever it was.
        metadata["source_preprocessing"] = start["metadata"].get("preprocessing")
    _write_json(run_dir / "metadata.json", metadata)
    if validating:
        print_fn(
            f"best val_accuracy={metadata['best_val_accuracy']:.4f} at epoch "
            f"{metadata['best_epoch']}; checkpoint {checkpoint}"
        )
    else:
        print_fn(
            f"no validation split: checkpoint {checkpoint} holds epoch {metadata['best_epoch']}'s "
            "weights, trained on every image"
        )
    return {
        "run_dir": run_dir,
        "checkpoint": checkpoint,
        "history": history,
        "metadata": metadata,
        "model": model,
        "config": config,
    }


def float32_checkpoint(path):
    """Rewrite the `.keras` file at `path` as a float32 model (no-op when it already is one)."""
    if not Path(path).exists():
        return
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    converted = models.as_float32(model)
    if converted is not model:
        converted.save(path)


def fit_seconds(history):
    """`fit`'s time from a history: every epoch's `epoch_time_s` (validation included) summed,
    so a run resumed across sessions counts them all; None where an epoch lacks the column."""
    times = [row.get("epoch_time_s") for row in history]
    return sum(float(t) for t in times) if times and all(times) else None


def read_history(run_dir):
    """history.csv as a list of dicts with float values (CSVLogger format)."""
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        # CSVLogger writes "NA" in the val_ columns of a run without validation.
        return [
            {k: float(v) for k, v in row.items() if v not in ("", "NA")}
            for row in csv.DictReader(f)
        ]


def load_run(run_dir, compile=True):
    """The best model of a run and its metadata; `compile=False` leaves out the optimizer."""
    run_dir = Path(run_dir)
    checkpoint = run_dir / "model.keras"
    if not checkpoint.exists():
        raise FileNotFoundError(
            f"No checkpoint at {checkpoint}; run notebook 03 (or `python -m mobilevit_utils "
            f"train --out {run_dir}`) first."
        )
    model = keras.saving.load_model(checkpoint, safe_mode=True, compile=compile)
    if not compile:
        model = models.as_float32(model)  # a checkpoint of an interrupted mixed-precision run
    metadata_path = run_dir / "metadata.json"
    metadata = json.loads(metadata_path.read_text()) if metadata_path.exists() else {}
    return model, metadata


# Where notebook 03 writes its run; the released checkpoint is a `presets` name.
NOTEBOOK_RUN = ("runs", "notebook03")
RELEASED_PRESET = "mobilevit_v2_050_cifar10"


def find_run(run_dir=None, download_from=None, data_dir=None, validated=False):
    """The run to evaluate or export: `run_dir` if given, else notebook 03's run, else the
    released checkpoint; a clear error naming what to run first when there is none.

    A released final fit (trained on every training image) has no held-out images of its own.
    Its twin, the same recipe trained with a validation split, stands in where the data
    (`data_dir`, else $MOBILEVIT_DATA_DIR, else CIFAR-10) has no test split to score the final
    fit on, and with `validated=True` (for validation curves); a line says so.

    `download_from`: a GitHub repository URL to fetch the released checkpoint from when it is
    not on disk (Colab installs the package, not the repository's `checkpoints/` folder).
    """
    from mobilevit_utils import presets

    if run_dir:
        if (Path(run_dir) / "model.keras").exists():
            return Path(run_dir)
        raise FileNotFoundError(
            f"No trained model in {run_dir}; run notebook 03_training first, or "
            f"`python -m mobilevit_utils train --out {run_dir}`."
        )
    notebook_run = environment.artifacts_dir(*NOTEBOOK_RUN, create=False)
    if (notebook_run / "model.keras").exists():
        return notebook_run
    name, twin = RELEASED_PRESET, presets.PRESETS[RELEASED_PRESET].twin
    if twin and (validated or not data_lib.has_test_split(data_dir)):
        why = "it has no validation curves" if validated else "this data has no test split"
        print(
            f"The release {name} is a final fit on every training image and {why}: its twin "
            f"{twin} (the same recipe, trained with a validation split) stands in."
        )
        name = twin
    try:
        return presets.checkpoint_dir(name, download_from=download_from)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"No trained model found (looked in {notebook_run} and the released checkpoint); run "
            "notebook 03_training first, or `python -m mobilevit_utils train --out DIR`."
        ) from None


def lr_curve(config, steps_per_epoch):
    """(epochs, learning rates) of the schedule, for plotting."""
    schedule = make_schedule(config, steps_per_epoch)
    steps = list(range(0, max(1, config.epochs * steps_per_epoch), max(1, steps_per_epoch // 10)))
    if not callable(schedule):
        return [s / steps_per_epoch for s in steps], [schedule] * len(steps)
    rates = [float(keras.ops.convert_to_numpy(schedule(s))) for s in steps]
    return [s / steps_per_epoch for s in steps], rates


def epochs_within(budget_seconds, images_per_second, train_images):
    """How many epochs fit a time budget at a measured speed."""
    return max(1, math.floor(budget_seconds * images_per_second / train_images))
