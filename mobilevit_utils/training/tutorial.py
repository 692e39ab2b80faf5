"""What only the notebooks use: where notebook 03 writes its run and which run the later
notebooks read (`find_run`), the schedule as a curve, and epochs that fit a time budget."""

from __future__ import annotations

import math
from pathlib import Path

import keras

from mobilevit_utils import data as data_lib
from mobilevit_utils import environment
from mobilevit_utils.training.compile import make_schedule

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
