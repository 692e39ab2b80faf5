"""`fit` against the bare training step, side by side in one process: where an epoch's time goes.

Trains the recipe's model (compiled by `training.compile_model`, as `train` does) and prints
images/s of:

- the step: `train_on_batch` on one fixed real batch (no input pipeline, no callbacks);
- a `fit` epoch exactly as `training.train` runs it (augmented tf.data pipeline, validation,
  the recipe's callbacks);
- the same epoch with one part removed at a time (callbacks, validation, augmentation), so that
  each part's cost is the difference.

Every fit row times one whole epoch (validation included where there is one) after a warm-up
fit that traces the train and test functions; images/s counts training images only, so the rows
compare with the step directly (ratio = fit / step).

    python benchmarks/fit_throughput.py --data-dir ../shared/data
    python benchmarks/fit_throughput.py --variant v2_050_cifar --batch-size 256 --data-dir ...
    python benchmarks/fit_throughput.py --inter-op 1 --intra-op 2 --data-dir ...  # TF threads

Thread settings must be made before TensorFlow starts, so each setting is a separate run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import keras  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch, validation included (what `EpochLogger` records)."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="recipe whose fit is measured")
    parser.add_argument("--variant", default=None, help="model (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--images-per-class",
        type=int,
        default=1400,
        help="images per class, 10 %% of them held out for validation as in the recipe "
        "(default %(default)s: 11,340 training images, a quarter of an epoch)",
    )
    parser.add_argument("--step-repeats", type=int, default=20, help="steps per timed window")
    parser.add_argument("--rounds", type=int, default=3, help="times each fit row is measured")
    parser.add_argument("--inter-op", type=int, default=None, help="TF inter-op threads")
    parser.add_argument("--intra-op", type=int, default=None, help="TF intra-op threads")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="fit rows to run (default all): train, no-callbacks, no-validation, no-augmentation",
    )
    args = parser.parse_args(argv)

    import tensorflow as tf

    if args.inter_op is not None:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    if args.intra_op is not None:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)

    from mobilevit_utils import augmentation as aug
    from mobilevit_utils import data as data_lib
    from mobilevit_utils import environment, training

    environment.start_backend_quietly()
    overrides = {"model": args.variant, "batch_size": args.batch_size}
    config = dataclasses.replace(
        training.get_recipe(args.preset), **{k: v for k, v in overrides.items() if v}
    )
    environment.set_seed(config.seed)
    dataset = data_lib.load_dataset(
        args.data_dir,
        validation_split=config.validation_split,
        seed=config.seed,
        max_per_class=round(args.images_per_class * (1 - config.validation_split)),
    )
    # load_dataset caps training images per class; the validation split is a share of all.
    n_train, n_val = len(dataset.y_train), len(dataset.y_val)
    soft = training.uses_soft_labels(config)
    policy = aug.get_augmentation(config.augmentation)

    def train_batches(augment=True):
        return data_lib.make_batches(
            dataset.x_train,
            dataset.y_train,
            config.batch_size,
            num_classes=dataset.num_classes,
            training=True,
            augmenter=aug.build_augmenter(policy, config.seed) if augment else None,
            mixer=aug.build_mixer(policy, config.seed) if augment else None,
            soft_labels=soft,
            seed=config.seed,
            parallel=config.parallel_augmentation,
            flip_schedule=flips if augment else None,
        )

    # An alternating-flip policy as train runs it: the schedule and its callback.
    flips = data_lib.FlipSchedule(n_train, config.seed) if policy.flip == "alternating" else None
    val_batches = data_lib.make_batches(
        dataset.x_val,
        dataset.y_val,
        config.batch_size,
        num_classes=dataset.num_classes,
        soft_labels=soft,
    )
    steps = n_train // config.batch_size

    def compiled_model(steps_per_execution=1):
        model = training.build_model(config, dataset.num_classes, dataset.image_shape)
        training.compile_model(model, config, steps, dataset.num_classes, steps_per_execution)
        # Warm-up: trace the train and test functions (full and partial validation batches).
        model.fit(
            train_batches(),
            validation_data=val_batches,
            epochs=1,
            steps_per_epoch=3 * steps_per_execution,
            verbose=0,
        )
        return model

    model = compiled_model()
    x, y = next(iter(train_batches()))

    def step_images_per_second():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(args.step_repeats):
                model.train_on_batch(x, y)
            best = min(best, time.perf_counter() - start)
        return args.step_repeats * config.batch_size / best

    # name: (label, the recipe's callbacks, validation, augmentation, steps per execution)
    rows = {
        "train": ("fit as training.train runs it", True, True, True, 1),
        "no-callbacks": ("  without the recipe's callbacks", False, True, True, 1),
        "no-validation": ("  without validation", True, False, True, 1),
        "no-augmentation": ("  without augmentation", True, True, False, 1),
        "steps-per-execution-8": ("  with steps_per_execution=8", True, True, True, 8),
    }
    rows = {k: v for k, v in rows.items() if not args.only or k in args.only}
    models = {1: model}
    for *_, spe in rows.values():
        if spe not in models:
            models[spe] = compiled_model(spe)

    def fit_images_per_second(with_callbacks, validate, augment, spe):
        timer = EpochTimer()
        with tempfile.TemporaryDirectory() as run_dir:
            callbacks = (
                training.make_callbacks(run_dir, config, print_fn=lambda *_: None)
                if with_callbacks
                else []
            )
            if flips and augment:
                callbacks.append(training.EpochClockCallback(flips))
            models[spe].fit(
                train_batches(augment),
                validation_data=val_batches if validate else None,
                epochs=1,
                verbose=0,
                callbacks=[*callbacks, timer],
            )
        return steps * config.batch_size / timer.times[0]

    # Rounds of every row, interleaved, and the median of each row: load from neighbours and
    # the CPU's clock drift over minutes, so consecutive repeats of one row would share them.
    steps_measured = [step_images_per_second()]
    measured = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, (_, *setting) in rows.items():
            measured[name].append(fit_images_per_second(*setting))
        steps_measured.append(step_images_per_second())
    step = statistics.median(steps_measured)

    threads = (
        f"inter-op {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}, "
        f"intra-op {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}"
    )
    print(f"backend             tensorflow ({os.cpu_count()} CPU cores; {threads})")
    print(
        f"recipe              {config.name}: {model.name}, batch {config.batch_size}, "
        f"augmentation {config.augmentation}, label smoothing {config.label_smoothing}, "
        f"EMA {config.ema}"
    )
    print(f"data                {n_train:,} training and {n_val:,} validation images")
    print(
        f"medians of {args.rounds} interleaved rounds (step: of {len(steps_measured)} "
        f"measurements, each the best of 3 windows of {args.step_repeats} steps)"
    )
    print(f"{'':38}{'images/s':>10}{'x step':>8}{'range':>16}{'s/epoch':>9}")

    def line(label, values):
        median = statistics.median(values)
        spread = f"{min(values):.0f}-{max(values):.0f}"
        print(f"{label:38}{median:>10.1f}{median / step:>8.2f}{spread:>16}{45_000 / median:>9.0f}")

    line("train_on_batch step", steps_measured)
    for name, (label, *_) in rows.items():
        line(label, measured[name])
    print("s/epoch: a 45,000-image epoch at that speed (validation in proportion where run)")


if __name__ == "__main__":
    main()
