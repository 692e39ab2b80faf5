"""Fine-tuning (`TrainConfig.init_from`): the model to start from and its input contract
(`resolve_start`), the phases a fine-tuning run trains in (`phases`: the new head alone, then
every layer), and the weights carried over (`transfer_weights`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras

from mobilevit_utils import models
from mobilevit_utils.run_files import RunMetadata
from mobilevit_utils.training.recipes import TrainConfig
from mobilevit_utils.training.runs import HEAD_DIR, load_run

HEAD_LAYERS = ("classifier",)  # replaced when fine-tuning (pooling and dropout have no weights)


def init_source(source):
    """(model, metadata) to fine-tune from: a preset name or a `.keras` file (its metadata from
    metadata.json beside it, as for `inference.load_classifier`)."""
    from mobilevit_utils import inference, presets

    if source in presets.PRESETS:
        preset = presets.PRESETS[source]
        if preset.hub_id:  # one download and conversion for both
            return presets.models_from_hub(preset)
        return presets.from_preset(source), presets.preset_metadata(source)
    path = Path(source)
    if path.suffix != ".keras":
        raise ValueError(
            f"init_from must be a preset ({', '.join(presets.PRESETS)}) or a .keras file, "
            f"got {source!r}."
        )
    if not path.exists():
        raise FileNotFoundError(
            f"init_from {path}: no such file; pass a .keras file or a preset "
            f"({', '.join(presets.PRESETS)})."
        )
    model, metadata = inference.load_classifier(path)
    return models.as_float32(model), metadata


def source_variant(model, metadata):
    """The variant name of a model to fine-tune from (its metadata's, else its name's)."""
    name = RunMetadata.from_dict(metadata).variant or model.name
    try:
        models.get_variant(name)
    except ValueError:
        raise ValueError(
            f"{name!r} is not a MobileViT variant of this package; fine-tuning starts from a "
            "model it built (a preset, or a .keras file that train or the converter saved)."
        ) from None
    return str(name).lower().removeprefix("mobilevit_")


def transfer_weights(source, target, include_head=False):
    """Copy every layer's weights from `source` into the layer of the same name in `target`
    (the head too with `include_head`); returns how many layers were copied. A layer of
    `target` with weights and no counterpart of the same shapes is an error: the layouts differ."""
    copied = 0
    for layer in target.layers:
        if not layer.weights or (layer.name in HEAD_LAYERS and not include_head):
            continue
        try:
            weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            raise ValueError(
                f"{source.name} has no layer {layer.name!r}: its layout differs from {target.name}."
            ) from None
        if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(
                f"Layer {layer.name!r} of {source.name} has other shapes than {target.name}'s."
            )
        layer.set_weights(weights)
        copied += 1
    return copied


@dataclasses.dataclass(frozen=True)
class Start:
    """Where a phase's weights come from, and what it does with them."""

    metadata: RunMetadata  # the source's: its input contract
    reverse_channels: bool  # the source takes BGR: the new model flips its RGB input
    model: keras.Model | None = None  # the source model, or
    from_run: Path | None = None  # a finished run whose checkpoint is loaded when the phase begins
    include_head: bool = False  # copy the classifier too (phase 2 continues phase 1's head)
    freeze_backbone: bool = False  # train the head alone, frozen BatchNorm in inference mode

    def source_model(self):
        if self.from_run is not None:
            return load_run(self.from_run, compile=False)[0]
        return self.model


@dataclasses.dataclass(frozen=True)
class Phase:
    """One `fit` of a run: its recipe, its folder and the weights it starts from (None: a new
    model). A `part` (the head phase) is a run of its own in a subfolder: resumed there, skipped
    once finished, and given none of the caller's extra callbacks."""

    config: TrainConfig
    run_dir: Path
    start: Start | None = None
    intro: str | None = None  # printed when the phase begins
    part: bool = False


def resolve_start(config, image_size=None):
    """(config, start, image_size) for fine-tuning from `config.init_from`: the recipe takes the
    source's variant, the start its weights and channel order, and the run the source's input
    size unless `image_size` is given."""
    source, source_metadata = init_source(config.init_from)
    metadata = RunMetadata.from_dict(source_metadata)
    config = dataclasses.replace(config, model=source_variant(source, metadata))
    # Without metadata, the variant's own contract (Apple's layouts: BGR in [0, 1]).
    contract = metadata.preprocessing or models.get_variant(config.model).preprocessing.to_dict()
    start = Start(
        metadata=metadata,
        reverse_channels=(
            contract.get("channel_order") == "BGR"
            or "rgb_to_bgr" in {layer.name for layer in source.layers}
        ),
        model=source,
    )
    if image_size is None:  # the source's input size
        image_size = tuple(metadata.input_shape or source.input_shape[1:])[:2]
    return config, start, image_size


def head_config(config):
    """The head phase's recipe: `head_epochs` at `head_learning_rate`, no warm-up."""
    return dataclasses.replace(
        config,
        epochs=config.head_epochs,
        learning_rate=config.head_learning_rate,
        min_learning_rate=min(config.min_learning_rate, config.head_learning_rate),
        warmup_epochs=0.0,
        head_epochs=0,
    )


def phases(config, run_dir, start=None):
    """The phases `train` runs, in order: one; or, fine-tuning with `head_epochs`, the new head
    alone for `head_epochs` (backbone frozen, in run_dir/head), then every layer from there."""
    run_dir = Path(run_dir)
    if start is None or not config.head_epochs:
        return [Phase(config, run_dir, start)]
    head_dir = run_dir / HEAD_DIR
    return [
        Phase(
            head_config(config),
            head_dir,
            dataclasses.replace(start, freeze_backbone=True),
            intro=f"phase 1: the new head alone for {config.head_epochs} epoch(s), backbone frozen",
            part=True,
        ),
        Phase(
            config,
            run_dir,
            dataclasses.replace(start, model=None, from_run=head_dir, include_head=True),
            intro=f"phase 2: every layer for {config.epochs} epoch(s)",
        ),
    ]
