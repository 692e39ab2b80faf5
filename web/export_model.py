"""The released model's `.tflite` files for the site's Try it page (web/): fp32 and int8, each
with its JSON sidecar, exported as the release exported them.

    python web/export_model.py [--release checkpoints/mobilevit_v2_050_cifar10]
                               [--out artifacts/tflite/mobilevit_v2_050_cifar10] [--data-dir D]

The release (tools/release_checkpoint.py) commits model.keras and writes its .tflite files to
artifacts/tflite/<release name>/, which git ignores; tools/build_site.py copies them from there
into the site and runs this script when they are missing or older than model.keras. It goes
through the release's own function (`release_checkpoint.export_tflite`): the same calibration
(200 images drawn with seed 0 from the training split of the model's run, read from the data
folder the release was made from), the same sidecars (the model card's essentials scored by
the twin run, as results.json records them), the same file names, each file checked against
the Keras model.

The data folder: --data-dir, else $MOBILEVIT_DATA_DIR, else ../shared/data beside the
repository, else the project's own extraction (data/extracted/cifar10-train-jpeg); never a
download. Needs TensorFlow (the converter), that is the `dev`/default install, not only the
`site` extra."""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "checkpoints" / "mobilevit_v2_050_cifar10"
PRECISIONS = ("fp32", "int8")


def default_data_dir():
    for candidate in (
        os.environ.get("MOBILEVIT_DATA_DIR"),
        ROOT.parent / "shared" / "data",
        ROOT / "data" / "extracted" / "cifar10-train-jpeg",
    ):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise SystemExit(
        "the int8 export calibrates on the release's training images (CIFAR-10's JPEG folder): "
        "pass --data-dir or set MOBILEVIT_DATA_DIR (e.g. ../shared/data)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", type=Path, default=RELEASE)
    parser.add_argument("--out", type=Path, default=None, help="default artifacts/tflite/<name>")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path[:0] = [str(ROOT), str(ROOT / "tools")]
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise SystemExit(
            "exporting the model for the Try it page needs TensorFlow (`make install`)"
        ) from None
    from release_checkpoint import export_tflite

    from mobilevit_utils import training

    release = args.release.resolve()
    out = (args.out or ROOT / "artifacts" / "tflite" / release.name).resolve()
    if out.name != release.name:
        raise SystemExit(f"--out must be named after the release ({release.name}): {out}")
    data_dir = args.data_dir or default_data_dir()
    start = time.perf_counter()
    model, metadata = training.load_run(release, compile=False)
    results = json.loads((release / "results.json").read_text())
    scores = results["evaluation"]
    if results.get("scored_by_twin"):  # as tools/release_checkpoint.py words it
        scores = {**scores, "source": f"held out by the twin run {results['scored_by_twin']}"}
    checks = export_tflite(
        model, metadata, str(data_dir), PRECISIONS, out, evaluation_scores=scores
    )
    for check in checks.values():
        parity = check.parity
        print(
            f"{check.path.name}: {check.size_kb:.0f} KB, parity with Keras "
            f"{'ok' if check.ok else 'FAILED'} (max |logit diff| {parity['max_abs_diff']:.1e}, "
            f"top-1 agreement {parity['top1_agreement']:.0%})"
        )
        if not check.ok:
            raise SystemExit(f"{check.path.name} answers differently from model.keras")
    print(f"exported to {out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
