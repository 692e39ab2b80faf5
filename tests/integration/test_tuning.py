"""Hyper-parameter search (mobilevit_utils.tuning): Optuna trials are training runs."""

import dataclasses
import json
import math
from datetime import timedelta

import numpy as np
import optuna
import pandas as pd
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
    table = tuning.trials_table(study)
    assert list(table["epochs"]) == [1, 1]  # each epoch's score reached the pruner
    assert study.user_attrs["startup_trials"] == tuning.STARTUP_TRIALS > 2
    assert set(table["proposed by"]) == {"random"}
    # the cpu recipe's MobileViTv2 has no heads: num_heads is not searched
    assert set(study.best_params) == set(tuning.SEARCH_SPACE) - {"num_heads"}
    # seeded: the same first proposal every time
    again = optuna.samplers.TPESampler(seed=42)
    first = optuna.create_study(direction="maximize", sampler=again).ask()
    assert tuning.suggest(first, space)["learning_rate"] == study.trials[0].params["learning_rate"]
    recipe = tuning.best_recipe(study, epochs=48)
    assert recipe.epochs == 48 and recipe.learning_rate == study.best_params["learning_rate"]
    assert recipe.augmentation == study.best_params["augmentation"]
    assert (
        dataclasses.replace(recipe, epochs=48) == recipe
        and recipe.name == training.get_recipe("cpu").name
    )


def test_search_space_keeps_heads_only_for_layouts_with_heads():
    assert tuning.has_attention_heads("xxs_cifar") and tuning.has_attention_heads("xxs_cifar_v3")
    assert not tuning.has_attention_heads("v2_050_cifar")
    assert "num_heads" in tuning.search_space("quick")  # xxs_cifar
    assert "num_heads" not in tuning.search_space("cpu")  # v2_050_cifar
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = tuning.suggest(study.ask(), {"learning_rate": (1e-4, 1e-2), "batch_size": (8,)})
    assert set(drawn) == {"learning_rate", "batch_size"} and drawn["batch_size"] == 8


def test_format_duration_reads_like_words():
    assert tuning.format_duration(pd.Timedelta("0 days 00:02:26.89")) == "2 min 27 s"
    assert tuning.format_duration(timedelta(seconds=48.2)) == "48 s"
    assert tuning.format_duration(8613.4) == "2 h 24 min"
    assert tuning.format_duration(None) == tuning.format_duration(pd.NaT) == ""


def test_log_ticks_are_few_and_round():
    assert tuning.log_ticks(2.7e-4, 5.5e-3) == pytest.approx([3e-4, 1e-3, 3e-3])
    assert len(tuning.log_ticks(1e-6, 1.0, max_ticks=4)) <= 4
    assert len(tuning.log_ticks(0.028, 0.064)) >= 2
    assert [tuning.short_exponent(v) for v in (5e-4, 0.001, 2.5e-3)] == ["5e-4", "1e-3", "2.5e-3"]


def test_trials_table_and_readable_slice_ticks():
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as optuna_plots

    space = {"learning_rate": (3e-4, 5e-3), "augmentation": ("light", "cutmix")}
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=2)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.set_user_attr("startup_trials", 2)
    study.optimize(lambda t: -abs(math.log10(tuning.suggest(t, space)["learning_rate"]) + 3), 6)
    table = tuning.trials_table(study)
    proposed = dict(zip(table["number"], table["proposed by"]))
    assert proposed == {n: "random" if n < 2 else "TPE" for n in range(6)}
    assert list(table["value"]) == sorted(table["value"], reverse=True)
    assert {"learning_rate", "augmentation", "duration"} <= set(table.columns)
    assert all(isinstance(d, str) and d.endswith("s") for d in table["duration"])
    axes = tuning.readable_slice_ticks(optuna_plots.plot_slice(study))
    log_axis = next(ax for ax in np.ravel(axes) if ax.get_xscale() == "log")
    assert 2 <= len(log_axis.get_xticks()) <= 4
    assert not any(label.get_text() for label in log_axis.get_xminorticklabels())
    panels = list(np.ravel(axes))
    colour_bar = next(ax for ax in panels[0].figure.axes if ax not in panels)
    panels[0].figure.canvas.draw()
    assert all(float(t).is_integer() for t in colour_bar.get_yticks())  # trial numbers
    matplotlib.pyplot.close("all")


ABLATIONS = pd.DataFrame(
    {
        "name": ["baseline", "baseline-seed43", "flip-tta", "bigger", "worse", "release-x"],
        "compared_with": ["baseline", "baseline", "baseline", "baseline", "baseline", "release"],
        "seed": [42, 43, 42, 42, 42, 42],
        "epochs": [12, 12, 12, 12, 12, 64],
        "val_accuracy": [0.80, 0.81, 0.82, 0.805, 0.78, 0.885],
        "macs": [26e6, 26e6, 26e6, 35e6, 26e6, 35e6],
        "train_time_s": [2600, 1700, 2600, 2100, 1800, 8000],
    }
)


def test_ablation_verdicts_read_each_row_against_its_reference_and_the_seeds():
    assert tuning.seed_noise(ABLATIONS) == pytest.approx(1.0)
    table = tuning.ablation_verdicts(ABLATIONS, {"release": 0.88}).set_index("name")
    assert list(table["verdict"]) == [
        "reference",
        "seed",
        "helped",
        "within noise",
        "hurt",
        "within noise",
    ]
    assert (
        table.loc["flip-tta", "gain"] == pytest.approx(2.0) and table.loc["flip-tta", "views"] == 2
    )
    assert table.loc["release-x", "gain"] == pytest.approx(0.5)
    assert (
        tuning.ablation_verdicts(ABLATIONS).set_index("name").loc["release-x", "verdict"]
        == "no reference"
    )


def test_ablation_figure_draws_every_row(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from mobilevit_utils import plots

    table = tuning.ablation_verdicts(ABLATIONS, {"release": 0.88})
    fig = plots.ablation_figure(table, noise_band=(80.0, 81.0))
    labels = {text.get_text().split(" (")[0] for ax in fig.axes for text in ax.texts}
    assert labels == set(ABLATIONS["name"])
    fig.savefig(tmp_path / "figure.png")
    matplotlib.pyplot.close(fig)


def test_committed_run_like_finds_the_run_of_a_recipe(tmp_path):
    config = training.get_recipe("cpu").to_dict() | {"epochs": 12, "name": "cpu"}
    older = {k: v for k, v in config.items() if k not in ("weight_averaging", "head_epochs")}
    for name, fields in (("other", config | {"learning_rate": 1e-3}), ("match", older)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(fields))
    assert tuning.committed_run_like("cpu", tmp_path, epochs=12) == "match"
    assert tuning.committed_run_like("cpu", tmp_path, epochs=13) is None


def test_release_table_reads_a_results_json():
    results = {
        "evaluation": {"accuracy": 0.88},
        "evaluation_flip_tta": {"accuracy": 0.887},
        "evaluation_flip_shift_tta": {"accuracy": 0.8926},
        "tflite": {"int8": {"accuracy": 0.8788, "size_kb": 1500}},
        "tflite_release_size_kb": {"int8": 1533},
    }
    table = tuning.release_table(results)
    assert list(table["passes per image"]) == [1, 2, 10, 1]
    assert list(table["accuracy (%)"]) == [88.0, 88.7, 89.26, 87.88]
    assert "1,533 KB" in table["released file"].iloc[-1]
    assert list(table["vs plain (points)"]) == [0.0, 0.7, 1.26, -0.12]
    assert len(tuning.release_table({"evaluation": {"accuracy": 0.5}})) == 1
