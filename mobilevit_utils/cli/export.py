"""`export`: a .keras model to TFLite, each file checked against Keras (and scored on images
when asked) by `export.export_and_check`, as tools/release_checkpoint.py does. The files are
named after the run; int8 is calibrated on the images the model was trained on (its run's
metadata names them) unless --calibration-data says otherwise, and nothing is downloaded."""

from __future__ import annotations

import os
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
        help="precision to export: fp32 (full precision), fp16 (about half the size), dynamic "
        "(int8 weights, float activations: about a third), int8 (int8 weights and activations, "
        "calibrated on images: for integer-only accelerators) or all (default: all four)",
    )
    p.add_argument(
        "--out", required=True, help="output folder for .tflite files and their .json metadata"
    )
    p.add_argument(
        "--name",
        help="the files' name, NAME_<precision>.tflite and NAME_<precision>.json; default the "
        "run's folder (runs/flowers/model.keras: flowers), else the model file's name",
    )
    p.add_argument(
        "--calibration-data",
        help="image folder (train/<class>/* or <class>/*) to calibrate int8 on; default: the "
        "images the model was trained on (the training split of the folder its run's "
        "metadata.json names); nothing is ever downloaded",
    )
    p.add_argument(
        "--calibration-samples",
        type=int,
        default=DEFAULT_CALIBRATION_SAMPLES,
        metavar="N",
        help="images int8 calibration measures the activations' ranges on (more: slower "
        "export, ranges closer to typical photos); default %(default)s",
    )
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
    add_skip_flag(p, follows_run=True)
    p.set_defaults(handler=run)


def _check_arguments(args):
    check_positive("--calibration-samples", args.calibration_samples)
    out = Path(args.out)
    check_output_folder("--out", out)
    if Path(args.model).suffix != ".keras":
        raise CLIError(f"--model must be a .keras file, got {Path(args.model).name}")
    if args.name is not None and (not args.name or Path(args.name).name != args.name):
        raise CLIError(f"--name must be a file name without folders, got {args.name!r}")
    existing = sorted(out.glob("*.tflite")) if out.is_dir() else []
    if existing and not args.overwrite:
        raise CLIError(
            f"{out} already holds {len(existing)} TFLite model(s) ({existing[0].name}...); pass "
            "--overwrite to replace them, or choose another --out folder"
        )
    check_input_folder("--calibration-data", args.calibration_data)
    check_input_folder("--eval-data", args.eval_data)


def file_name(args):
    """What the files are named after: --name, else the run (`runs/flowers/model.keras` gives
    flowers_int8.tflite), else the model file (`mine.keras` gives mine_int8.tflite)."""
    if args.name:
        return args.name
    path = Path(args.model).resolve()
    return path.parent.name if path.stem == "model" else path.stem


def calibration_images(args, metadata, image_size):
    """Images for int8 calibration: a random draw from --calibration-data, else from the images
    the model was trained on (`training_images`); never a download."""
    from mobilevit_utils import data as data_lib
    from mobilevit_utils import export
    from mobilevit_utils.run_files import RunMetadata

    if not args.calibration_data:
        return training_images(args, metadata)
    # Every image of the folder may serve: calibration needs no labels, and a few images per
    # class are enough.
    try:
        source = data_lib.load_dataset(
            args.calibration_data,
            validation_split=0,
            image_size=image_size,
            max_per_class=max(1, args.calibration_samples // 2),
            on_error=on_error(args, metadata, args.calibration_data),
            **RunMetadata.from_dict(metadata).resize_options,
        )
    except data_lib.DataUnavailableError:
        raise CLIError(NO_CALIBRATION.format(why="the calibration data cannot be read")) from None
    return export.calibration_sample(source.x_train, args.calibration_samples)


NO_CALIBRATION = (
    "int8 calibration needs images like the model's inputs, and {why}; pass --calibration-data "
    "FOLDER (class folders of typical images), or export without int8: --quantization fp32 "
    "(or fp16, dynamic)"
)
CIFAR10_DOWNLOAD = "keras.datasets.cifar10"


def _cifar10_in_keras_cache():
    """Whether Keras' CIFAR-10 download is already in its cache (`~/.keras/datasets`)."""
    homes = [os.environ.get("KERAS_HOME"), Path.home() / ".keras", "/tmp/.keras"]
    return any(
        home and (Path(home) / "datasets" / "cifar-10-batches-py-target").is_dir() for home in homes
    )


def training_folder(metadata):
    """The folder the model was trained on, from its run's metadata: the absolute `data_dir`
    a run records, else the `data_source` that older runs recorded relative to the repository
    or the working directory; None for CIFAR-10's download, when Keras has it cached. Raises a
    one-line `CLIError` that says what to pass when there is none."""
    from mobilevit_utils import environment

    if metadata.data_source == CIFAR10_DOWNLOAD and not metadata.data_dir:
        if not _cifar10_in_keras_cache():
            raise CLIError(
                NO_CALIBRATION.format(
                    why="it was trained on CIFAR-10's download, which is not in Keras' cache here"
                )
            )
        return None
    if metadata.data_dir:
        if Path(metadata.data_dir).is_dir():
            return Path(metadata.data_dir)
        why = f"its training folder {metadata.data_dir} is gone"
        raise CLIError(NO_CALIBRATION.format(why=why))
    if metadata.data_source:
        for base in (environment.project_root(), Path.cwd()):
            if base is not None and (base / metadata.data_source).is_dir():
                return base / metadata.data_source
    why = (
        f"its training images ({metadata.data_source}) are not found"
        if metadata.data_source
        else "the model has no run metadata (metadata.json beside it) naming its training images"
    )
    raise CLIError(NO_CALIBRATION.format(why=why))


def training_images(args, metadata):
    """A random draw from the training split of the model's own run (same folder, seed,
    validation share and subset; the images it held out stay unseen), fitted to the input as
    training fitted them."""
    from mobilevit_utils import data as data_lib
    from mobilevit_utils import evaluation, export
    from mobilevit_utils.run_files import RunMetadata

    run = RunMetadata.from_dict(metadata)
    folder = training_folder(run)
    try:
        if folder is None:
            images = data_lib.load_cifar10_download(
                run.validation_split, run.seed, run.max_per_class
            ).x_train
        else:
            skip = on_error(args, metadata, folder)  # as training read them
            images = evaluation.training_dataset(run, folder, skip).x_train
    except (data_lib.DataError, ValueError) as error:
        where = folder or "CIFAR-10"
        raise CLIError(f"int8 calibration on the training images of {where}: {error}") from None
    sample = export.calibration_sample(images, args.calibration_samples)
    print(
        f"int8 calibration: {len(sample)} of the {len(images):,} training images of "
        f"{folder or 'CIFAR-10'} (--calibration-data chooses others)"
    )
    return sample


# What an app does to a photo before the model sees it, as training did (`RunMetadata.resize_mode`),
# with the interpolation training resized with (`data.INTERPOLATION`).
RESIZE_STEPS = {
    "stretch": "resize the whole image to {height}x{width} (height x width), stretching it, "
    "{interpolation}",
    "crop": "crop the largest centred window of {height}:{width} proportions, then resize it to "
    "{height}x{width} (height x width), {interpolation}",
    "pad": "resize the whole image to fit {height}x{width} (height x width), keeping its "
    "proportions, {interpolation}, and fill the rest with black",
}


def sidecar_extras(name, metadata, evaluation=None):
    """What every sidecar adds to the export's own keys: the files' name, how an image is
    fitted to the input (as training did), and the model card's essentials (scored by
    `evaluation`, default the run's own validation)."""
    from mobilevit_utils import model_card
    from mobilevit_utils.data import INTERPOLATION
    from mobilevit_utils.run_files import RunMetadata

    run = RunMetadata.from_dict(metadata)
    height, width = run.image_size
    steps = RESIZE_STEPS[run.resize_mode]
    return {
        "name": name,
        "resize": steps.format(height=height, width=width, interpolation=INTERPOLATION),
        "interpolation": INTERPOLATION,
        **run.resize_options,
        "model_card": model_card.essentials(run, evaluation or model_card.validation_scores(run)),
    }


def run(args):
    from mobilevit_utils import evaluation, export, inference
    from mobilevit_utils.run_files import RunMetadata

    _check_arguments(args)
    model, metadata = inference.load_classifier(args.model)
    precisions = export.PRECISIONS if args.quantization == "all" else (args.quantization,)
    calibration = None
    if "int8" in precisions:
        calibration = calibration_images(args, metadata, tuple(model.input_shape[1:3]))
    eval_data = None
    if args.eval_data:  # before writing anything: a problem with it refuses the whole command
        (x, y, names, _), split = evaluation.held_out_data(
            metadata, args.eval_data, on_error=on_error(args, metadata, args.eval_data)
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
        name=file_name(args),
        extra_metadata=sidecar_extras(file_name(args), metadata),
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
    for precision in [p for p, check in checks.items() if not check.ok]:
        print(failed_parity_advice(precision))
    print(f"written to {args.out}")


def failed_parity_advice(precision):
    """What a FAILED parity row means, and what to do: the file is written, but it answers
    differently from the Keras model too often to ship."""
    if precision == "fp32":
        return (
            "fp32 FAILED: its logits differ from the Keras model's beyond rounding, which "
            "points to a conversion fault; please report it with the model."
        )
    return (
        f"{precision} FAILED: its top class differs from the Keras model's on more than 5 % of "
        "the images checked; don't ship it: ship fp16 or dynamic, or calibrate int8 on more "
        "or more typical images (--calibration-data, --calibration-samples)."
    )
