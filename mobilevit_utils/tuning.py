"""Hyper-parameter search with Optuna: each trial is one `training.train` run.

    study = tuning.search(dataset, n_trials=20, timeout=3600)   # about an hour on 2 CPU cores
    study.trials_dataframe()                                    # one row per trial
    best = tuning.best_recipe(study, epochs=48)                 # the winner, at full budget

A seeded TPE sampler proposes the learning rate, batch size, number of attention heads, weight
decay and augmentation policy; a median pruner, fed the validation accuracy after every epoch,
stops trials that trail the others at the same epoch; `timeout` is the time box. (KerasTuner is
the Keras-native alternative, but its repository has been inactive since mid-2024.)
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import keras

from mobilevit_utils import training

# The space searched: the seed's three (learning rate, batch size, heads) and two more.
SEARCH_SPACE = {
    "learning_rate": (3e-4, 5e-3),  # log-uniform
    "batch_size": (64, 128, 256),
    "num_heads": (1, 2, 4),
    "weight_decay": (0.005, 0.1),  # log-uniform
    "augmentation": ("none", "light", "medium", "mixup", "cutmix"),
}


def suggest(trial, space=SEARCH_SPACE):
    """A trial's recipe overrides, drawn from `space`."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", *space["learning_rate"], log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(space["batch_size"])),
        "num_heads": trial.suggest_categorical("num_heads", list(space["num_heads"])),
        "weight_decay": trial.suggest_float("weight_decay", *space["weight_decay"], log=True),
        "augmentation": trial.suggest_categorical("augmentation", list(space["augmentation"])),
    }


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
    **overrides,
):
    """Run an Optuna study maximising validation accuracy; returns the study.

    Each trial trains `recipe` for `epochs` on `dataset` (use a subset: a short budget per trial
    is the point) with the trial's overrides plus `overrides`. `timeout` (seconds) stops the
    study after the trial running at that moment.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
        accuracy = result["metadata"]["best_val_accuracy"]
        print_fn(f"trial {trial.number}: val_accuracy {accuracy:.4f} with {params}")
        return accuracy

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    # A pruned trial raises inside `fit`; Optuna records it as pruned and goes on.
    study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=True)
    return study


def best_recipe(study, recipe="cpu", **overrides):
    """The recipe with the study's best parameters (and `overrides`, e.g. the full epochs)."""
    return dataclasses.replace(training.get_recipe(recipe), **study.best_params, **overrides)
