"""`evaluate`: accuracy, F1 and the report files of a saved model on a split of a dataset."""

from __future__ import annotations

import math
from pathlib import Path

from mobilevit_utils.cli.common import (
    CLIError,
    add_skip_flag,
    check_input_folder,
    check_output_folder,
    check_outside_data,
    on_error,
)


def add_parser(sub):
    p = sub.add_parser(
        "evaluate",
        help="accuracy, F1, confusion matrices of a saved model",
        description="Evaluate a .keras or .tflite model; prints accuracy=... and "
        "macro_f1=... and writes the report files and the model card with these scores "
        "(MODEL_CARD.md) to --out.",
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
    add_skip_flag(p, follows_run=True)
    p.add_argument("--out", required=True, help="report folder (and its MODEL_CARD.md)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the report files (and MODEL_CARD.md) already in --out",
    )
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
    p.set_defaults(handler=run)


def run(args):
    from mobilevit_utils import evaluation, inference, model_card
    from mobilevit_utils.run_files import RunMetadata

    check_output_folder("--out", args.out)
    check_outside_data(args.out, args.data_dir, "the report would be written into the data")
    check_input_folder("--data-dir", args.data_dir, "<split>/<class>/ images")
    existing = [name for name in evaluation.REPORT_FILES if (Path(args.out) / name).exists()]
    if existing and not args.overwrite:
        raise CLIError(
            f"--out {args.out} already holds {', '.join(existing)}: pass --overwrite to "
            "replace them, or choose another --out folder"
        )
    model, metadata = inference.load_classifier(args.model)
    x, y, class_names, source = evaluation.evaluation_data(
        metadata, args.data_dir, args.split, on_error=on_error(args, metadata, args.data_dir)
    )
    if args.split == "test" and "(val split)" in source:
        if RunMetadata.from_dict(metadata).final_fit:
            raise CLIError(
                "the data has no test/ folder and this model trained on every image "
                "(validation_split 0): there is nothing it has not seen; pass --data-dir with a "
                "test/ folder"
            )
        print("no test split in the data: evaluating the validation split training held out")
    # The run kept its best epoch on these very images: the card says the score reads high.
    chose_on_them = "(val split)" in source and not RunMetadata.from_dict(metadata).final_fit
    report = evaluation.evaluate(model, x, y, class_names, flip=args.flip_tta, shift=args.shift_tta)
    views = [name for name, on in (("flip", args.flip_tta), ("shift", args.shift_tta)) if on]
    title = Path(args.model).name + (f" ({' + '.join(views)} TTA)" if views else "")
    evaluation.write_report(report, args.out, images=x, title=title)
    print(f"evaluated {title} on {len(y)} images from {source}")
    if report.absent_classes:
        absent = report.absent_classes
        print(
            f"{len(absent)} of the model's {len(class_names)} classes have no images here "
            f"({', '.join(absent[:10])}{', ...' if len(absent) > 10 else ''}): F1 averages "
            f"cover the {len(class_names) - len(absent)} present"
        )
    print(f"accuracy={report.accuracy:.4f}")
    if not math.isnan(report.top5_accuracy):  # with 5 classes or fewer it is always 1
        print(f"top5_accuracy={report.top5_accuracy:.4f}")
    print(f"macro_f1={report.macro_f1:.4f}")
    print(f"report: {args.out}")
    scored_on = source + (f", {' + '.join(views)} test-time augmentation" if views else "")
    if chose_on_them:
        scored_on += f"; {model_card.BEST_EPOCH_CAVEAT}"
    card = write_card(args.model, metadata, report, scored_on, args.out)
    print(f"model card: {card}")


def write_card(model_path, metadata, report, source, out):
    """The model card of `model_path` with the scores just measured, in the report folder
    `out`; its command is the one recorded with the model (its run's metadata)."""
    from mobilevit_utils import evaluation, model_card
    from mobilevit_utils.run_files import RunMetadata

    scores = {**report.metrics(), "source": source}
    pairs = evaluation.confused_pairs(report, top=3)
    confused = [(row.true, row.predicted, row.count) for row in pairs.itertuples(index=False)]
    path = Path(model_path)
    text = model_card.render(
        metadata,
        evaluation=scores,
        confused_pairs=confused,
        command=RunMetadata.from_dict(metadata).command,
        title=path.parent.name if path.stem == "model" else path.stem,
    )
    return model_card.write(out, text)
