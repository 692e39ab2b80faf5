"""Command line: `python -m mobilevit_utils {train,evaluate,predict,export} ...`.

Errors a user can fix (missing data, bad arguments, unwritable folders) print one line and exit
with status 2; nothing prints a traceback unless MOBILEVIT_VERBOSE=1.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


class CLIError(Exception):
    """A problem the user can fix; printed as one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors in one line, with where to look, instead of the usage block."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


# The recipe fields `train` can override, with their flags.
TRAIN_OVERRIDES = {
    "model": "--model",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "learning_rate": "--lr",
    "augmentation": "--augmentation",
    "label_smoothing": "--label-smoothing",
    "class_weight": "--class-weight",
    "ema": "--ema",
    "weight_averaging": "--weight-averaging",
    "mixed_precision": "--mixed-precision",
    "jit_compile": "--jit-compile",
    "max_per_class": "--max-per-class",
    "validation_split": "--validation-split",
    "seed": "--seed",
    "init_from": "--init-from",
    "head_epochs": "--head-epochs",
}


def _flag_words(flag, value):
    """`--flag value`, or `--flag` / `--no-flag` for on/off fields."""
    if isinstance(value, bool) and flag != "--jit-compile":
        return flag if value else f"--no-{flag[2:]}"
    return f"{flag} {str(value).lower() if isinstance(value, bool) else value}"


def train_command(config, data_dir=None, out=None):
    """The `train` command line that reproduces a run's resolved recipe (its config.json, a dict),
    and the recipe fields no flag can set (differences from the preset; empty when none)."""
    from mobilevit_utils import training

    preset = training.get_recipe(config["name"]).to_dict()
    # Runs recorded before a field existed ran with its default.
    config = {**training.TrainConfig().to_dict(), **config}
    words = ["python -m mobilevit_utils train", f"--preset {config['name']}"]
    for field, flag in TRAIN_OVERRIDES.items():
        if field == "seed" or config[field] != preset[field]:
            words.append(_flag_words(flag, config[field]))
    if data_dir:
        words.append(f"--data-dir {data_dir}")
    if out:
        words.append(f"--out {out}")
    unexpressed = {
        k: v
        for k, v in config.items()
        if k != "name" and k not in TRAIN_OVERRIDES and v != preset.get(k)
    }
    return " ".join(words), unexpressed


def _add_train(sub):
    from mobilevit_utils import augmentation, models, training

    p = sub.add_parser(
        "train",
        help="train a model and keep the best checkpoint",
        description="Train MobileViT with a recipe preset; prints one line per epoch and the "
        "path of the best checkpoint (OUT/model.keras).",
    )
    p.add_argument(
        "--preset",
        "--recipe",
        default="cpu",
        choices=sorted(training.RECIPES),
        help="recipe: quick (seconds, CI), cpu (<= 2 h on 2 cores), gpu (full recipe), "
        "finetune (a trained model on your own images); default %(default)s",
    )
    p.add_argument(
        "--model",
        default=None,
        choices=sorted(models.MODEL_CONFIGS),
        help="variant (default: the preset's, xxs_cifar)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="dataset folder (train/<class>/*.jpg, or the CIFAR-10 JPEG archive); "
        "default $MOBILEVIT_DATA_DIR, else download CIFAR-10",
    )
    p.add_argument("--out", required=True, help="run folder for checkpoint, history and metadata")
    p.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the preset's peak learning rate")
    p.add_argument(
        "--augmentation",
        help=f"override the preset's augmentation policy: {', '.join(augmentation.POLICIES)}",
    )
    p.add_argument("--label-smoothing", type=float, help="override the preset's label smoothing")
    p.add_argument(
        "--class-weight",
        choices=["balanced"],
        help="weigh each class's loss inversely to its number of images (imbalanced data)",
    )
    p.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="validate and keep an exponential moving average of the weights",
    )
    p.add_argument(
        "--weight-averaging",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="validate and keep an average of the weights whose decay warms up (no lag in "
        "short runs; BatchNorm statistics averaged too)",
    )
    p.add_argument(
        "--mixed-precision",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="float16 compute with float32 weights and logits (GPUs; slow on CPUs)",
    )
    p.add_argument(
        "--jit-compile",
        type=_jit_value,
        metavar="{auto,true,false}",
        help="XLA (TensorFlow) / torch.compile (PyTorch); auto: XLA on GPUs only",
    )
    p.add_argument("--max-per-class", type=int, help="train on at most this many images per class")
    p.add_argument(
        "--validation-split",
        type=float,
        help="share of the images held out for validation (default 0.1); 0: a final fit on "
        "every image, keeping the last epoch's weights",
    )
    p.add_argument("--seed", type=int, help="random seed (default: the preset's, 42)")
    p.add_argument(
        "--init-from",
        metavar="SOURCE",
        help="fine-tune: start from a preset (mobilevit_xxs_cifar10, apple/mobilevit-xx-small, "
        "...) or a .keras file, keeping its input size and preprocessing, with a new head for "
        "the data's classes; 'none' trains from scratch (default: the preset's; finetune "
        "starts from mobilevit_xxs_cifar10)",
    )
    p.add_argument(
        "--head-epochs",
        type=int,
        help="with --init-from: epochs of the new head alone (backbone frozen) before --epochs "
        "of every layer (finetune: 3)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="resize every image to this size (needed when the images differ in size); "
        "recorded in the metadata, so evaluate, predict and export resize the same way",
    )
    _add_skip_flag(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last finished epoch",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.set_defaults(handler=_train)


def _add_skip_flag(p):
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out image files that cannot be read (each named in one line) instead of "
        "stopping",
    )


def _on_error(args):
    return "skip" if getattr(args, "skip_bad_images", False) else "raise"


def _check_folder_path(flag, path):
    """Refuse, before any work, an output folder that is a file or sits inside one."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise CLIError(f"{flag} {path}: {part} is a file; choose a folder path")
        if part.exists():
            return


def _check_positive(name, value, minimum=1):
    if value is not None and value < minimum:
        raise CLIError(f"{name} must be at least {minimum}, got {value}")


def _jit_value(text):
    values = {"auto": "auto", "true": True, "false": False}
    if text.lower() not in values:
        raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")
    return values[text.lower()]


def train_overrides(args):
    """The recipe fields a parsed `train` command sets (flags left out keep the preset's)."""
    overrides = {
        field: getattr(args, flag[2:].replace("-", "_")) for field, flag in TRAIN_OVERRIDES.items()
    }
    return {field: value for field, value in overrides.items() if value is not None}


def _train(args):
    from mobilevit_utils import augmentation, training

    overrides = train_overrides(args)
    if str(overrides.get("init_from", "")).lower() == "none":
        overrides["init_from"] = None
    if "augmentation" in overrides and overrides["augmentation"] not in augmentation.POLICIES:
        raise CLIError(
            f"--augmentation must be one of {list(augmentation.POLICIES)}, "
            f"got {overrides['augmentation']!r}"
        )
    preset = training.get_recipe(args.preset)
    config = dataclasses.replace(preset, **overrides)
    for field, need, value in config.problems():
        flag = TRAIN_OVERRIDES.get(field, field)
        raise CLIError(f"{flag} must be {need}, got {value}")
    if config.init_from and "model" in overrides:
        raise CLIError(
            "--model and --init-from both choose the layout: fine-tuning keeps the source's "
            "(drop --model, or pass --init-from none to train --model from scratch)"
        )
    if "head_epochs" in overrides and not config.init_from:
        raise CLIError("--head-epochs needs --init-from: only a fine-tuned model has a new head")
    if args.image_size and min(args.image_size) < 32:  # the model's smallest input
        raise CLIError(
            f"--image-size must be at least 32 32, got {args.image_size[0]} {args.image_size[1]}"
        )
    result = training.train(
        args.preset,
        run_dir=args.out,
        data_dir=args.data_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        image_size=tuple(args.image_size) if args.image_size else None,
        on_error=_on_error(args),
        **overrides,
    )
    print(f"best checkpoint: {result['checkpoint']}")


def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="accuracy, F1, confusion matrices of a saved model",
        description="Evaluate a .keras or .tflite model; prints accuracy=... and "
        "macro_f1=... and writes the report files to --out.",
    )
    p.add_argument("--model", required=True, help="model file (.keras or .tflite)")
    p.add_argument(
        "--data-dir",
        help="class-per-folder tree DIR/<split>/<class>/*; default the "
        "project's dataset ($MOBILEVIT_DATA_DIR or CIFAR-10)",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "val"],
        help="split to evaluate; where the data has no test/ folder (the CIFAR-10 copy here), "
        "both read the validation split that training held out, and the output says so",
    )
    _add_skip_flag(p)
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument(
        "--flip-tta",
        action="store_true",
        help="average the predictions for each image and its mirror image",
    )
    p.add_argument(
        "--shift-tta",
        action="store_true",
        help="also average over one-pixel moves in four directions (5x the passes)",
    )
    p.set_defaults(handler=_evaluate_command)


def _evaluate_command(args):
    from mobilevit_utils import evaluation, inference

    _check_folder_path("--out", args.out)
    model, metadata = inference.load_classifier(args.model)
    x, y, class_names, source = evaluation.evaluation_data(
        metadata, args.data_dir, args.split, on_error=_on_error(args)
    )
    if args.split == "test" and "(val split)" in source:
        if metadata.get("validation_split", 0.1) == 0:
            raise CLIError(
                "the data has no test/ folder and this model trained on every image "
                "(validation_split 0): there is nothing it has not seen; pass --data-dir with a "
                "test/ folder"
            )
        print("no test split in the data: evaluating the validation split training held out")
    report = evaluation.evaluate(model, x, y, class_names, flip=args.flip_tta, shift=args.shift_tta)
    views = [name for name, on in (("flip", args.flip_tta), ("shift", args.shift_tta)) if on]
    title = Path(args.model).name + (f" ({' + '.join(views)} TTA)" if views else "")
    evaluation.write_report(report, args.out, images=x, title=title)
    print(f"evaluated {title} on {len(y)} images from {source}")
    print(f"accuracy={report.accuracy:.4f}")
    if not math.isnan(report.top5_accuracy):  # with 5 classes or fewer it is always 1
        print(f"top5_accuracy={report.top5_accuracy:.4f}")
    print(f"macro_f1={report.macro_f1:.4f}")
    print(f"report: {args.out}")


def _add_predict(sub):
    p = sub.add_parser(
        "predict",
        help="top-k labels for image files and folders",
        description="Predict the top-k classes of image files, and of every image in folders "
        "(searched recursively). Prints a table, or writes --output results.csv / .jsonl. A "
        "file that cannot be read is named on stderr and the rest are still predicted; the "
        "exit status is then 1.",
    )
    p.add_argument("--model", required=True, help="model file (.keras or .tflite)")
    p.add_argument("--top-k", type=int, default=3, help="classes per image (default 3)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument(
        "--output",
        help="write the results to this .csv or .jsonl file instead of the terminal table",
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    p.set_defaults(handler=_predict_command)


def image_paths(arguments):
    """Image files named by `arguments` (files, or folders searched recursively, hidden names
    left out), in order, and the arguments that name nothing."""
    from mobilevit_utils import data as data_lib

    paths, missing = [], []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(
                f
                for f in path.rglob("*")
                if f.suffix.lower() in data_lib.IMAGE_EXTENSIONS
                and not f.is_dir()
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
            )
            if not found:
                missing.append(f"{path}: no image files (extensions {data_lib.IMAGE_EXTENSIONS})")
            paths.extend(found)
        elif path.exists() or path.is_symlink():
            paths.append(path)
        else:
            missing.append(f"{path}: no such file or folder")
    return paths, missing


def _predict_command(args):
    import csv
    import json

    import numpy as np

    from mobilevit_utils import data as data_lib
    from mobilevit_utils import inference

    _check_positive("--top-k", args.top_k)
    _check_positive("--batch-size", args.batch_size)
    output = Path(args.output) if args.output else None
    if output is not None and output.suffix not in (".csv", ".jsonl"):
        raise CLIError(f"--output must end in .csv or .jsonl, got {output.name}")
    if output is not None:
        if output.is_dir():
            raise CLIError(f"--output {output} is a folder; name a .csv or .jsonl file")
        _check_folder_path("--output", output.parent)
    paths, failures = image_paths(args.images)
    total = len(paths) + len(failures)
    if not paths:
        raise CLIError(f"no images to predict: {failures[0]}")
    model, metadata = inference.load_classifier(args.model)
    class_names = metadata.get("class_names")
    if not class_names:
        raise CLIError(
            "the model has no class names in its metadata (metadata.json beside the .keras "
            "file, or <model>.json beside a .tflite file); predictions would be unlabelled"
        )
    size = tuple(metadata["input_shape"][:2])
    k = min(args.top_k, len(class_names))
    results = []
    for start in range(0, len(paths), args.batch_size):
        batch = paths[start : start + args.batch_size]
        decoded = []
        for path in batch:  # one by one: a bad file is reported and the rest go on
            try:
                decoded.append((path, data_lib.decode_images([path], size, workers=1)[0][0]))
            except data_lib.BadImageError as error:
                failures.append(f"{path}: it {error.reason}")
            except data_lib.DataError as error:
                failures.append(f"{path}: {error}")
        if not decoded:
            continue
        probabilities = inference.predict_proba(model, np.stack([image for _, image in decoded]))
        for (path, _), row in zip(decoded, probabilities):
            top = np.argsort(-row)[:k]
            results.append((str(path), [(class_names[i], float(row[i])) for i in top]))
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if output is None:
        for path, top in results:
            print(f"{path}: " + ", ".join(f"{name} {p:.3f}" for name, p in top))
    elif output.suffix == ".csv":
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", newline="") as f:
            writer = csv.writer(f)
            header = ["path"]
            for rank in range(1, k + 1):
                header += [f"class_{rank}", f"probability_{rank}"]
            writer.writerow(header)
            for path, top in results:
                writer.writerow([path, *(v for name, p in top for v in (name, f"{p:.6f}"))])
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w") as f:
            for path, top in results:
                record = {"path": path, "top": [{"class": n, "probability": p} for n, p in top]}
                f.write(json.dumps(record) + "\n")
    if output is not None:
        print(f"{len(results)} image(s) predicted: {output}")
    if failures:
        print(f"error: {len(failures)} of {total} input(s) failed", file=sys.stderr)
        return 1
    return 0


def _add_export(sub):
    from mobilevit_utils.export import DEFAULT_CALIBRATION_SAMPLES, PRECISIONS

    p = sub.add_parser(
        "export",
        help="convert a .keras model to TFLite",
        description="Convert a .keras model to TFLite in one or all precisions, "
        "check each against Keras, and print a size/parity/accuracy table.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="the .keras model (its run's metadata.json gives class names)",
    )
    p.add_argument(
        "--quantization",
        default="all",
        choices=[*PRECISIONS, "all"],
        help="precision to export (default: all four)",
    )
    p.add_argument(
        "--out", required=True, help="output folder for .tflite files and their .json metadata"
    )
    p.add_argument(
        "--calibration-data",
        help="image folder (train/<class>/* or <class>/*) for int8 "
        "calibration; default the project's dataset",
    )
    p.add_argument("--calibration-samples", type=int, default=DEFAULT_CALIBRATION_SAMPLES)
    p.add_argument(
        "--eval-data",
        help="image folder to report accuracy on (its test/ split, else the "
        "validation split training held out); "
        "default: none (parity only)",
    )
    p.add_argument(
        "--dynamic-batch", action="store_true", help="dynamic batch size instead of batch 1"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace .tflite models already in --out"
    )
    _add_skip_flag(p)
    p.set_defaults(handler=_export_command)


def _export_command(args):
    import numpy as np

    from mobilevit_utils import data as data_lib
    from mobilevit_utils import evaluation, export, inference

    _check_positive("--calibration-samples", args.calibration_samples)
    out = Path(args.out)
    _check_folder_path("--out", out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; export writes a folder: choose another path")
    if Path(args.model).suffix != ".keras":
        raise CLIError(f"--model must be a .keras file, got {Path(args.model).name}")
    existing = sorted(out.glob("*.tflite")) if out.is_dir() else []
    if existing and not args.overwrite:
        raise CLIError(
            f"{out} already holds {len(existing)} TFLite model(s) ({existing[0].name}...); pass "
            "--overwrite to replace them, or choose another --out folder"
        )
    model, metadata = inference.load_classifier(args.model)
    precisions = export.PRECISIONS if args.quantization == "all" else (args.quantization,)
    size = tuple(model.input_shape[1:3])
    calibration = None
    if "int8" in precisions:
        try:
            source = data_lib.load_dataset(
                args.calibration_data,
                image_size=size,
                max_per_class=max(1, args.calibration_samples // 2),
                on_error=_on_error(args),
            )
        except data_lib.DataUnavailableError:
            raise CLIError(
                "int8 calibration needs images and CIFAR-10 cannot be downloaded here; pass "
                "--calibration-data FOLDER (class folders of typical inputs), or "
                "--quantization fp32/fp16/dynamic, which need none"
            ) from None
        calibration = export.calibration_sample(source.x_train, args.calibration_samples)
    evaluation_set = None
    if args.eval_data:  # before writing anything: a problem with it refuses the whole command
        evaluation_set, split = evaluation.held_out_data(
            metadata, args.eval_data, on_error=_on_error(args)
        )
    paths = export.export(
        model,
        args.out,
        precisions,
        metadata.get("class_names"),
        calibration,
        args.calibration_samples,
        batch_one=not args.dynamic_batch,
    )
    check_images = (
        calibration[:64]
        if calibration is not None
        else np.random.default_rng(0)
        .uniform(0, 255, size=(16, *model.input_shape[1:]))
        .astype("float32")
    )
    if evaluation_set is not None:
        print(f"accuracy on the {split} split of {args.eval_data}")
    print(f"{'precision':<10}{'size KB':>10}  {'parity':<34}{'accuracy':>9}")
    for precision, path in paths.items():
        result = export.parity(model, path, check_images)
        detail = (
            f"max|diff| {result['max_abs_diff']:.1e}"
            if precision == "fp32"
            else f"top-1 agreement {result['top1_agreement']:.1%}"
        )
        status = "ok" if result["ok"] else "FAILED"
        accuracy = ""
        if evaluation_set is not None:
            x, y, names, _ = evaluation_set
            accuracy = (
                f"{evaluation.evaluate(inference.TFLiteModel(path), x, y, names).accuracy:.4f}"
            )
        print(
            f"{precision:<10}{path.stat().st_size / 1024:>10.0f}  {status + ', ' + detail:<34}{accuracy:>9}"
        )
    print(f"written to {args.out}")


def build_parser():
    parser = OneLineParser(
        prog="python -m mobilevit_utils",
        description="MobileViT for Keras 3: train, evaluate, predict and export image classifiers.",
        epilog="Set KERAS_BACKEND=jax|torch|tensorflow to choose the backend.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_evaluate, _add_predict, _add_export):
        add(sub)
    return parser


def _user_errors():
    from mobilevit_utils import data, training

    return (
        CLIError,
        data.DataError,
        training.RunExistsError,
        PermissionError,
        FileNotFoundError,
        ValueError,
        ImportError,  # a hub preset without transformers installed
        OSError,  # unwritable or odd paths, and a hub preset offline (ConnectionError)
    )


class _PlainStderr(logging.Handler):
    """The message alone, on whatever sys.stderr is at the time."""

    def emit(self, record):
        print(record.getMessage(), file=sys.stderr)


def main(argv=None):
    args = build_parser().parse_args(argv)
    # The library's warnings (a skipped image file, say), one plain line each on stderr.
    logger = logging.getLogger("mobilevit_utils")
    if not logger.handlers:
        logger.addHandler(_PlainStderr())
        logger.propagate = False
    from mobilevit_utils import environment

    environment.start_backend_quietly()
    try:
        status = args.handler(args)
    except KeyboardInterrupt:
        resume = "; rerun with --resume to continue from the last finished epoch"
        print(f"interrupted{resume if args.command == 'train' else ''}", file=sys.stderr)
        return 130
    except _user_errors() as error:
        if os.environ.get("MOBILEVIT_VERBOSE"):
            raise
        message = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
