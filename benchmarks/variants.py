"""The structural variants side by side: parameters, MACs and TFLite batch-1 latency.

For each variant: trainable parameters and multiply-accumulates of one image
(`models.count_macs`), then fp32 and int8 TFLite files converted with builtin ops only and
timed at batch 1 (median of --runs, one interpreter thread, as a phone's big core runs them).
Weights are random: latency does not depend on their values, and parameters/MACs not at all.
The table goes to benchmarks/results/variants.csv and, as Markdown, variants.md:

    python benchmarks/variants.py                      # every variant below
    python benchmarks/variants.py --only xxs_cifar v2_050_cifar --runs 50
    python benchmarks/variants.py --readme benchmarks/README.md   # the table from variants.md, no run

Latency also is printed as a ratio to `xxs_cifar` (or `xxs` for the ImageNet rows), which
carries over between machines better than milliseconds. Run it with nothing else on the cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# (variant, input side, classes, what it is), the CIFAR layouts first, then ImageNet ones.
VARIANTS = [
    ("xxs_cifar", 32, 10, "v1 (MHSA), the released layout"),
    ("xxs_cifar_p1", 32, 10, "v1, 1x1 patches at 4x4"),
    ("xxs_cifar_v3", 32, 10, "MobileViTv3-style blocks"),
    ("xxs_cifar_dynconv", 32, 10, "v1 + dynamic depthwise conv (K=4)"),
    ("xxs_cifar_rebalanced", 32, 10, "v1, wider 16x16 stage, shallower 4x4 transformers"),
    ("v2_050_cifar", 32, 10, "MobileViTv2 width 0.5 (separable attention)"),
    ("xxs", 256, 1000, "Apple MobileViT-XXS"),
    ("v2_050", 256, 1000, "Apple MobileViTv2-0.5"),
    ("v2_100", 256, 1000, "Apple MobileViTv2-1.0"),
]
COLUMNS = (
    "variant",
    "description",
    "input",
    "classes",
    "params",
    "macs",
    "tflite_fp32_ms",
    "tflite_int8_ms",
    "fp32_vs_reference",
)


def measure(variant, side, classes, runs, threads):
    from mobilevit_utils import export, models

    model = models.build_mobilevit(
        variant, num_classes=classes, input_shape=(side, side, 3), include_rescaling=True
    )
    row = {
        "variant": variant,
        "input": f"{side}x{side}",
        "classes": classes,
        "params": models.trainable_params(model),
        "macs": models.count_macs(model),
    }
    images = np.random.default_rng(0).integers(0, 256, size=(16, side, side, 3)).astype("uint8")
    with tempfile.TemporaryDirectory() as out:
        for precision in ("fp32", "int8"):
            try:
                path = export.export(model, out, (precision,), None, images)[precision]
            except export.ExportError as error:  # int8 of v3-style blocks: refused, say so
                print(f"  {variant} {precision}: {error}", flush=True)
                row[f"tflite_{precision}_ms"] = "refused"
                continue
            runner = export.TFLiteModel(path, num_threads=threads)
            assert not any(op.startswith("Flex") for op in runner.op_names())
            ms = export.median_latency_ms(runner.predict, images[:1], runs)
            row[f"tflite_{precision}_ms"] = f"{ms:.3f}"
    return row


def markdown(rows):
    lines = [
        "| variant | what | input | params | MACs | TFLite fp32 | TFLite int8 | fp32 vs reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ms = [
            f"{float(row[k]):.2f} ms" if row[k] != "refused" else "refused (see export)"
            for k in ("tflite_fp32_ms", "tflite_int8_ms")
        ]
        lines.append(
            f"| {row['variant']} | {row['description']} | {row['input']} | "
            f"{int(row['params']):,} | {int(row['macs']) / 1e6:.1f} M | {ms[0]} | {ms[1]} | "
            f"{row['fp32_vs_reference']} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", help="these variants only")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, help="copy variants.md into this README and exit")
    args = parser.parse_args(argv)
    if args.readme:
        from benchmarks.readme_tables import replace_block

        replace_block(args.readme, "variants", (args.results_dir / "variants.md").read_text())
        return

    chosen = [v for v in VARIANTS if not args.only or v[0] in args.only]
    rows = []
    for variant, side, classes, description in chosen:
        print(f"{variant}: {description}", flush=True)
        rows.append(
            {**measure(variant, side, classes, args.runs, args.threads), "description": description}
        )
    # Ratios to the v1 model of the same input size, when it is in the table.
    reference = {row["input"]: row for row in rows if row["variant"] in ("xxs_cifar", "xxs")}
    for row in rows:
        ref = reference.get(row["input"])
        ok = ref is not None and "refused" not in (row["tflite_fp32_ms"], ref["tflite_fp32_ms"])
        ratio = float(row["tflite_fp32_ms"]) / float(ref["tflite_fp32_ms"]) if ok else None
        row["fp32_vs_reference"] = f"{ratio:.2f}x {ref['variant']}" if ratio else "-"

    args.results_dir.mkdir(parents=True, exist_ok=True)
    with open(args.results_dir / "variants.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    note = (
        f"\n\nBatch 1, median of {args.runs} runs, {args.threads} interpreter thread(s), "
        f"{os.cpu_count()} CPU cores; made by `python benchmarks/variants.py`.\n"
    )
    (args.results_dir / "variants.md").write_text(table + note)
    print(table + note)


if __name__ == "__main__":
    main()
