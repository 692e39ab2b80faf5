"""`export`: a .keras model to TFLite, each file checked against Keras (and scored on images
when asked) by `export.export_and_check`, as tools/release_checkpoint.py does."""

from __future__ import annotations

from pathlib import Path

from mobilevit_utils.cli.common import (
    CLIError,
    add_skip_flag,
    check_input_folder,
    check_output_folder,
    check_positive,
    on_error,
)


def add_parser(sub):
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
    add_skip_flag(p)
    p.set_defaults(handler=run)


def _check_arguments(args):
    check_positive("--calibration-samples", args.calibration_samples)
    out = Path(args.out)
    check_output_folder("--out", out)
    if Path(args.model).suffix != ".keras":
        raise CLIError(f"--model must be a .keras file, got {Path(args.model).name}")
    existing = sorted(out.glob("*.tflite")) if out.is_dir() else []
    if existing and not args.overwrite:
        raise CLIError(
            f"{out} already holds {len(existing)} TFLite model(s) ({existing[0].name}...); pass "
            "--overwrite to replace them, or choose another --out folder"
        )
    check_input_folder("--calibration-data", args.calibration_data)
    check_input_folder("--eval-data", args.eval_data)


def calibration_images(args, image_size):
    """Images for int8 calibration: a random draw from every image of --calibration-data (no
    validation split: calibration needs no labels, and a few images per class are enough)."""
    from mobilevit_utils import data as data_lib
    from mobilevit_utils import export

    try:
        source = data_lib.load_dataset(
            args.calibration_data,
            validation_split=0,
            image_size=image_size,
            max_per_class=max(1, args.calibration_samples // 2),
            on_error=on_error(args),
        )
    except data_lib.DataUnavailableError:
        raise CLIError(
            "int8 calibration needs images and CIFAR-10 cannot be downloaded here; pass "
            "--calibration-data FOLDER (class folders of typical inputs), or "
            "--quantization fp32/fp16/dynamic, which need none"
        ) from None
    return export.calibration_sample(source.x_train, args.calibration_samples)


def run(args):
    from mobilevit_utils import evaluation, export, inference
    from mobilevit_utils.run_files import RunMetadata

    _check_arguments(args)
    model, metadata = inference.load_classifier(args.model)
    precisions = export.PRECISIONS if args.quantization == "all" else (args.quantization,)
    calibration = None
    if "int8" in precisions:
        calibration = calibration_images(args, tuple(model.input_shape[1:3]))
    eval_data = None
    if args.eval_data:  # before writing anything: a problem with it refuses the whole command
        (x, y, names, _), split = evaluation.held_out_data(
            metadata, args.eval_data, on_error=on_error(args)
        )
        eval_data = (x, y, names)
    checks = export.export_and_check(
        model,
        args.out,
        precisions,
        RunMetadata.from_dict(metadata).class_names,
        calibration,
        eval_data,
        num_calibration=args.calibration_samples,
        batch_one=not args.dynamic_batch,
    )
    if eval_data is not None:
        print(f"accuracy on the {split} split of {args.eval_data}")
    print(f"{'precision':<10}{'size KB':>10}  {'parity':<34}{'accuracy':>9}")
    for precision, check in checks.items():
        detail = (
            f"max|diff| {check.parity['max_abs_diff']:.1e}"
            if precision == "fp32"
            else f"top-1 agreement {check.parity['top1_agreement']:.1%}"
        )
        status = ("ok" if check.ok else "FAILED") + ", " + detail
        accuracy = f"{check.accuracy:.4f}" if check.accuracy is not None else ""
        print(f"{precision:<10}{check.size_kb:>10.0f}  {status:<34}{accuracy:>9}")
    print(f"written to {args.out}")
