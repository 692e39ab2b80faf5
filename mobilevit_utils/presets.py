"""Ready models by name: `list_presets()` and `from_preset(name)` (the keras-hub convention).

    from mobilevit_utils import presets
    presets.list_presets()                              # name -> what it is
    model = presets.from_preset("mobilevit_v2_050_cifar10")  # the released CIFAR-10 checkpoint
    model = presets.from_preset("apple/mobilevit-xx-small")  # Apple's ImageNet weights

Released checkpoints ship inside the package (`mobilevit_utils._checkpoints`, the repository's
`checkpoints/` folder), so they load from any directory, offline, after `pip install`. Where
the package was installed without them, they are downloaded from the repository once, checked
against the hash recorded here, and cached beside Keras' own downloads (`~/.keras/mobilevit/`,
or under `KERAS_HOME`). Apple's weights come through `transformers`, ported by
`mobilevit_utils.convert`; they need the internet (or transformers' cache) the first time.
`preset_metadata(name)` gives each preset's class names and input contract (`preprocessing`).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from pathlib import Path

from mobilevit_utils import environment, models
from mobilevit_utils.errors import MissingDependencyError, MissingInputError, OfflineError
from mobilevit_utils.run_files import RunMetadata

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
    # sha256 of the released files, checked when they are downloaded (tests/unit/test_presets.py
    # checks them against the committed files, so a new release must update them).
    sha256: dict | None = None


PRESETS = {
    "mobilevit_v2_050_cifar10": Preset(
        "MobileViTv2 width 0.5, CIFAR layout (32x32), trained by this project with the cpu "
        "recipe on all 50,000 CIFAR-10 training images: the current release, a final fit "
        "(checkpoints/mobilevit_v2_050_cifar10), scored by its twin below",
        checkpoint="checkpoints/mobilevit_v2_050_cifar10",
        twin="mobilevit_v2_050_cifar10_heldout",
        sha256={
            "model.keras": "002c8b04e198bd0cf6c7bd0daabc67efe0ad6c85794e2bcc41f9d780ad164692",
            "metadata.json": "6535bd54b486d4238561952d31a890a6b91503774e7e55f9d660e4709682c6a2",
        },
    ),
    "mobilevit_v2_050_cifar10_heldout": Preset(
        "the release's twin: the same recipe on 45,000 CIFAR-10 training images, 5,000 held "
        "out, whose scores the release reports (checkpoints/mobilevit_v2_050_cifar10_heldout: "
        "metadata, history with validation curves, evaluation report)",
        checkpoint="checkpoints/mobilevit_v2_050_cifar10_heldout",
        sha256={
            "model.keras": "da042f197d281e4cf3a9f45f88af85d1a7bac874ed6e6454b444eadc5f6ea64f",
            "metadata.json": "8f31729562e1a34a91d32ddf02e4652c93dcd3e71cc9f0a8ff718a2b75077ece",
        },
    ),
    "mobilevit_xxs_cifar10": Preset(
        "MobileViT-XXS (v1), CIFAR layout (32x32), trained on CIFAR-10 by this project: the "
        "previous release, 48 epochs (checkpoints/mobilevit_xxs_cifar10), which the finetune "
        "recipe starts from",
        checkpoint="checkpoints/mobilevit_xxs_cifar10",
        sha256={
            "model.keras": "c9e3b7c9c9e99fb3cf240c3a2d8b8c9cc5dd8c637ff4a5fa40517253755d5f79",
            "metadata.json": "c98e11f344e6061eeeedc80195bfda5fc956c19cc0daa7fdc14b1737e026af71",
        },
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


def packaged_checkpoints():
    """The folder of checkpoints installed with the package (the repository's `checkpoints/`
    in a checkout, installed or not)."""
    try:
        return Path(str(importlib.resources.files("mobilevit_utils._checkpoints")))
    except ModuleNotFoundError:  # imported from a checkout that was never installed
        return Path(__file__).resolve().parents[1] / "checkpoints"


def cache_dir():
    """Where downloaded checkpoints are kept: beside Keras' own downloads."""
    return environment.keras_home_dir()


FILES = ("model.keras", "metadata.json")


def checkpoint_dir(name, download_from=REPO_URL, branch="main"):
    """The folder holding a released checkpoint's model.keras and metadata.json: the copy
    installed with the package, else one downloaded from `download_from` (checked against the
    preset's sha256) into `cache_dir()`."""
    preset = _get(name)
    if preset.checkpoint is None:
        raise ValueError(f"Preset {name!r} is not a released checkpoint.")
    folder_name = Path(preset.checkpoint).name
    local = packaged_checkpoints() / folder_name
    if all((local / file).is_file() for file in FILES):
        return local
    target = cache_dir() / folder_name
    if all(_intact(preset, target / file) for file in FILES):
        return target
    if download_from is None:
        raise MissingInputError(f"{preset.checkpoint} is not installed with the package.")
    for file in FILES:
        _download(preset, file, target, f"{download_from.rstrip('/')}/raw/{branch}")
    return target


def _intact(preset, path):
    """`path` exists and, where the preset records one, matches its hash (an interrupted
    download leaves a partial file)."""
    import hashlib

    expected = (preset.sha256 or {}).get(path.name)
    if not path.is_file():
        return False
    return expected is None or hashlib.sha256(path.read_bytes()).hexdigest() == expected


def _download(preset, file, target, base_url):
    """One released file into `target`, its hash checked; a file that fails the check is
    removed from the cache (this tool wrote it), so that no later call trusts it."""
    import keras

    expected = (preset.sha256 or {}).get(file)
    target.mkdir(parents=True, exist_ok=True)  # else get_file falls back to /tmp/.keras
    try:
        keras.utils.get_file(
            fname=file,
            origin=f"{base_url}/{preset.checkpoint}/{file}",
            file_hash=expected,
            hash_algorithm="sha256",
            cache_dir=str(target.parent),
            cache_subdir=target.name,
        )
    except Exception as error:
        (target / file).unlink(missing_ok=True)
        raise MissingInputError(
            f"{preset.checkpoint}/{file} is not installed with the package and could not be "
            f"downloaded ({error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "reinstall mobilevit-keras or check the connection."
        ) from None


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
        metadata = RunMetadata.read(folder)
        return dataclasses.replace(metadata, preprocessing=models.RAW_RGB.to_dict()).to_dict()
    return models_from_hub(preset)[1]


def models_from_hub(preset):
    """(model, metadata) of one of Apple's checkpoints, ported from transformers."""
    try:
        from transformers import MobileViTForImageClassification
    except ImportError:
        raise MissingDependencyError(
            "Apple's weights need transformers and torch: pip install -e .[reference]"
        ) from None
    from mobilevit_utils import convert

    try:
        reference = MobileViTForImageClassification.from_pretrained(preset.hub_id)
    except OSError as error:
        raise OfflineError(
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
