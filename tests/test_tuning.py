"""Hyper-parameter search (mobilevit_utils.tuning): Optuna trials are training runs."""

import dataclasses

import optuna
import pytest
from helpers import tiny_dataset

from mobilevit_utils import training, tuning


def test_pruning_callback_stops_a_trial_the_pruner_gives_up_on():
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.9)
    )
    trial = study.ask()
    callback = tuning.PruningCallback(trial)
    with pytest.raises(optuna.TrialPruned):
        callback.on_epoch_end(0, {"val_accuracy": 0.5})
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {0: 0.5}


def test_search_trains_seeded_trials_and_returns_the_best_recipe(tmp_path):
    space = {**tuning.SEARCH_SPACE, "batch_size": (8,), "augmentation": ("light", "mixup")}
    study = tuning.search(
        tiny_dataset(n_per_class=8),
        n_trials=2,
        epochs=1,
        space=space,
        runs_dir=tmp_path,
        print_fn=lambda *_: None,
    )
    assert len(study.trials) == 2
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    assert set(study.best_params) == set(tuning.SEARCH_SPACE)
    # seeded: the same first proposal every time
    again = optuna.samplers.TPESampler(seed=42)
    first = optuna.create_study(direction="maximize", sampler=again).ask()
    assert tuning.suggest(first, space)["learning_rate"] == study.trials[0].params["learning_rate"]
    recipe = tuning.best_recipe(study, epochs=48)
    assert recipe.epochs == 48 and recipe.num_heads == study.best_params["num_heads"]
    assert recipe.augmentation == study.best_params["augmentation"]
    assert (
        dataclasses.replace(recipe, epochs=48) == recipe
        and recipe.name == training.get_recipe("cpu").name
    )
