"""Evaluation: accuracy, confusion matrices, per-class precision/recall/F1, calibration, errors.

Works the same on a Keras model and on a `.tflite` model (`load_classifier` returns either), so
notebook 05 compares them with the same code. Metrics come from `sklearn.metrics`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from mobilevit_utils import data as data_lib
from mobilevit_utils.environment import display_path
from mobilevit_utils.errors import InvalidInputError, SidecarError
from mobilevit_utils.inference import (  # noqa: F401  (part of this module's API too)
    load_classifier,
    predict_logits,
    predict_proba,
    softmax,
)
from mobilevit_utils.run_files import RunMetadata

# --------------------------------------------------------------------------------------------
# Metrics


@dataclasses.dataclass
class EvaluationReport:
    """Everything measured on one split. `per_class` is a pandas DataFrame."""

    class_names: tuple
    y_true: np.ndarray
    probabilities: np.ndarray
    accuracy: float
    top5_accuracy: float  # NaN with 5 classes or fewer, where it would always be 1
    macro_f1: float
    weighted_f1: float
    confusion: np.ndarray
    per_class: object
    expected_calibration_error: float
    reliability: object
    # Classes of the model with no images here: left out of the macro and weighted F1.
    absent_classes: tuple = ()

    @property
    def y_pred(self):
        return self.probabilities.argmax(-1)

    def metrics(self):
        return {
            "accuracy": self.accuracy,
            # null, not NaN, where undefined: NaN is not JSON, and apps parse this file.
            "top5_accuracy": None if np.isnan(self.top5_accuracy) else self.top5_accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "expected_calibration_error": self.expected_calibration_error,
            "num_images": int(len(self.y_true)),
            **({"absent_classes": list(self.absent_classes)} if self.absent_classes else {}),
        }


def _confidence_bins(y_true, probabilities, bins):
    """Each prediction's confidence (its largest probability), whether it is right, the bin
    edges (equal widths over 0-1) and each prediction's bin."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(-1)
    correct = probabilities.argmax(-1) == np.asarray(y_true)
    edges = np.linspace(0, 1, bins + 1)
    return confidence, correct, edges, np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)


def _binned_ece(confidence, correct, index, bins):
    """Per bin, |sum of confidences - number right| (the bin's count times its gap), summed over
    the bins and divided by the predictions."""
    gaps = np.bincount(index, weights=confidence - correct, minlength=bins)
    return float(np.abs(gaps).sum() / len(confidence))


def expected_calibration_error(y_true, probabilities, bins=15):
    """The ECE of `calibration` without its table: fast enough to bootstrap
    (comparison.paired_interval)."""
    confidence, correct, _, index = _confidence_bins(y_true, probabilities, bins)
    return _binned_ece(confidence, correct, index, bins)


def calibration(y_true, probabilities, bins=15):
    """Expected calibration error and the reliability table (confidence vs accuracy per bin)."""
    import pandas as pd

    confidence, correct, edges, index = _confidence_bins(y_true, probabilities, bins)
    rows = []
    for b in range(bins):
        mask = index == b
        rows.append(
            {
                "bin_low": edges[b],
                "bin_high": edges[b + 1],
                "count": int(mask.sum()),
                "confidence": float(confidence[mask].mean()) if mask.any() else np.nan,
                "accuracy": float(correct[mask].mean()) if mask.any() else np.nan,
            }
        )
    return _binned_ece(confidence, correct, index, bins), pd.DataFrame(rows)


def evaluate_predictions(y_true, probabilities, class_names):
    """Compute every metric from labels and predicted probabilities. The F1 averages cover the
    classes that have images (`absent_classes` lists the others): a class with no images has
    no F1 to average, and counting it as 0 would understate the model."""
    import pandas as pd
    from sklearn import metrics

    y_true = np.asarray(y_true)
    labels = np.arange(len(class_names))
    present = np.unique(y_true)
    y_pred = probabilities.argmax(-1)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support},
        index=pd.Index(list(class_names), name="class"),
    )
    # With 5 classes or fewer every label is in the top 5: not defined (NaN), not 1.
    top5 = (
        float(metrics.top_k_accuracy_score(y_true, probabilities, k=5, labels=labels))
        if len(class_names) > 5
        else float("nan")
    )
    ece, reliability = calibration(y_true, probabilities)
    return EvaluationReport(
        class_names=tuple(class_names),
        y_true=y_true,
        probabilities=probabilities,
        accuracy=float(metrics.accuracy_score(y_true, y_pred)),
        top5_accuracy=top5,
        macro_f1=float(
            metrics.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        weighted_f1=float(
            metrics.f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)
        ),
        confusion=metrics.confusion_matrix(y_true, y_pred, labels=labels),
        per_class=per_class,
        expected_calibration_error=ece,
        reliability=reliability,
        absent_classes=tuple(name for i, name in enumerate(class_names) if i not in present),
    )


def evaluate(model, images, labels, class_names, batch_size=256, flip=False, shift=False):
    """Predict in batches and compute every metric (`flip`, `shift`: test-time augmentation,
    see `predict_logits`)."""
    probabilities = predict_proba(model, images, batch_size, flip, shift)
    return evaluate_predictions(labels, probabilities, class_names)


def confused_pairs(report, top=10):
    """The most frequent (true -> predicted) mistakes, with their share of the true class."""
    import pandas as pd

    cm = report.confusion
    rows = [
        {
            "true": report.class_names[i],
            "predicted": report.class_names[j],
            "count": int(cm[i, j]),
            "share of true class": cm[i, j] / max(cm[i].sum(), 1),
        }
        for i in range(len(cm))
        for j in range(len(cm))
        if i != j and cm[i, j] > 0
    ]
    table = pd.DataFrame(rows, columns=["true", "predicted", "count", "share of true class"])
    return table.sort_values("count", ascending=False).head(top).reset_index(drop=True)


def confident_mistakes(report, top=16):
    """Indices of the wrong predictions made with the highest confidence."""
    wrong = np.flatnonzero(report.y_pred != report.y_true)
    confidence = report.probabilities.max(-1)
    return wrong[np.argsort(-confidence[wrong])][:top]


# --------------------------------------------------------------------------------------------
# Report files


# What `write_report` and `evaluate`'s model card write into the report folder.
REPORT_FILES = (
    "metrics.json",
    "classification_report.csv",
    "confused_pairs.csv",
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "reliability.png",
    "misclassified.png",
    "MODEL_CARD.md",
)


def write_report(report, out_dir, images=None, title=""):
    """Write metrics.json, classification_report.csv, confusion_matrix.png (counts),
    confusion_matrix_normalized.png, reliability.png and, with images, misclassified.png."""
    from mobilevit_utils import plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report.metrics(), indent=2) + "\n")
    table = report.per_class.copy()
    present = table[table["support"] > 0]  # as the macro F1: classes with images
    table.loc["macro avg"] = [
        *present[["precision", "recall", "f1"]].mean(),
        table["support"].sum(),
    ]
    table.to_csv(out_dir / "classification_report.csv", float_format="%.4f")
    confused_pairs(report).to_csv(out_dir / "confused_pairs.csv", index=False, float_format="%.4f")
    figures = {
        "confusion_matrix": plots.confusion_matrix_figure(
            report.confusion, report.class_names, False, title
        ),
        "confusion_matrix_normalized": plots.confusion_matrix_figure(
            report.confusion, report.class_names, True, title
        ),
        "reliability": plots.reliability_figure(
            report.reliability, report.expected_calibration_error
        ),
    }
    if images is not None:
        index = confident_mistakes(report)
        figures["misclassified"] = plots.mistakes_figure(
            images[index],
            [report.class_names[i] for i in report.y_true[index]],
            [report.class_names[i] for i in report.y_pred[index]],
            report.probabilities[index].max(-1),
        )
    return {name: plots.save(fig, out_dir / f"{name}.png") for name, fig in figures.items()}


# --------------------------------------------------------------------------------------------
# Data for a saved model


def _class_names(metadata):
    if not metadata.class_names:
        raise SidecarError(
            "The model has no class names in its metadata (metadata.json beside the "
            ".keras file, or <model>.json beside a .tflite file)."
        )
    return metadata.class_names


def training_dataset(metadata, data_dir=None, on_error="raise"):
    """The dataset split exactly as the model's training run split it (same seed, validation
    share and subset, images fitted to the model's input as training fitted them), checked
    against its class names."""
    metadata = RunMetadata.from_dict(metadata)
    class_names = _class_names(metadata)
    dataset = data_lib.load_dataset(
        data_dir,
        validation_split=metadata.validation_split,
        seed=metadata.seed,
        image_size=metadata.image_size,
        max_per_class=metadata.max_per_class,
        class_names=tuple(class_names) if data_dir else None,
        on_error=on_error,
        **metadata.resize_options,
    )
    if list(dataset.class_names) != list(class_names):
        raise data_lib.DataError(
            f"Dataset classes {list(dataset.class_names)} differ from the model's {list(class_names)}."
        )
    return dataset


FINAL_FIT_HAS_NO_VALIDATION = (
    "This model was trained on every training image (validation_split=0), so this data holds "
    "no images it has not seen; evaluate it on a test/ split."
)


def evaluation_data(metadata, data_dir=None, split="test", on_error="raise"):
    """Images and labels to evaluate a saved model on, resized to its input and labelled with
    its class names. With `data_dir`, reads `data_dir/<split>/<class>/*`; a split missing there
    is the validation split carved from `train/` as training did (the returned source says
    "(val split)"). Without `data_dir`, the project's dataset, likewise."""
    metadata = RunMetadata.from_dict(metadata)
    class_names = _class_names(metadata)
    if data_dir:
        size = metadata.image_size
        root = data_lib.resolve_local_root(data_dir)
        if split == "test" and not (root / "test").is_dir() and (root / "val").is_dir():
            split = "val"  # a val/ folder of its own beats a slice of train/
        if (root / split).is_dir():
            x, y, _, _ = data_lib.load_split_folder(
                root / split,
                tuple(class_names),
                size,
                on_error=on_error,
                **metadata.resize_options,
            )
            return x, y, tuple(class_names), display_path(root / split)
    # No test/ split (the CIFAR-10 copy here has none): the validation split training held out.
    dataset = training_dataset(metadata, data_dir, on_error)
    used = "test" if (split == "test" and dataset.x_test is not None) else "val"
    if used == "val" and metadata.final_fit:
        raise InvalidInputError(FINAL_FIT_HAS_NO_VALIDATION)
    x, y = dataset.split(used)
    return x, y, tuple(class_names), f"{dataset.source} ({used} split)"


def training_recipe(run_dir, metadata=None):
    """The recipe a run trained with, as a dict (label smoothing, augmentation, ...): the run's
    config.json, else the preset its metadata names (a downloaded release carries only
    model.keras and metadata.json); {} when neither says."""
    from mobilevit_utils import training

    config = Path(run_dir) / "config.json"
    if config.exists():
        return json.loads(config.read_text())
    preset = RunMetadata.from_dict(metadata).preset
    return training.RECIPES[preset].to_dict() if preset in training.RECIPES else {}


has_test_split = data_lib.has_test_split  # part of this module's API too


def held_out_data(metadata, data_dir=None, on_error="raise"):
    """`evaluation_data` on the test split where the data has one, else on the validation split
    training held out; returns ((images, labels, class_names, source), split name)."""
    if not has_test_split(data_dir):
        if RunMetadata.from_dict(metadata).final_fit:
            raise InvalidInputError(FINAL_FIT_HAS_NO_VALIDATION)
        return evaluation_data(metadata, data_dir, "val", on_error), "val"
    return evaluation_data(metadata, data_dir, "test", on_error), "test"
