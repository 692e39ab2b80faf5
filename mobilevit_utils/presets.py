"""Ready models by name: `list_presets()` and `from_preset(name)` (the keras-hub convention).

    from mobilevit_utils import presets
    presets.list_presets()                              # name -> what it is
    model = presets.from_preset("mobilevit_v2_050_cifar10")  # the released CIFAR-10 checkpoint
    model = presets.from_preset("apple/mobilevit-xx-small")  # Apple's ImageNet weights

Released checkpoints are read from the repository's `checkpoints/` folder, or downloaded from
the repository on GitHub (and cached under `artifacts/checkpoints/`) when the package was
installed without it, as on Colab. Apple's weights come through `transformers`, ported by
`mobilevit_utils.convert`; they need the internet (or transformers' cache) the first time.
`preset_metadata(name)` gives each preset's class names and input contract (`preprocessing`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mobilevit_utils import environment, models

REPO_URL = "https://github.com/mobilevit-keras/mobilevit-keras"


@dataclasses.dataclass(frozen=True)
class Preset:
    description: str
    checkpoint: str | None = None  # a released run folder in the repository
    hub_id: str | None = None  # a Hugging Face model id (Apple's weights)
    variant: str | None = None
    # A final fit trains on every training image, so it has no held-out images of its own: its
    # twin (a preset of the same recipe with a validation split) stands for it in scores and curves.
    twin: str | None = None


PRESETS = {
    "mobilevit_v2_050_cifar10": Preset(
        "MobileViTv2 width 0.5, CIFAR layout (32x32), trained by this project with the cpu "
        "recipe on all 50,000 CIFAR-10 training images: the current release, a final fit "
        "(checkpoints/mobilevit_v2_050_cifar10), scored by its twin below",
        checkpoint="checkpoints/mobilevit_v2_050_cifar10",
        twin="mobilevit_v2_050_cifar10_heldout",
    ),
    "mobilevit_v2_050_cifar10_heldout": Preset(
        "the release's twin: the same recipe on 45,000 CIFAR-10 training images, 5,000 held "
        "out, whose scores the release reports (checkpoints/mobilevit_v2_050_cifar10_heldout: "
        "metadata, history with validation curves, evaluation report)",
        checkpoint="checkpoints/mobilevit_v2_050_cifar10_heldout",
    ),
    "mobilevit_xxs_cifar10": Preset(
        "MobileViT-XXS (v1), CIFAR layout (32x32), trained on CIFAR-10 by this project: the "
        "previous release, 48 epochs (checkpoints/mobilevit_xxs_cifar10), which the finetune "
        "recipe starts from",
        checkpoint="checkpoints/mobilevit_xxs_cifar10",
    ),
    "apple/mobilevit-xx-small": Preset(
        "Apple's MobileViT-XXS ImageNet-1k weights (256x256, BGR in [0, 1])",
        hub_id="apple/mobilevit-xx-small",
        variant="xxs",
    ),
    "apple/mobilevit-x-small": Preset(
        "Apple's MobileViT-XS ImageNet-1k weights (256x256, BGR in [0, 1])",
        hub_id="apple/mobilevit-x-small",
        variant="xs",
    ),
    "apple/mobilevit-small": Preset(
        "Apple's MobileViT-S ImageNet-1k weights (256x256, BGR in [0, 1])",
        hub_id="apple/mobilevit-small",
        variant="s",
    ),
}


def list_presets():
    """{name: description} of every preset."""
    return {name: preset.description for name, preset in PRESETS.items()}


def _get(name):
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; expected one of {list(PRESETS)}.")
    return PRESETS[name]


def checkpoint_dir(name, download_from=REPO_URL, branch="main"):
    """The folder holding a released checkpoint's model.keras and metadata.json: the
    repository's copy, else a cached download from `download_from`."""
    import keras

    preset = _get(name)
    if preset.checkpoint is None:
        raise ValueError(f"Preset {name!r} is not a released checkpoint.")
    local = (environment.project_root() or Path.cwd()) / preset.checkpoint
    if (local / "model.keras").exists():
        return local
    if download_from is None:
        raise FileNotFoundError(f"{preset.checkpoint} is not in this checkout.")
    target = environment.artifacts_dir(*Path(preset.checkpoint).parts)
    for file in ("model.keras", "metadata.json"):
        if (target / file).exists():
            continue
        try:
            keras.utils.get_file(
                fname=file,
                cache_subdir=str(target.resolve()),
                origin=f"{download_from.rstrip('/')}/raw/{branch}/{preset.checkpoint}/{file}",
            )
        except Exception as error:
            raise FileNotFoundError(
                f"{preset.checkpoint}/{file} is neither in this checkout nor downloadable "
                f"({error.__class__.__name__}); clone the repository or check the connection."
            ) from None
    return target


def from_preset(name, download_from=REPO_URL):
    """A ready model (float32, not compiled) for preset `name`; its class names and input
    contract are in `preset_metadata(name)`."""
    import keras

    preset = _get(name)
    if preset.checkpoint is not None:
        folder = checkpoint_dir(name, download_from)
        model = keras.saving.load_model(folder / "model.keras", safe_mode=True, compile=False)
        return models.as_float32(model)
    return models_from_hub(preset)[0]


def preset_metadata(name, download_from=REPO_URL):
    """Class names, input contract (`preprocessing`, a dict) and, for released checkpoints, the
    training run's metadata (seed, split, and best validation accuracy, None for a final fit)."""
    preset = _get(name)
    if preset.checkpoint is not None:
        folder = checkpoint_dir(name, download_from)
        metadata = json.loads((folder / "metadata.json").read_text())
        return {**metadata, "preprocessing": models.RAW_RGB.to_dict()}
    return models_from_hub(preset)[1]


def models_from_hub(preset):
    """(model, metadata) of one of Apple's checkpoints, ported from transformers."""
    try:
        from transformers import MobileViTForImageClassification
    except ImportError:
        raise ImportError(
            "Apple's weights need transformers and torch: pip install -e .[reference]"
        ) from None
    from mobilevit_utils import convert

    try:
        reference = MobileViTForImageClassification.from_pretrained(preset.hub_id)
    except OSError as error:
        raise ConnectionError(
            f"Cannot fetch {preset.hub_id} from the Hugging Face Hub (offline?): "
            f"{str(error).splitlines()[0]}"
        ) from None
    model = models.build_mobilevit(preset.variant, num_classes=reference.config.num_labels)
    convert.load_torch_state_dict(model, reference.state_dict())
    labels = reference.config.id2label
    metadata = {
        "class_names": [labels[i] for i in range(reference.config.num_labels)],
        "input_shape": list(models.get_variant(preset.variant).default_input_shape),
        "preprocessing": models.get_variant(preset.variant).preprocessing.to_dict(),
    }
    return model, metadata
