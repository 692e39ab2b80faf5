"""Hyper-parameter search with Optuna: each trial is one `training.train` run.

    study = tuning.search(dataset, n_trials=20, timeout=3600)   # about an hour on 2 CPU cores
    study.trials_dataframe()                                    # one row per trial
    best = tuning.best_recipe(study, epochs=48)                 # the winner, at full budget

A seeded TPE sampler (Tree-structured Parzen Estimator, Optuna's default: it models which values
gave good and which gave bad trials, and proposes values where good ones are likelier) draws the
learning rate, batch size, number of attention heads (for layouts that have heads), weight decay
and augmentation policy; a median pruner, fed the validation accuracy after every epoch, stops
trials that trail the others at the same epoch; `timeout` is the time box. (KerasTuner is the
Keras-native alternative, but its repository has been inactive since mid-2024.)

The rest reads the committed measurements for notebook 06: `ablation_verdicts` (each ablation
against its reference and the seeds' noise), `committed_run_like` (the ablation run that trained a
given recipe), `release_table` (what a released checkpoint reaches), `trials_table` and
`format_duration` (a study's trials, durations in words), `readable_slice_ticks` (Optuna's slice
plot, legible).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import keras

from mobilevit_utils import block_kinds, inference, models, training
from mobilevit_utils.run_files import RunMetadata

# The space searched: the series' three (learning rate, batch size, heads) and two more.
SEARCH_SPACE = {
    "learning_rate": (3e-4, 5e-3),  # log-uniform
    "batch_size": (64, 128, 256),
    "num_heads": (1, 2, 4),
    "weight_decay": (0.005, 0.1),  # log-uniform
    "augmentation": ("none", "light", "medium", "mixup", "cutmix"),
}


LOG_UNIFORM = ("learning_rate", "weight_decay")  # drawn on a log scale; the others are choices


def suggest(trial, space=SEARCH_SPACE):
    """A trial's recipe overrides, one per entry of `space` (a parameter left out is not searched)."""
    return {
        name: trial.suggest_float(name, *values, log=True)
        if name in LOG_UNIFORM
        else trial.suggest_categorical(name, list(values))
        for name, values in space.items()
    }


def has_attention_heads(model):
    """Whether layout `model` (a variant name) has multi-head attention: MobileViTv2 blocks'
    separable attention has no heads, so `num_heads` would change nothing there."""
    stages = models.get_variant(model).stages
    return any(block_kinds.BLOCK_KINDS[stage.block].has_heads for stage in stages)


def search_space(recipe="cpu", space=SEARCH_SPACE):
    """`space` less the parameters `recipe`'s model ignores (`num_heads` without heads)."""
    if has_attention_heads(training.get_recipe(recipe).model):
        return dict(space)
    return {name: values for name, values in space.items() if name != "num_heads"}


class PruningCallback(keras.callbacks.Callback):
    """Reports `monitor` to the Optuna trial after each epoch and stops a trial the pruner
    gives up on (Optuna's own Keras callback lives in the separate optuna-integration
    package and targets tf.keras)."""

    def __init__(self, trial, monitor="val_accuracy"):
        super().__init__()
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, epoch, logs=None):
        import optuna

        self.trial.report(float(logs[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")


# Random trials before TPE takes over. Optuna's default is 10, more than a time-boxed search on
# two CPU cores finishes, which would leave TPE nothing to propose.
STARTUP_TRIALS = 4


def search(
    dataset,
    n_trials=20,
    timeout=None,
    epochs=4,
    recipe="cpu",
    seed=42,
    space=SEARCH_SPACE,
    runs_dir=None,
    print_fn=print,
    startup_trials=STARTUP_TRIALS,
    **overrides,
):
    """Run an Optuna study maximising validation accuracy; returns the study.

    Each trial trains `recipe` for `epochs` on `dataset` (use a subset: a short budget per trial
    is the point) with the trial's overrides plus `overrides`. `timeout` (seconds) stops the
    study after the trial running at that moment. Parameters the recipe's model ignores are
    left out of `space` (`search_space`). The first `startup_trials` trials are random draws;
    TPE proposes the rest (`study.user_attrs["startup_trials"]`).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = search_space(recipe, space)
    runs_dir = Path(runs_dir or tempfile.mkdtemp(prefix="mobilevit-search-"))

    def objective(trial):
        params = suggest(trial, space)
        result = training.train(
            recipe,
            run_dir=runs_dir / f"trial{trial.number:03d}",
            dataset=dataset,
            overwrite=True,
            epochs=epochs,
            seed=seed,
            warmup_epochs=min(1.0, epochs / 4),
            callbacks=[PruningCallback(trial)],
            print_fn=lambda *_: None,
            **{**overrides, **params},
        )
        accuracy = RunMetadata.from_dict(result["metadata"]).best_val_accuracy
        print_fn(f"trial {trial.number}: val_accuracy {accuracy:.4f} with {params}")
        return accuracy

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    study.set_user_attr("startup_trials", startup_trials)
    # A pruned trial raises inside `fit`; Optuna records it as pruned and goes on.
    study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=True)
    return study


def best_recipe(study, recipe="cpu", **overrides):
    """The recipe with the study's best parameters (and `overrides`, e.g. the full epochs)."""
    return dataclasses.replace(training.get_recipe(recipe), **study.best_params, **overrides)


# --------------------------------------------------------------------------------------------
# Reading a study and the committed measurements (notebook 06)


def format_duration(duration):
    """A duration as a reader says it: "48 s", "2 min 27 s", "2 h 24 min". Takes seconds or a
    timedelta (Optuna's `trials_dataframe` gives pandas Timedeltas); "" for a missing one."""
    if duration is None:
        return ""
    seconds = duration.total_seconds() if hasattr(duration, "total_seconds") else float(duration)
    if math.isnan(seconds):
        return ""
    if round(seconds) >= 3600:  # to the minute
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def trials_table(study):
    """One row per trial, best first: number, score (the best epoch's, for a pruned trial of the
    epochs it ran), state, the epochs it ran, who proposed its values ("random" for the start-up
    trials, else "TPE"), parameters and duration in words."""
    table = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    table.columns = [column.removeprefix("params_") for column in table.columns]
    trials = {t.number: t for t in study.trials}
    startup = study.user_attrs.get("startup_trials", 10)
    table.insert(3, "epochs", [len(trials[n].intermediate_values) for n in table["number"]])
    table.insert(4, "proposed by", ["random" if n < startup else "TPE" for n in table["number"]])
    if "duration" in table:
        table["duration"] = [format_duration(d) for d in table["duration"]]
    return table.sort_values("value", ascending=False, na_position="last").reset_index(drop=True)


def log_ticks(low, high, max_ticks=4):
    """Two to `max_ticks` round values in [low, high] for a log axis whose automatic labels
    would overprint: 1 per decade if that gives three, else 1 and 3, 1-2-5, 1-2-3-5, any digit;
    the ends where not even two round values fit."""
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    options = [
        [m * 10.0**e for e in decades for m in subs if low <= m * 10.0**e <= high]
        for subs in ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5), range(1, 10))
    ]
    ticks = next((t for t in options if len(t) >= 3), None)
    ticks = ticks or next((t for t in options if len(t) >= 2), [low, high])
    return ticks[:: -(-len(ticks) // max_ticks)]


def short_exponent(value, _=None):
    """5e-4, 1e-3, 2.5e-3: a tick label for a log axis of small values."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def readable_slice_ticks(axes, max_ticks=4):
    """Optuna's `plot_slice` axes with ticks that do not overprint: a log axis gets at most
    `max_ticks` labels written as 5e-4, 1e-3 (no minor labels); long category names turn; the
    colour bar counts trials in whole numbers."""
    import matplotlib.ticker as mticker
    import numpy as np

    panels = list(np.ravel(axes))
    for colour_bar in (ax for ax in panels[0].figure.axes if ax not in panels):
        colour_bar.yaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    for ax in panels:
        if ax.get_xscale() == "log":
            ax.xaxis.set_major_locator(
                mticker.FixedLocator(log_ticks(*sorted(ax.get_xlim()), max_ticks))
            )
            ax.xaxis.set_major_formatter(mticker.FuncFormatter(short_exponent))
            ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        elif any(len(label.get_text()) > 6 for label in ax.get_xticklabels()):
            ax.tick_params(axis="x", labelrotation=30)
    return axes


def seed_noise(table, baseline="baseline"):
    """The spread (max - min) of the baseline's seeds' validation accuracy, in points: the rows
    named `baseline...` are one recipe with different seeds (benchmarks/levers.py's rule). A
    difference within it is not evidence; NaN while there is one seed."""
    seeds = table.loc[table["name"].str.startswith(baseline), "val_accuracy"]
    return 100 * (seeds.max() - seeds.min()) if len(seeds) > 1 else float("nan")


# Ablation rows that reuse the baseline's checkpoint with test-time augmentation, and their
# forward passes per image.
TTA_VIEWS = {
    "flip-tta": inference.tta_views(flip=True),
    "flip-shift-tta": inference.tta_views(flip=True, shift=True),
}


def ablation_verdicts(table, references=None, noise=None):
    """`table` (benchmarks/results/ablations.csv as a DataFrame) with each row's reference
    accuracy (its `compared_with` run; `references` maps runs outside the table, such as
    "release", to their accuracy), its `gain` in points and a `verdict`: "reference" (the
    baseline), "seed" (the baseline with another seed: these measure the noise), "helped" or
    "hurt" (beyond the seeds' spread), "within noise", or "no reference". Adds `views`, the
    forward passes per prediction (`TTA_VIEWS`, else 1)."""
    noise = seed_noise(table) if noise is None else noise
    accuracy = dict(zip(table["name"], table["val_accuracy"]))
    accuracy.update(references or {})
    reference = [accuracy.get(run, float("nan")) for run in table["compared_with"]]
    gain = 100 * (table["val_accuracy"] - reference)

    def verdict(name, compared_with, delta):
        if name == compared_with:
            return "reference"
        if name.startswith("baseline"):
            return "seed"
        if math.isnan(delta):
            return "no reference"
        if math.isnan(noise) or round(abs(delta), 2) <= round(noise, 2):  # as printed
            return "within noise"
        return "helped" if delta > 0 else "hurt"

    return table.assign(
        reference_accuracy=reference,
        gain=gain.round(2),
        verdict=[verdict(*row) for row in zip(table["name"], table["compared_with"], gain)],
        views=[TTA_VIEWS.get(name, 1) for name in table["name"]],
    )


def _recipe_fields(config):
    """A recipe's fields (a dict from a run's config.json, or a TrainConfig), its name aside;
    fields an older config lacks take their defaults (which are "off")."""
    if isinstance(config, training.TrainConfig):
        config = config.to_dict()
    known = {field.name for field in dataclasses.fields(training.TrainConfig)}
    fields = training.TrainConfig(**{k: v for k, v in config.items() if k in known}).to_dict()
    fields.pop("name")
    return fields


def committed_run_like(recipe, runs_dir, **overrides):
    """The name of the committed run under `runs_dir` (benchmarks/results/ablations/<name>/
    config.json) that trained exactly `recipe` with `overrides`, or None."""
    want = _recipe_fields(dataclasses.replace(training.get_recipe(recipe), **overrides))
    for path in sorted(Path(runs_dir).glob("*/config.json")):
        if _recipe_fields(json.loads(path.read_text())) == want:
            return path.parent.name
    return None


def release_table(results):
    """What a released checkpoint reaches, from its results.json (a dict): accuracy on its
    scored images plainly, with flip and with flip + shift test-time augmentation, and as the
    int8 TFLite file; with the forward passes each takes per image."""
    import pandas as pd

    keras_file = "model.keras"
    rows = [("Keras model", 1, results["evaluation"]["accuracy"], keras_file)]
    for key, how, passes in (
        ("evaluation_flip_tta", "Keras model, flip TTA", TTA_VIEWS["flip-tta"]),
        ("evaluation_flip_shift_tta", "Keras model, flip + shift TTA", TTA_VIEWS["flip-shift-tta"]),
    ):
        if key in results:
            rows.append((how, passes, results[key]["accuracy"], keras_file))
    int8 = results.get("tflite", {}).get("int8")
    if int8:
        size = results.get("tflite_release_size_kb", {}).get("int8", int8.get("size_kb"))
        rows.append(("int8 TFLite", 1, int8["accuracy"], f"int8 .tflite, {size:,} KB"))
    columns = ("model", "passes per image", "accuracy (%)", "released file")
    table = pd.DataFrame(rows, columns=columns)
    table["accuracy (%)"] = (100 * table["accuracy (%)"]).round(2)
    table.insert(
        3, "vs plain (points)", (table["accuracy (%)"] - table["accuracy (%)"][0]).round(2)
    )
    return table
