"""From a recipe to a compiled model: the learning-rate schedule, optimizer, loss and metrics,
the model itself, and the dtype policy and distribution it is built under."""

from __future__ import annotations

import contextlib
import dataclasses

import keras

from mobilevit_utils import augmentation as aug
from mobilevit_utils import environment, models


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
