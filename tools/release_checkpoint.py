"""Release a training run: copy its checkpoint into the repository, evaluate it, export it to
TFLite, and write the results table the README shows.

    python -m mobilevit_utils train --preset cpu --data-dir ../shared/data --out artifacts/runs/reference-cpu
    python tools/release_checkpoint.py artifacts/runs/reference-cpu --data-dir ../shared/data --out checkpoints/mobilevit_v2_050_cifar10_heldout
    python -m mobilevit_utils train --preset cpu --validation-split 0 --data-dir ../shared/data --out artifacts/runs/reference-cpu-final
    python tools/release_checkpoint.py artifacts/runs/reference-cpu-final --data-dir ../shared/data --twin checkpoints/mobilevit_v2_050_cifar10_heldout

Writes to the released preset's folder (`training.RELEASED_PRESET`, where notebooks 04 and 05 find
it; `--out` another folder for a new preset, such as the release's twin below):
model.keras, metadata.json, config.json, environment.json, history.csv, learning_curves.png,
report/ (evaluation report of the Keras model), results.json, results.md and MODEL_CARD.md;
then replaces the README's table between the `reference-results` markers with results.md. The
.tflite files go to artifacts/tflite/<release name>/, named after the release
(<release name>_int8.tflite, ...; rebuilt by `python -m mobilevit_utils export`).
`--card-only RELEASE_FOLDER` rewrites only a release's MODEL_CARD.md from its committed files:

    python tools/release_checkpoint.py --card-only checkpoints/mobilevit_xxs_cifar10
Evaluates on the official test split where the data has one, else on the validation split
that training held out (same seed and share), and says which. A final fit (trained with
`--validation-split 0` on every image) has no held-out images of its own there: `--twin RUN`
names the same recipe's run with a validation split, whose scores the release reports as such
(the twin is released first, to its own preset's folder: `make reference`, then
`make reference-final`).
"""

import argparse
import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from mobilevit_utils import (  # noqa: E402
    environment,
    evaluation,
    export,
    model_card,
    models,
    plots,
    presets,
    training,
)
from mobilevit_utils.cli import train_command  # noqa: E402
from mobilevit_utils.cli.export import sidecar_extras  # noqa: E402

RUN_FILES = ("metadata.json", "config.json", "environment.json", "history.csv")
DEFAULT_OUT = presets.PRESETS[training.RELEASED_PRESET].checkpoint
MARKERS = ("<!-- reference-results:start -->", "<!-- reference-results:end -->")


def _hardware(run_env):
    """'1 GPU (...)' or '2 CPU cores (model name)' from a run's environment.json."""
    gpus = [d for d in run_env.get("devices", []) if "GPU" in d.upper() or "CUDA" in d.upper()]
    if gpus:
        return f"{len(gpus)} GPU ({', '.join(gpus)})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{run_env.get('cpu_count')} CPU cores, no GPU ({cpu})"


def _twin(run_dir, twin, config):
    """The run whose held-out score stands for a final fit: the same recipe with a
    validation split."""
    if twin is None:
        raise ValueError(
            f"{run_dir} is a final fit on every training image and the data has no test split; "
            "pass --twin RUN, the same recipe trained with a validation split, to report its score."
        )
    theirs = json.loads((Path(twin) / "config.json").read_text())
    differs = sorted(k for k in config if k != "validation_split" and config[k] != theirs.get(k))
    if differs or not theirs.get("validation_split"):
        raise ValueError(
            f"--twin {twin} must be {run_dir}'s recipe with a validation split; it differs in "
            f"{', '.join(differs) or 'validation_split (0 in both)'}."
        )
    # Recorded relative to the repository, as the committed results name it.
    twin = Path(twin).resolve()
    root = environment.project_root() or Path.cwd()
    return twin.relative_to(root) if twin.is_relative_to(root) else twin


def _refuse_twin_folder(out_dir, validation_split):
    """A run with held-out images must not overwrite the release when that is a final fit."""
    root = environment.project_root() or Path.cwd()
    for name, preset in presets.PRESETS.items():
        folder = root / (preset.checkpoint or "")
        if preset.twin and validation_split and folder.resolve() == out_dir.resolve():
            raise ValueError(
                f"{out_dir} holds {name}, a final fit; a run with a validation split is its "
                f"twin: release it with --out {presets.PRESETS[preset.twin].checkpoint}."
            )


def measure(model, metadata, data_dir, precisions, tflite_dir, report_dir, title):
    """Accuracy of a model and of its TFLite files on the held-out images."""
    (x, y, class_names, source), split = evaluation.held_out_data(metadata, data_dir)
    report = evaluation.evaluate(model, x, y, class_names)
    evaluation.write_report(report, report_dir, images=x, title=title)
    print(
        f"keras: accuracy={report.accuracy:.4f} macro_f1={report.macro_f1:.4f} on {len(y)} images ({split})"
    )
    flipped = evaluation.evaluate(model, x, y, class_names, flip=True)
    print(f"keras, flip TTA: accuracy={flipped.accuracy:.4f}")
    flip_shifted = evaluation.evaluate(model, x, y, class_names, flip=True, shift=True)
    print(f"keras, flip and shift TTA: accuracy={flip_shifted.accuracy:.4f}")
    tflite = {}
    scores = {"split": split, "source": str(source), **report.metrics()}
    checks = export_tflite(
        model, metadata, data_dir, precisions, tflite_dir, (x, y, class_names), scores
    )
    for precision, check in checks.items():
        tflite[precision] = {
            "size_kb": round(check.size_kb),
            "accuracy": check.accuracy,
            "macro_f1": check.macro_f1,
        }
        print(
            f"tflite {precision}: {tflite[precision]['size_kb']} KB, "
            f"parity {'ok' if check.ok else 'FAILED'}, accuracy={check.accuracy:.4f}"
        )
    return {
        "evaluation": scores,
        "evaluation_flip_tta": {"accuracy": flipped.accuracy, "macro_f1": flipped.macro_f1},
        "evaluation_flip_shift_tta": {
            "accuracy": flip_shifted.accuracy,
            "macro_f1": flip_shifted.macro_f1,
        },
        "tflite": tflite,
    }


def export_tflite(
    model, metadata, data_dir, precisions, tflite_dir, eval_data=None, evaluation_scores=None
):
    """`export.export_and_check` (as `python -m mobilevit_utils export` runs it): the TFLite
    files, named after the release folder (`tflite_dir`) with the model card's essentials in
    their sidecars, each checked against Keras and, with `eval_data`, scored;
    {precision: ExportCheck}."""
    # Calibrate int8 on training images only: the evaluation images stay unseen.
    calibration = None
    if "int8" in precisions:
        calibration = export.calibration_sample(
            evaluation.training_dataset(metadata, data_dir).x_train
        )
    return export.export_and_check(
        model,
        tflite_dir,
        precisions,
        training.RunMetadata.from_dict(metadata).class_names,
        calibration,
        eval_data,
        name=Path(tflite_dir).name,
        extra_metadata=sidecar_extras(Path(tflite_dir).name, metadata, evaluation_scores),
    )


def release(
    run_dir,
    out_dir,
    data_dir=None,
    precisions=export.PRECISIONS,
    readme=None,
    log=None,
    twin=None,
):
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    # Without the optimizer state (two more copies of every weight): inference and fine-tuning
    # need only the weights.
    model, metadata = training.load_run(run_dir, compile=False)
    metadata = training.RunMetadata.from_dict(metadata)
    config = json.loads((run_dir / "config.json").read_text())
    final_fit = metadata.final_fit and not evaluation.has_test_split(data_dir)
    twin = _twin(run_dir, twin, config) if final_fit else None
    _refuse_twin_folder(out_dir, metadata.validation_split)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / "model.keras")
    for name in RUN_FILES:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, out_dir / name)
    if log:  # what the training command printed
        shutil.copy2(log, out_dir / "training_log.txt")
    history = training.read_history(run_dir)
    plots.save(
        plots.history_figure(history, f"{model.name}, preset {metadata.preset}"),
        out_dir / "learning_curves.png",
    )

    tflite_dir = environment.artifacts_dir("tflite", out_dir.name)
    if twin is None:
        scores = measure(
            model, metadata, data_dir, precisions, tflite_dir, out_dir / "report", model.name
        )
    else:
        # Every figure is the twin's, on images the released weights have seen but the twin's
        # have not; the released model's TFLite files are exported for shipping all the same.
        print(f"final fit: scores are those of its twin {twin}")
        twin_model, twin_metadata = training.load_run(twin, compile=False)
        scores = measure(
            twin_model,
            twin_metadata,
            data_dir,
            precisions,
            environment.artifacts_dir("tflite", f"{out_dir.name}-twin"),
            out_dir / "report",
            f"{model.name} (twin run with a validation split)",
        )
        twin_scores = {**scores["evaluation"], "source": f"held out by the twin run {twin}"}
        shipped = export_tflite(
            model, metadata, data_dir, precisions, tflite_dir, evaluation_scores=twin_scores
        )
        scores["tflite_release_size_kb"] = {
            precision: round(check.size_kb) for precision, check in shipped.items()
        }

    run_env = metadata.environment
    fit = training.fit_seconds(history)  # every session of a resumed run
    results = {
        "model": model.name,
        "variant": metadata.variant,
        "preset": metadata.preset,
        "seed": metadata.seed,
        "trainable_parameters": models.trainable_params(model),
        "macs_per_image": models.count_macs(model),
        "input_shape": list(metadata.input_shape) if metadata.input_shape else None,
        **scores,
        "scored_by_twin": None if twin is None else twin.as_posix(),
        "training": {
            "epochs": metadata.epochs_completed,
            "best_epoch": metadata.best_epoch,
            "train_images": metadata.train_images,
            "wall_time_s": round(fit, 1) if fit else metadata.wall_time_s_last_session,
            "backend": run_env.get("backend"),
            "cpu_count": run_env.get("cpu_count"),
            "devices": run_env.get("devices"),
            "versions": run_env.get("versions"),
            "hardware": _hardware(run_env),
        },
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = results_markdown(results, run_dir, out_dir, data_dir)
    (out_dir / "results.md").write_text(table)
    if readme:
        update_readme(readme, table)
    write_card(out_dir)
    print(f"released to {out_dir}")
    return results


def results_markdown(results, run_dir, out_dir, data_dir=None):
    ev, tr = results["evaluation"], results["training"]
    split = (
        "official CIFAR-10 test split"
        if ev["split"] == "test"
        else "validation split held out from the training images (never trained on)"
    )
    if results.get("scored_by_twin"):
        # A final fit has no held-out images of its own: the score is its twin's.
        split = (
            f"validation split held out by the twin run `{results['scored_by_twin']}` (the "
            f"same recipe with a validation split); the released weights are a final fit on "
            f"all {tr['train_images']:,} training images, these included"
        )
    minutes = tr["wall_time_s"] / 60 if tr["wall_time_s"] else float("nan")
    # A final fit ships its own TFLite files; their accuracy is measured on the twin's.
    shipped = results.get("tflite_release_size_kb") or {
        p: v["size_kb"] for p, v in results["tflite"].items()
    }
    sizes = ", ".join(f"{p} {kb:,} KB" for p, kb in shipped.items())
    accuracies = ", ".join(f"{p} {v['accuracy']:.2%}" for p, v in results["tflite"].items())
    # metrics.json holds null for top-5 with five classes or fewer (every image is in its top 5).
    top5 = "n/a" if ev["top5_accuracy"] is None else f"{ev['top5_accuracy']:.2%}"
    of_twin = bool(results.get("scored_by_twin"))
    files = "the twin's files, " if of_twin else ""
    rows = [
        (
            "model",
            f"`{results['variant']}` ({results['model']}), input {'x'.join(map(str, results['input_shape'][:2]))}",
        ),
        ("parameters (trainable)", f"{results['trainable_parameters']:,}"),
        ("multiply-accumulates per image", f"{results['macs_per_image'] / 1e6:.1f} M"),
        (
            "accuracy / top-5",
            f"**{ev['accuracy']:.2%}** / {top5} on {ev['num_images']:,} images: {split}",
        ),
        (
            "accuracy with flip test-time augmentation",
            f"{results['evaluation_flip_tta']['accuracy']:.2%} (prediction averaged over each image and "
            "its mirror image: two forward passes, `evaluate --flip-tta`)",
        ),
        (
            "accuracy with flip and shift test-time augmentation",
            f"{results['evaluation_flip_shift_tta']['accuracy']:.2%} (the image and its one-pixel "
            "moves, each also mirrored: ten forward passes, `evaluate --flip-tta --shift-tta`)",
        ),
        (
            "macro F1 / calibration error",
            f"{ev['macro_f1']:.4f} / ECE {ev['expected_calibration_error']:.3f}",
        ),
        (
            "training",
            f"preset `{results['preset']}`, {tr['epochs']} epochs on {tr['train_images']:,} "
            f"images, seed {results['seed']}: {minutes:.0f} min wall time (`fit`"
            f"{'' if results.get('scored_by_twin') else ', validation included'}) on "
            f"{tr['hardware']}, {tr['backend']} backend",
        ),
        ("TFLite size", sizes),
        (f"TFLite accuracy ({files}same images)", accuracies),
    ]
    data_arg = f" --data-dir {data_dir}" if data_dir else ""
    config = json.loads((run_dir / "config.json").read_text())
    command, unexpressed = train_command(config, data_dir, run_dir.as_posix())
    lines = [
        f"| released model | `{out_dir.name}` |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        f"Files: [`{out_dir.as_posix()}/`]({out_dir.as_posix()}/) (checkpoint, metadata, history, "
        f"curves, evaluation report{' of the twin' if of_twin else ''}). Reproduce:",
        "",
        "```bash",
        command,
        f"python tools/release_checkpoint.py {run_dir.as_posix()}{data_arg}"
        + ("" if out_dir == Path(DEFAULT_OUT) else f" --out {out_dir.as_posix()}")
        + (f" --twin {results['scored_by_twin']}" if results.get("scored_by_twin") else ""),
        "```",
        "",
    ]
    if results.get("scored_by_twin"):
        twin = results["scored_by_twin"]
        lines[-1:-1] = [
            f"The twin is released first; its own table and commands: [`{twin}/results.md`]"
            f"({twin}/results.md)."
        ]
    if unexpressed:
        settings = ", ".join(f"`{k}={v}`" for k, v in unexpressed.items())
        lines[-1:-1] = [
            f"The run also changed {settings} in Python (see `config.json`); no flag sets them."
        ]
    return "\n".join(lines)


def scored_on(results):
    """Which images a release's scores come from, in a few words."""
    evaluated = results["evaluation"]
    if results.get("scored_by_twin"):
        return (
            f"held out by the twin run `{results['scored_by_twin']}`, the same recipe with a "
            "validation split; the released weights trained on them too"
        )
    if evaluated["split"] == "test":
        return "the official CIFAR-10 test split"
    return "the validation split held out from the training images, never trained on"


def write_card(release_dir):
    """Write a release folder's MODEL_CARD.md (`card_text`); returns its path."""
    return model_card.write(release_dir, card_text(release_dir))


def card_text(release_dir):
    """The model card of a release folder, from its files: metadata.json, results.json (the
    scores), report/confused_pairs.csv and the commands of results.md."""
    import csv

    release_dir = Path(release_dir)
    metadata = training.RunMetadata.read(release_dir)
    results = json.loads((release_dir / "results.json").read_text())
    scores = {**results["evaluation"], "source": scored_on(results)}
    pairs = []
    if (release_dir / "report" / "confused_pairs.csv").exists():
        with open(release_dir / "report" / "confused_pairs.csv", newline="") as file:
            rows = list(csv.DictReader(file))[:3]
        pairs = [(row["true"], row["predicted"], int(row["count"])) for row in rows]
    markdown = (release_dir / "results.md").read_text()
    command = re.search(r"```bash\n(.*?)\n```", markdown, re.S)
    return model_card.render(
        metadata,
        evaluation=scores,
        confused_pairs=pairs,
        command=command.group(1) if command else None,
        title=release_dir.name,
    )


def update_readme(path, table):
    path = Path(path)
    text = path.read_text()
    start, end = MARKERS
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} markers to replace.")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _: f"{start}\n{table}{end}", text))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run_dir",
        help="a finished training run (model.keras, metadata.json, history.csv); with "
        "--card-only, a release folder",
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="only (re)write MODEL_CARD.md of the release folder RUN_DIR from its metadata.json, "
        "results.json, report/ and results.md",
    )
    parser.add_argument(
        "--data-dir", help="dataset folder; default $MOBILEVIT_DATA_DIR, else CIFAR-10 download"
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help="release folder (default: the released preset's)"
    )
    parser.add_argument(
        "--precisions", nargs="+", default=list(export.PRECISIONS), choices=list(export.PRECISIONS)
    )
    parser.add_argument(
        "--log", help="the training command's console log, kept as training_log.txt"
    )
    parser.add_argument(
        "--twin",
        help="for a final fit (validation_split=0) without a test split: the same recipe's run "
        "with a validation split, whose held-out score the release reports",
    )
    parser.add_argument(
        "--readme",
        default="README.md",
        help="README whose reference-results section to rewrite ('' to skip)",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.card_only:
        print(f"written {write_card(args.run_dir)}")
        return
    try:
        release(
            args.run_dir,
            args.out,
            args.data_dir,
            tuple(args.precisions),
            args.readme or None,
            args.log,
            args.twin,
        )
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
