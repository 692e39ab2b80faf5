"""What a run says about itself: its first line (the size images are fitted to, and how) and its
model card (`MODEL_CARD.md`, written when the run finishes, with the command that made it)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mobilevit_utils import model_card
from mobilevit_utils.environment import DATA_ENV
from mobilevit_utils.run_files import RESIZE_MODES, RunMetadata
from mobilevit_utils.training.recipes import RECIPES, TrainConfig

CIFAR_DOWNLOAD = "keras.datasets.cifar10"  # `data.load_cifar10_download`'s source
PHOTO_START = "apple/mobilevit-xx-small"  # ImageNet weights at 256x256: the start for photos


def resize_mode(config):
    """ "stretch", "crop" or "pad": how the recipe fits images of another shape to the input."""
    metadata = RunMetadata(
        crop_to_aspect_ratio=config.crop_to_aspect_ratio,
        pad_to_aspect_ratio=config.pad_to_aspect_ratio,
    )
    return metadata.resize_mode


def input_line(config, image_size, asked=False, dataset=None, data_dir=None):
    """The run's first line: the size every image is fitted to, how, and why that size.
    `image_size`: the size chosen (None: the images' own); `asked`: given by the caller (else
    the fine-tuned model's input); `dataset`: images given ready-made, taken as they are."""
    if dataset is not None:
        height, width = dataset.image_shape[:2]
        return f"input: {height}x{width}, the size of the images of the dataset given"
    if image_size is None:
        if not (data_dir or os.environ.get(DATA_ENV)):
            return "input: 32x32, CIFAR-10's own size"
        return (
            "input: each image at its own size; a folder of mixed sizes is resized to its most "
            "common size (--image-size HEIGHT WIDTH chooses)"
        )
    height, width = image_size
    mode = resize_mode(config)
    why = "as asked" if asked else f"{config.init_from}'s input, the model fine-tuned"
    line = f"input: {height}x{width} ({why}); every image {RESIZE_MODES[mode]}"
    if mode == "stretch":
        line += " (--crop-to-aspect-ratio or --pad-to-aspect-ratio keep proportions)"
    if config.init_from and not asked and max(height, width) <= model_card.CIFAR_SIZE:
        line += (
            f". Photos lose their detail at {height}x{width}: with internet access, "
            f"--init-from {PHOTO_START} starts from ImageNet weights at 256x256"
        )
    return line


def python_command(config, metadata, run_dir):
    """The `training.train(...)` call that repeats a run started from Python: the recipe's
    name and the fields that differ from it."""
    preset = RECIPES.get(config.name, TrainConfig()).to_dict()
    changed = {
        key: value
        for key, value in config.to_dict().items()
        if key != "name" and value != preset.get(key) and not (key == "model" and config.init_from)
    }
    lines = ["from mobilevit_utils import training"]
    words = [repr(config.name if config.name in RECIPES else "custom")]
    if metadata.data_dir:
        words.append(f"data_dir={metadata.data_dir!r}")
    elif metadata.data_source and metadata.data_source != CIFAR_DOWNLOAD:
        lines.append(f"# dataset: {metadata.data_source}, an ImageDataset given in Python")
        words.append("dataset=dataset")
    words.append(f"run_dir={str(run_dir)!r}")
    words += [f"{key}={value!r}" for key, value in changed.items()]
    return "\n".join([*lines, "training.train(" + ", ".join(words) + ")"])


def write_run_card(result, command=None):
    """Record `command` (default: the Python call, `python_command`) in a finished run's
    metadata and write its `MODEL_CARD.md`, scored on the run's own validation split; returns
    the card's path."""
    run_dir = Path(result["run_dir"])
    metadata = RunMetadata.read(run_dir)
    command = command or python_command(result["config"], metadata, run_dir)
    metadata = dataclasses.replace(metadata, command=command)
    metadata.write(run_dir)
    result["metadata"] = metadata.to_dict()
    text = model_card.render(
        metadata, model_card.validation_scores(metadata), command=command, title=run_dir.name
    )
    return model_card.write(run_dir, text)
