"""Command line: `python -m mobilevit_utils {train,evaluate,predict,export} ...`.

Errors a user can fix (missing data, bad arguments, unwritable folders) print one line and exit
with status 2; nothing prints a traceback unless MOBILEVIT_VERBOSE=1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


class CLIError(Exception):
    """A problem the user can fix; printed as one line."""


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
        help="recipe: quick (seconds, CI), cpu (<= 2 h on 2 cores), gpu (full recipe); "
        "default %(default)s",
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
        "--resume",
        action="store_true",
        help="continue the run in --out from its last finished epoch",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.set_defaults(handler=_train)


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
    if "augmentation" in overrides and overrides["augmentation"] not in augmentation.POLICIES:
        raise CLIError(
            f"--augmentation must be one of {list(augmentation.POLICIES)}, "
            f"got {overrides['augmentation']!r}"
        )
    if not 0 <= overrides.get("validation_split", 0) < 1:
        raise CLIError(
            f"--validation-split must be at least 0 and below 1, got {overrides['validation_split']}"
        )
    for key in ("epochs", "batch_size", "max_per_class"):
        if key in overrides and overrides[key] < 1:
            raise CLIError(f"--{key.replace('_', '-')} must be at least 1, got {overrides[key]}")
    result = training.train(
        args.preset,
        run_dir=args.out,
        data_dir=args.data_dir,
        resume=args.resume,
        overwrite=args.overwrite,
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
        help="split to evaluate (test falls back to val where there is none)",
    )
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

    model, metadata = inference.load_classifier(args.model)
    x, y, class_names, source = evaluation.evaluation_data(metadata, args.data_dir, args.split)
    report = evaluation.evaluate(model, x, y, class_names, flip=args.flip_tta, shift=args.shift_tta)
    views = [name for name, on in (("flip", args.flip_tta), ("shift", args.shift_tta)) if on]
    title = Path(args.model).name + (f" ({' + '.join(views)} TTA)" if views else "")
    evaluation.write_report(report, args.out, images=x, title=title)
    print(f"evaluated {title} on {len(y)} images from {source}")
    print(f"accuracy={report.accuracy:.4f}")
    print(f"top5_accuracy={report.top5_accuracy:.4f}")
    print(f"macro_f1={report.macro_f1:.4f}")
    print(f"report: {args.out}")


def _add_predict(sub):
    p = sub.add_parser(
        "predict",
        help="top-k labels for image files",
        description="Print the top-k classes with probabilities for each image.",
    )
    p.add_argument("--model", required=True, help="model file (.keras or .tflite)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("images", nargs="+", help="image files")
    p.set_defaults(handler=_predict_command)


def _predict_command(args):
    import numpy as np

    from mobilevit_utils import data as data_lib
    from mobilevit_utils import inference

    model, metadata = inference.load_classifier(args.model)
    class_names = metadata.get("class_names")
    if not class_names:
        raise ValueError(
            "The model has no class names in its metadata; predictions would be unlabelled."
        )
    size = tuple(metadata["input_shape"][:2])
    images, kept, skipped = data_lib.decode_images(
        [Path(p) for p in args.images], size, on_error="raise"
    )
    probabilities = inference.predict_proba(model, images)
    for path, row in zip(args.images, probabilities):
        top = np.argsort(-row)[: args.top_k]
        print(f"{path}: " + ", ".join(f"{class_names[i]} {row[i]:.3f}" for i in top))


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
    p.set_defaults(handler=_export_command)


def _export_command(args):
    import numpy as np

    from mobilevit_utils import data as data_lib
    from mobilevit_utils import evaluation, export, inference

    model, metadata = inference.load_classifier(args.model)
    if Path(args.model).suffix != ".keras":
        raise ValueError(f"--model must be a .keras file, got {Path(args.model).name}.")
    precisions = export.PRECISIONS if args.quantization == "all" else (args.quantization,)
    size = tuple(model.input_shape[1:3])
    calibration = None
    if "int8" in precisions:
        source = data_lib.load_dataset(
            args.calibration_data,
            image_size=size,
            max_per_class=max(1, args.calibration_samples // 2),
        )
        calibration = export.calibration_sample(source.x_train, args.calibration_samples)
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
    evaluation_set = None
    if args.eval_data:
        evaluation_set, split = evaluation.held_out_data(metadata, args.eval_data)
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
    parser = argparse.ArgumentParser(
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
    )


def main(argv=None):
    args = build_parser().parse_args(argv)
    from mobilevit_utils import environment

    environment.start_backend_quietly()
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print(
            "interrupted; rerun with --resume to continue from the last finished epoch",
            file=sys.stderr,
        )
        return 130
    except _user_errors() as error:
        if os.environ.get("MOBILEVIT_VERBOSE"):
            raise
        message = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
