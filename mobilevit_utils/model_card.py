"""A model card (`MODEL_CARD.md`) for every run and release: what the model is for, what it was
trained on, its input contract, its scores with their split, size and uncertainty, what it
cannot do, and the command that made it (Mitchell et al., *Model Cards for Model Reporting*,
2019; the sections Hugging Face's cards use).

    text = model_card.render(metadata, evaluation=report, command="mobilevit train ...")
    model_card.write(run_dir, text)

It takes plain dicts (a run's metadata, an evaluation's metrics), so training, evaluation, the
release tool and export all call it without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from mobilevit_utils.run_files import RESIZE_MODES, RunMetadata, write_atomic

FILE = "MODEL_CARD.md"
CIFAR_SIZE = 32


def accuracy_interval(accuracy, num_images, confidence=0.95):
    """Wilson's interval for an accuracy measured on `num_images` images, in [0, 1]."""
    from scipy.stats import binomtest

    correct = round(accuracy * num_images)
    interval = binomtest(correct, num_images).proportion_ci(confidence, method="wilson")
    return interval.low, interval.high


def _count(number):
    return "?" if number is None else f"{number:,}"


# The caveat of a score measured on the validation split that chose the run's best epoch.
BEST_EPOCH_CAVEAT = "its best epoch was chosen on these images, so the figure reads slightly high"


def validation_scores(metadata):
    """The evaluation a run's own validation gives (its best epoch's accuracy on the images it
    held out), as `render` takes it; None for a final fit or a run without one."""
    metadata = RunMetadata.from_dict(metadata)
    if metadata.best_val_accuracy is None or not metadata.val_images:
        return None
    return {
        "accuracy": metadata.best_val_accuracy,
        "num_images": metadata.val_images,
        "source": f"the validation split training held out; {BEST_EPOCH_CAVEAT}",
    }


def _scores(evaluation):
    if not evaluation:
        return [
            "Not evaluated yet: `mobilevit evaluate --model MODEL.keras --data-dir DATA` "
            "writes the scores."
        ]
    n = int(evaluation["num_images"])
    low, high = accuracy_interval(float(evaluation["accuracy"]), n)
    lines = [
        f"- accuracy **{100 * float(evaluation['accuracy']):.2f} %** on {n:,} images "
        f"({evaluation.get('source') or evaluation.get('split', 'held-out')}); 95 % interval "
        f"{100 * low:.1f}-{100 * high:.1f} % (Wilson): the fewer the images, the wider it is",
    ]
    if "macro_f1" in evaluation:
        lines.append(f"- macro F1 {float(evaluation['macro_f1']):.4f}")
    if absent := evaluation.get("absent_classes"):
        lines.append(f"- classes with no images in this evaluation: {', '.join(absent)}")
    return lines


def _limitations(metadata, confused_pairs):
    height, width = metadata.image_size
    names = metadata.class_names
    lines = [
        f"- It knows {len(names)} classes and gives every image one of them: there is no "
        "'none of these'. Check the top probability before trusting an answer.",
        f"- It sees every image at {height}x{width} pixels: larger photos are shrunk first, "
        f"{RESIZE_MODES[metadata.resize_mode]}.",
    ]
    if max(height, width) <= CIFAR_SIZE:
        lines.append(
            "- At this size (CIFAR-10's world) fine detail is lost: small or off-centre objects, "
            "text and textures are hard; objects that fill the frame work best."
        )
    lines.append(
        f"- It was trained on {_count(metadata.train_images)} images from one source; "
        "photos unlike them (other cameras, lighting, viewpoints) score lower than the numbers "
        "above."
    )
    if confused_pairs:
        pairs = "; ".join(
            f"{true} taken for {predicted} ({count})"
            for true, predicted, count in confused_pairs[:3]
        )
        lines.append(f"- Known confusions on the evaluation images: {pairs}.")
    return lines


def render(metadata, evaluation=None, confused_pairs=None, command=None, title=None):
    """The card's Markdown. `metadata`: a run's metadata (class_names, input_shape,
    preprocessing, model, train_images, val_images, data_source, seed, preset); `evaluation`:
    metrics (accuracy, num_images, split or source, macro_f1, absent_classes); `confused_pairs`:
    [(true, predicted, count)], most frequent first; `command`: what reproduces the run."""
    metadata = RunMetadata.from_dict(metadata)
    names = metadata.class_names
    preprocessing = metadata.preprocessing or {}
    title = title or metadata.model or "MobileViT classifier"
    lines = [
        f"# Model card: {title}",
        "",
        "## Intended use",
        f"Image classification into {len(names)} classes, on a phone (the `.tflite` files "
        "`mobilevit export` writes) or in Python. Not for decisions about people, safety or "
        "health.",
        "",
        "## Model",
        f"- {metadata.model or '?'} (MobileViT, Mehta & Rastegari, ICLR 2022), "
        f"recipe `{metadata.preset or 'custom'}`, seed {metadata.seed}"
        + (f", fine-tuned from `{metadata.init_from}`" if metadata.init_from else ""),
        f"- input: {'x'.join(str(d) for d in metadata.input_shape)}, "
        f"{preprocessing.get('description', 'see the sidecar')}",
        "",
        "## Training data",
        f"- {_count(metadata.train_images)} training images, "
        f"{_count(metadata.val_images or 0)} held out for validation, from "
        f"`{metadata.data_source or 'the dataset given'}`",
        f"- classes ({len(names)}): {', '.join(names)}",
        "",
        "## Scores",
        *_scores(evaluation),
        "",
        "## Limitations",
        *_limitations(metadata, confused_pairs),
    ]
    if command:
        lines += ["", "## How it was made", "```bash", command, "```"]
    return "\n".join(lines) + "\n"


def essentials(metadata, evaluation=None):
    """The card in a few fields, for an exported model's sidecar."""
    metadata = RunMetadata.from_dict(metadata)
    card = {"model": metadata.model, "recipe": metadata.preset}
    if metadata.init_from:
        card["fine_tuned_from"] = metadata.init_from
    card["training_images"] = metadata.train_images
    if evaluation:
        n = int(evaluation["num_images"])
        low, high = accuracy_interval(float(evaluation["accuracy"]), n)
        card["accuracy"] = round(float(evaluation["accuracy"]), 4)
        card["accuracy_95_interval"] = [round(low, 4), round(high, 4)]
        card["evaluated_on"] = (
            f"{n} images ({evaluation.get('source') or evaluation.get('split', 'held out')})"
        )
    card["limitations"] = "one of its classes for every image; sees every image at " + "x".join(
        str(d) for d in metadata.image_size
    )
    return card


def write(folder, text):
    """`folder/MODEL_CARD.md`, written atomically (`run_files.write_atomic`)."""
    path = Path(folder) / FILE
    write_atomic(path, text)
    return path
