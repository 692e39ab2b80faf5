"""`predict`: the top-k classes of image files and folders, as a table or a .csv/.jsonl file.
Finding, decoding and ranking the images is the library's (`inference.predict_files`)."""

from __future__ import annotations

import sys
from pathlib import Path

from mobilevit_utils.cli.common import CLIError, check_output_folder, check_positive


def add_parser(sub):
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
    p.set_defaults(handler=run)


def _check_output(output):
    from mobilevit_utils import inference

    if output is None:
        return
    if output.suffix not in inference.PREDICTION_FORMATS:
        raise CLIError(f"--output must end in .csv or .jsonl, got {output.name}")
    if output.is_dir():
        raise CLIError(f"--output {output} is a folder; name a .csv or .jsonl file")
    check_output_folder("--output", output.parent)


def run(args):
    from mobilevit_utils import inference
    from mobilevit_utils.run_files import RunMetadata

    check_positive("--top-k", args.top_k)
    check_positive("--batch-size", args.batch_size)
    output = Path(args.output) if args.output else None
    _check_output(output)
    paths, failures = inference.find_images(args.images)
    total = len(paths) + len(failures)
    if not paths:
        raise CLIError(f"no images to predict: {failures[0]}")
    model, metadata = inference.load_classifier(args.model)
    metadata = RunMetadata.from_dict(metadata)
    class_names = list(metadata.class_names or ())
    if not class_names:
        raise CLIError(
            "the model has no class names in its metadata (metadata.json beside the .keras "
            "file, or <model>.json beside a .tflite file); predictions would be unlabelled"
        )
    frame = inference.predict_files(
        model,
        paths,
        class_names,
        top_k=args.top_k,
        image_size=metadata.image_size,
        batch_size=args.batch_size,
        on_error="skip",
        **metadata.resize_options,  # as training fitted images to the input
    )
    failures += [f"{path}: {reason}" for path, reason in frame.attrs["skipped"].items()]
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if output is None:
        k = (len(frame.columns) - 1) // 2
        for row in frame.itertuples(index=False):
            top = [f"{row[2 * r - 1]} {row[2 * r]:.3f}" for r in range(1, k + 1)]
            print(f"{row[0]}: " + ", ".join(top))
    else:
        inference.write_predictions(frame, output)
        print(f"{len(frame)} image(s) predicted: {output}")
    if failures:
        print(f"error: {len(failures)} of {total} input(s) failed", file=sys.stderr)
        return 1
    return 0
