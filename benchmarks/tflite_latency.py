"""Batch-1 latency of a model in Keras and in each TFLite precision, on this machine.

Prints the median over repeated runs and the ratio to Keras for each variant. Uses the given
checkpoint, else notebook 03's run or the released one.

    python benchmarks/tflite_latency.py [--run-dir DIR] [--runs 200] [--threads 1]
"""

import argparse
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from mobilevit_utils import evaluation, export, training  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (phones: 1-4)")
    args = parser.parse_args()

    run = training.find_run(args.run_dir)
    model, metadata = evaluation.load_classifier(run / "model.keras")
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, size=(64, *model.input_shape[1:])).astype("float32")
    image = calibration[:1]
    rows = [
        (
            "keras (tf.function)",
            None,
            export.median_latency_ms(export.keras_inference_fn(model), image, args.runs),
        )
    ]
    with tempfile.TemporaryDirectory() as out:
        paths = export.export(
            model,
            out,
            export.PRECISIONS,
            training.RunMetadata.from_dict(metadata).class_names,
            calibration,
            64,
        )
        for precision, path in paths.items():
            runner = export.TFLiteModel(path, num_threads=args.threads)
            rows.append(
                (
                    f"tflite {precision}",
                    path.stat().st_size,
                    export.median_latency_ms(runner.predict, image, args.runs),
                )
            )
    base = rows[0][2]
    print(
        f"model {model.name}, input {model.input_shape[1:]}, batch 1, {args.runs} runs, "
        f"{args.threads} interpreter thread(s), {os.cpu_count()} CPU cores"
    )
    print(f"{'variant':<22}{'size KB':>9}{'median ms':>11}{'vs keras':>10}")
    for name, size, ms in rows:
        size_text = f"{size / 1024:.0f}" if size else "-"
        print(f"{name:<22}{size_text:>9}{ms:>11.2f}{ms / base:>9.2f}x")


if __name__ == "__main__":
    main()
