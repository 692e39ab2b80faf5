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
    seed: int = 42

    def to_dict(self):
        return dataclasses.asdict(self)


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
    # Sized to 2 hours on 2 CPU cores from measured speed: the reference run took 114 minutes
    # and reached 86.4 % (README, "Results"); whole-pixel shifts ("light") gained 1.4 points
    # at 12 epochs and 0.8 at 48 over the bilinear ones, now "light_bilinear"
    # (benchmarks/results/). A run with peak learning rate 2e-3 and no gradient clipping
    # diverged halfway (epoch 15).
    "cpu": TrainConfig(
        name="cpu",
        epochs=48,
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
        alpha=config.min_learning_rate / config.learning_rate,
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
    k = min(5, num_classes)
    if soft_labels:
        return [
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k, name=f"top{k}_accuracy"),
        ]
    return [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        keras.metrics.SparseTopKCategoricalAccuracy(k, name=f"top{k}_accuracy"),
    ]


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
        self.variables = [v for v in self.model.weights if "float" in str(v.dtype)]
        resumed = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) > 0
        if resumed and self.state_path.exists():
            import numpy as np

            with np.load(self.state_path) as state:
                self.updates = int(state["updates"])
                self.average = [state[f"w{i}"] for i in range(len(self.variables))]
        else:
            self.updates = 0
            self.average = self._values()
        self.raw = None  # the training weights while the average is swapped in
        self.steps = 0

    def _values(self):
        return [keras.ops.convert_to_numpy(v).copy() for v in self.variables]

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
            for variable, average in zip(self.variables, self.average):
                variable.assign(average)

    def _swap_out(self):
        if self.raw is not None:
            for variable, raw in zip(self.variables, self.raw):
                variable.assign(raw)
            self.raw = None

    def on_test_begin(self, logs=None):
        self._swap_in()

    def on_test_end(self, logs=None):
        self._swap_out()

    def on_epoch_end(self, epoch, logs=None):
        import numpy as np

        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp.npz")
        arrays = {f"w{i}": a for i, a in enumerate(self.average)}
        np.savez(tmp, updates=self.updates, **arrays)
        tmp.replace(self.state_path)  # never a half-written state
        self._swap_in()  # for the checkpoint; undone when the next epoch begins

    def on_epoch_begin(self, epoch, logs=None):
        self._swap_out()


class FlipEpoch(keras.callbacks.Callback):
    """Tells a `data.FlipSchedule` which epoch begins (fit's index: a resumed run continues
    the alternation where it stopped)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        self.schedule.set_epoch(epoch)


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
            f"{run_dir} already holds a run; pass resume=True (--resume) to continue it, or "
            "choose another output folder."
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


def build_model(config, num_classes, input_shape):
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
    )


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
        callbacks: extra Keras callbacks, run after the recipe's own (which log, checkpoint and
            back up first), e.g. an Optuna pruning callback reading `val_accuracy`.
    """
    config = dataclasses.replace(get_recipe(config), **overrides)
    if config.ema and config.weight_averaging:
        raise ValueError("ema and weight_averaging both average the weights; choose one.")
    run_dir = prepare_run_dir(
        run_dir or environment.artifacts_dir("runs", config.name, create=False), resume, overwrite
    )
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
            max_per_class=config.max_per_class,
        )
    num_classes = dataset.num_classes
    soft = uses_soft_labels(config)
    policy = aug.get_augmentation(config.augmentation)
    flips = (
        data_lib.FlipSchedule(len(dataset.y_train), config.seed)
        if policy.flip == "alternating"
        else None
    )
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
        model = build_model(config, num_classes, dataset.image_shape)
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
    start = time.perf_counter()
    model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=config.epochs,
        verbose=0,
        shuffle=False,  # the pipeline shuffles
        class_weight=class_weight,
        callbacks=[
            *make_callbacks(run_dir, config, print_fn, validating),
            *([FlipEpoch(flips)] if flips else []),
            *callbacks,
        ],
    )
    wall = time.perf_counter() - start
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


# Where notebook 03 writes its run; the released checkpoint is `presets` "mobilevit_xxs_cifar10".
NOTEBOOK_RUN = ("runs", "notebook03")
RELEASED_PRESET = "mobilevit_xxs_cifar10"


def find_run(run_dir=None, download_from=None):
    """The run to evaluate or export: `run_dir` if given, else notebook 03's run, else the
    released checkpoint; a clear error naming what to run first when there is none.

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
    try:
        return presets.checkpoint_dir(RELEASED_PRESET, download_from=download_from)
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
