"""`train`: resolve the recipe (and the model to fine-tune from) → load and check the data →
for each phase, build the batches and the model → fit → write the run's files."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from mobilevit_utils import augmentation as aug
from mobilevit_utils import data as data_lib
from mobilevit_utils import environment, models
from mobilevit_utils.run_files import RunMetadata, write_json
from mobilevit_utils.training import finetune, journal
from mobilevit_utils.training.callbacks import EpochClockCallback, make_callbacks
from mobilevit_utils.training.compile import (
    build_model,
    compile_model,
    distribution_scope,
    dtype_policy,
    hardware_warnings,
    uses_soft_labels,
)
from mobilevit_utils.training.recipes import get_recipe
from mobilevit_utils.training.report import input_line, write_run_card
from mobilevit_utils.training.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    HEAD_DIR,
    RunClaim,
    float32_checkpoint,
    prepare_run_dir,
    read_history,
    run_finished,
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
    image_size=None,
    on_error="raise",
    command=None,
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
        command: the command line that reproduces the run, for its model card (MODEL_CARD.md,
            written when it finishes); default the `training.train(...)` call.
        callbacks: extra Keras callbacks, run after the recipe's own (which log, checkpoint and
            back up first), e.g. an Optuna pruning callback reading `val_accuracy`.
    """
    config = dataclasses.replace(get_recipe(config), **overrides).validate()
    start, asked_size = None, image_size is not None
    inputs = {"image_size": list(image_size) if asked_size else None, "on_error": on_error}
    if config.init_from:  # resolved first: a missing file or an offline hub refuses at once
        config, start, image_size = finetune.resolve_start(config, image_size)
    run_dir = Path(run_dir or environment.artifacts_dir("runs", config.name, create=False))
    nothing_to_resume = resume and not any(
        (run_dir / name).exists() for name in ("backup", "history.csv", HEAD_DIR)
    )
    # Checked (and locked when it is a run) at once; written to only once every input is valid.
    claim = RunClaim(run_dir, resume, overwrite)
    # Printed once the data and the run are checked: a refused run prints its error alone.
    intro = [input_line(config, image_size, asked_size, dataset, data_dir)]
    if nothing_to_resume:
        intro.append(
            f"no run to resume in {environment.readable_path(run_dir)}: starting a new one"
        )
    try:
        result = _train(
            config=config,
            claim=claim,
            start=start,
            dataset=dataset,
            data_dir=data_dir,
            image_size=image_size,
            on_error=on_error,
            strategy=strategy,
            print_fn=print_fn,
            callbacks=callbacks,
            intro=intro,
            inputs=inputs,
        )
        result["card"] = write_run_card(result, command)
    except ValueError:  # DataError included
        claim.abandon()  # refused before training: leave nothing behind
        raise
    finally:
        claim.release()
    return result


def _train(
    *,
    config,
    claim,
    start,
    dataset,
    data_dir,
    image_size,
    on_error,
    strategy,
    print_fn,
    callbacks,
    intro=(),
    inputs=None,
):
    """Set up the session, load and check the data and the run folder, say what the run is
    (`intro`), then run the phases in order (one, or the head alone then every layer): the last
    one's result is the run's. `inputs`: recorded for --resume (`journal.recorded_start`)."""
    environment.start_backend_quietly()
    environment.set_seed(config.seed)
    run_environment = environment.describe()  # versions and devices, once per run
    if dataset is None:
        dataset = data_lib.load_dataset(
            data_dir,
            validation_split=config.validation_split,
            seed=config.seed,
            image_size=image_size,
            max_per_class=config.max_per_class,
            on_error=on_error,
            crop_to_aspect_ratio=config.crop_to_aspect_ratio,
            pad_to_aspect_ratio=config.pad_to_aspect_ratio,
        )
    check_classes(dataset)
    check_validation(config, dataset)
    inputs = {"data_dir": getattr(dataset, "root", None), **(inputs or {})}
    journal.begin_run(claim, config, dataset, inputs)  # the first write into the run folder
    for line in [*intro, *hardware_warnings(config, run_environment["devices"])]:
        print_fn(line)
    run_dir = claim.run_dir
    result = None
    for phase in finetune.phases(config, run_dir, start):
        if phase.part and run_finished(phase.run_dir):
            continue  # a finished head phase of a resumed run
        if phase.intro:
            print_fn(phase.intro)
        if phase.part:
            prepare_run_dir(phase.run_dir, resume=True)
            environment.set_seed(phase.config.seed)
        result = run_phase(
            phase,
            dataset=dataset,
            run_environment=run_environment,
            strategy=strategy,
            print_fn=print_fn,
            callbacks=() if phase.part else callbacks,
        )
    return result


def check_classes(dataset):
    """Refuse data a classifier cannot learn: under 2 classes, or a class with no images."""
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


def check_validation(config, dataset):
    """Refuse a recipe that watches a validation split the data does not have."""
    if not len(dataset.y_val) and (config.early_stopping_patience or config.schedule == "plateau"):
        raise ValueError(
            "Early stopping and the plateau schedule watch the validation split; a final fit "
            "(validation_split=0) needs a fixed number of epochs and the cosine schedule."
        )


@dataclasses.dataclass(frozen=True)
class Batches:
    """A phase's input pipelines, and the epoch clocks its augmentations follow."""

    train: object
    val: object | None  # None without a validation split (a final fit)
    clocks: tuple
    steps_per_epoch: int


def make_pipelines(config, dataset):
    """The augmented training batches and the validation batches of the recipe."""
    num_classes = dataset.num_classes
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
    check_validation(config, dataset)
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
    return Batches(
        train=train_batches,
        val=val_batches,
        clocks=tuple(clock for clock in (flips, late and late.clock) if clock is not None),
        steps_per_epoch=max(1, len(dataset.y_train) // config.batch_size),
    )


def fit_class_weight(class_weight, labels, num_classes):
    """`model.fit`'s class_weight for the recipe's setting: None, or "balanced" computed from
    the training labels (`data.class_weights`)."""
    if class_weight is None:
        return None
    if class_weight != "balanced":
        raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}.")
    return data_lib.class_weights(labels, num_classes)


def build_phase_model(config, *, dataset, start, source, strategy, steps_per_epoch):
    """The phase's compiled model, under the recipe's precision and `strategy`: new, or with
    `source`'s weights (`start` says which layers, and whether the backbone trains)."""
    precision = "mixed_float16" if config.mixed_precision else "float32"
    with distribution_scope(strategy), dtype_policy(precision):
        model = build_model(
            config,
            dataset.num_classes,
            dataset.image_shape,
            reverse_channels=bool(start and start.reverse_channels),
        )
        if start:
            finetune.transfer_weights(source, model, include_head=start.include_head)
            if start.freeze_backbone:  # frozen BatchNorm layers also run in inference mode
                for layer in model.layers:
                    layer.trainable = layer.name in finetune.HEAD_LAYERS
        compile_model(model, config, steps_per_epoch, dataset.num_classes)
    return model


def run_phase(phase, *, dataset, run_environment, strategy, print_fn, callbacks):
    """Fit one phase in its folder, and write its files; returns `train`'s result dict."""
    config, run_dir, start = phase.config, phase.run_dir, phase.start
    source = start.source_model() if start else None  # before the pipelines, as it always was
    batches = make_pipelines(config, dataset)
    class_weight = fit_class_weight(config.class_weight, dataset.y_train, dataset.num_classes)
    model = build_phase_model(
        config,
        dataset=dataset,
        start=start,
        source=source,
        strategy=strategy,
        steps_per_epoch=batches.steps_per_epoch,
    )
    write_json(run_dir / CONFIG_FILE, config.to_dict())
    write_json(run_dir / ENVIRONMENT_FILE, run_environment)
    held_out = (
        f"validating on {len(dataset.y_val):,}"
        if batches.val is not None
        else "no validation (final fit)"
    )
    print_fn(
        f"training {model.name} ({models.trainable_params(model):,} parameters) on "
        f"{len(dataset.y_train):,} images of {'x'.join(map(str, dataset.image_shape[:2]))}, "
        f"{held_out}; run folder {environment.readable_path(run_dir)}"
    )
    fit_start = time.perf_counter()
    model.fit(
        batches.train,
        validation_data=batches.val,
        epochs=config.epochs,
        verbose=0,
        shuffle=False,  # the pipeline shuffles
        class_weight=class_weight,
        callbacks=[
            *make_callbacks(run_dir, config, print_fn, batches.val is not None),
            *([EpochClockCallback(*batches.clocks)] if batches.clocks else []),
            *callbacks,
        ],
    )
    wall = time.perf_counter() - fit_start
    if config.mixed_precision:
        # The checkpoint holds float32 weights under mixed policies; save it as a float32 model,
        # which is what evaluation, other backends and the TFLite converter expect.
        float32_checkpoint(run_dir / CHECKPOINT_FILE)
        model = models.as_float32(model)
    return finish_run(
        phase,
        model=model,
        dataset=dataset,
        wall=wall,
        run_environment=run_environment,
        print_fn=print_fn,
    )


def finish_run(phase, *, model, dataset, wall, run_environment, print_fn):
    """Write the run's metadata.json from its history, say where its checkpoint is, and return
    `train`'s result dict."""
    config, run_dir, start = phase.config, phase.run_dir, phase.start
    history = read_history(run_dir)
    validating = len(dataset.y_val) > 0
    if validating:
        best = max(history, key=lambda row: row["val_accuracy"]) if history else {}
    else:  # the checkpoint holds the last epoch's weights
        best = history[-1] if history else {}
    fine_tuning = {}
    if start:
        fine_tuning = {
            "init_from": config.init_from,
            "head_epochs": config.head_epochs,
            # The source's input contract; this model takes raw RGB pixels whatever it was.
            "source_preprocessing": start.metadata.preprocessing,
        }
    metadata = RunMetadata(
        model=model.name,
        variant=config.model,
        class_names=list(dataset.class_names),
        input_shape=list(dataset.image_shape),
        preprocessing=models.RAW_RGB.to_dict(),
        preset=config.name,
        seed=config.seed,
        validation_split=config.validation_split,
        max_per_class=config.max_per_class,
        epochs_completed=len(history),
        best_epoch=int(best.get("epoch", -1)) + 1,
        best_val_accuracy=best.get("val_accuracy"),
        wall_time_s_last_session=round(wall, 1),
        train_images=int(len(dataset.y_train)),
        val_images=int(len(dataset.y_val)),
        data_source=dataset.source,
        data_dir=getattr(dataset, "root", None),
        crop_to_aspect_ratio=config.crop_to_aspect_ratio,
        pad_to_aspect_ratio=config.pad_to_aspect_ratio,
        environment=run_environment,
        **fine_tuning,
    )
    metadata.write(run_dir)
    journal.finish(run_dir)  # the resume state goes once the metadata is written
    checkpoint = environment.readable_path(run_dir / CHECKPOINT_FILE)
    if validating:
        print_fn(
            f"best val_accuracy={metadata.best_val_accuracy:.4f} at epoch "
            f"{metadata.best_epoch}; checkpoint {checkpoint}"
        )
    else:
        print_fn(
            f"no validation split: checkpoint {checkpoint} holds epoch {metadata.best_epoch}'s "
            "weights, trained on every image"
        )
    return {
        "run_dir": run_dir,
        "checkpoint": checkpoint,
        "history": history,
        "metadata": metadata.to_dict(),
        "model": model,
        "config": config,
    }
