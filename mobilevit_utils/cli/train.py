"""`train`: a recipe preset, with any of its fields overridden by a flag.

The recipe flags are generated from `training.TrainConfig`'s fields: `--field-name` (or the
alias in `FLAG_ALIASES`), typed from the field's annotation (on/off fields get `--x`/`--no-x`;
a field that may be None also takes `none`), with the help text of `HELP` (else the field's
`metadata["help"]`) and the presets' values as defaults. A new recipe field thus needs no edit
here beyond, at most, its help line. `train_command` writes the flags that reproduce a recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shlex
import typing
from pathlib import Path

from mobilevit_utils.cli.common import (
    CLIError,
    add_skip_flag,
    check_output_folder,
    check_outside_data,
    on_error,
)

# Flags spelled otherwise than --field-name, and placeholders other than N (int), X (float).
FLAG_ALIASES = {"learning_rate": "--lr"}
METAVARS = {"init_from": "SOURCE"}
NOT_FLAGS = ("name",)  # --preset chooses the recipe
DEFAULT_PRESET = "cpu"
CIFAR10_DOWNLOAD = "keras.datasets.cifar10"  # the source a run on CIFAR-10's download records

# Help of the recipe flags. Those up to "head_epochs" are listed first in --help (what most
# runs change); the others, and fields missing here, under "more recipe fields".
HELP = {
    "model": "the network: xxs, xs, s (MobileViT v1, small to large, for photos), v2_050 to "
    "v2_200 (MobileViT v2 at widths 0.5-2.0), xxs_cifar, v2_050_cifar, v2_075_cifar (laid out "
    "for 32x32 images); the other xxs_cifar_* are ablations (benchmarks/README.md); "
    "fine-tuning keeps the layout of the --init-from model",
    "epochs": "number of epochs",
    "batch_size": "images per step",
    "learning_rate": "peak learning rate, reached after the warm-up",
    "augmentation": "random changes to training images: none; light (mirror and shifts of up "
    "to 4 pixels); shift (no mirror: digits, text); medium (also rotation, zoom, colour); strong "
    "(medium and CutMix); mixup, cutmix (blend image pairs); light_* are ablations "
    "(benchmarks/README.md)",
    "label_smoothing": "label smoothing",
    "class_weight": "balanced: weigh each class's loss inversely to its number of images "
    "(imbalanced data)",
    "ema": "validate and keep an exponential moving average of the weights",
    "weight_averaging": "validate and keep an average of the weights whose decay warms up (no "
    "lag in short runs; BatchNorm statistics averaged too)",
    "mixed_precision": "float16 compute with float32 weights and logits (GPUs; slow on CPUs)",
    "jit_compile": "XLA (TensorFlow) / torch.compile (PyTorch); auto: XLA on GPUs only",
    "max_per_class": "train on at most this many images per class",
    "crop_to_aspect_ratio": "fit images of another shape to the input by cropping their centre "
    "to its shape (no stretching; the edges are lost); recorded, so evaluate, predict and export "
    "do the same",
    "pad_to_aspect_ratio": "fit images of another shape to the input whole, with black bars (no "
    "stretching); recorded, so evaluate, predict and export do the same",
    "validation_split": "share of the images held out for validation; 0: a final fit on every "
    "image, keeping the last epoch's weights",
    "seed": "random seed",
    "init_from": "fine-tune: start from a preset (mobilevit_xxs_cifar10, "
    "apple/mobilevit-xx-small, ...) or a .keras file, keeping its input size and preprocessing, "
    "with a new head for the data's classes; none: train from scratch",
    "head_epochs": "with --init-from: epochs of the new head alone (backbone frozen) before "
    "--epochs of every layer",
    "num_heads": "attention heads per transformer; none: the variant's",
    "min_learning_rate": "learning rate at the end of the cosine decay",
    "warmup_epochs": "epochs of linear warm-up to the peak learning rate",
    "schedule": "cosine (warm-up, then cosine decay) or plateau (ReduceLROnPlateau)",
    "optimizer": "adamw, adam or sgd (momentum 0.9, Nesterov)",
    "weight_decay": "weight decay (AdamW, SGD), never on norms and biases",
    "gradient_clip_norm": "clip the global gradient norm to this; none: no clipping",
    "ema_momentum": "--ema's memory: about 1 / (1 - momentum) steps",
    "averaging_interval": "--weight-averaging: steps between updates of the average",
    "dropout": "dropout before the classifier",
    "transformer_dropout": "dropout inside the transformers",
    "early_stopping_patience": "stop after this many epochs without a better validation "
    "accuracy; none: never",
    "parallel_augmentation": "augment batches in parallel (keeps a GPU fed; runs are no longer "
    "bit-reproducible)",
    "head_learning_rate": "with --head-epochs: the new head's learning rate",
}
FIRST = tuple(HELP)[: tuple(HELP).index("head_epochs") + 1]


def _choices():
    """The values a text field takes, where the recipe knows them."""
    from mobilevit_utils import augmentation, models

    return {
        "model": tuple(sorted(models.MODEL_CONFIGS)),
        "augmentation": tuple(augmentation.POLICIES),
        "schedule": ("cosine", "plateau"),
        "optimizer": ("adamw", "adam", "sgd"),
        "class_weight": ("balanced",),
    }


def _jit_value(text):
    values = {"auto": "auto", "true": True, "false": False}
    if text.lower() not in values:
        raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")
    return values[text.lower()]


def _parser_of(kind, optional):
    """argparse's `type` for a field: `kind(text)`, and None for `none` where None is allowed.
    Named after `kind`, so that argparse says "invalid float value: 'fast'"."""

    def parse(text):
        if optional and text.lower() == "none":
            return None
        return kind(text)

    parse.__name__ = kind.__name__
    return parse


def _words(value):
    """A value as the command line spells it: none, true/false, or as is."""
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else value


@dataclasses.dataclass(frozen=True)
class RecipeFlag:
    """The flag of one `TrainConfig` field."""

    field: str
    flag: str
    kind: object  # bool, int, float, str, or the parser of a field of several types
    optional: bool  # None is a value
    choices: tuple | None
    help: str

    def words(self, value):
        """The flag and its value as command-line words."""
        if self.kind is bool:
            return self.flag if value else f"--no-{self.flag[2:]}"
        return f"{self.flag} {shlex.quote(str(_words(value)))}"

    def add_to(self, group, defaults):
        """Add the flag to `group`; `defaults`: {preset name: its value}, shown in the help."""
        options = {"dest": self.field, "default": argparse.SUPPRESS}
        presets = {name: str(_words(value)) for name, value in defaults.items()}
        default = (
            f"default {next(iter(presets.values()))}"
            if len(set(presets.values())) == 1
            else ", ".join(f"{name} {value}" for name, value in presets.items())
        )
        listed = ""
        if self.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif self.kind is _jit_value:
            options.update(type=_jit_value, metavar="{auto,true,false}")
        else:
            options["type"] = _parser_of(self.kind, self.optional)
            placeholder = {int: "N", float: "X"}.get(self.kind, self.field.upper())
            options["metavar"] = METAVARS.get(self.field, placeholder)
        if self.choices:
            options["choices"] = (*self.choices, None) if self.optional else self.choices
            names = (*self.choices, "none") if self.optional else self.choices
            if len(names) <= 4:
                options["metavar"] = "{" + ",".join(names) + "}"
            else:  # listed in the help, not on the usage line
                listed = f": {', '.join(names)}"
        help_text = f"{self.help}{listed} [{default}]".replace("%", "%%")
        group.add_argument(self.flag, help=help_text, **options)


@functools.cache
def recipe_flags():
    """{field: RecipeFlag} for every `TrainConfig` field a flag can set, in field order. A field
    of a type no flag parses (a tuple, say) has none: `train_command` reports it."""
    from mobilevit_utils import training

    hints = typing.get_type_hints(training.TrainConfig)
    choices = _choices()
    flags = {}
    for field in dataclasses.fields(training.TrainConfig):
        if field.name in NOT_FLAGS:
            continue
        kinds = typing.get_args(hints[field.name]) or (hints[field.name],)
        base = tuple(kind for kind in kinds if kind is not type(None))
        if set(base) == {bool, str}:  # jit_compile: on, off or "auto"
            kind = _jit_value
        elif len(base) == 1 and base[0] in (bool, int, float, str):
            kind = base[0]
        else:
            continue
        flags[field.name] = RecipeFlag(
            field=field.name,
            flag=FLAG_ALIASES.get(field.name, "--" + field.name.replace("_", "-")),
            kind=kind,
            optional=len(base) < len(kinds),
            choices=choices.get(field.name),
            help=HELP.get(field.name) or field.metadata.get("help") or field.name.replace("_", " "),
        )
    return flags


def train_overrides(args):
    """The recipe fields a parsed `train` command sets (flags left out keep the preset's)."""
    return {field: getattr(args, field) for field in recipe_flags() if hasattr(args, field)}


def train_command(config, data_dir=None, out=None):
    """The `train` command line that reproduces a run's resolved recipe (its config.json, a dict),
    and the recipe fields no flag can set (differences from the preset; empty when none)."""
    from mobilevit_utils import training

    preset = training.get_recipe(config["name"]).to_dict()
    # Runs recorded before a field existed ran with its default.
    config = {**training.TrainConfig().to_dict(), **config}
    flags = recipe_flags()
    words = ["python -m mobilevit_utils train", f"--preset {config['name']}"]
    for field, flag in flags.items():
        if field == "seed" or config[field] != preset[field]:
            words.append(flag.words(config[field]))
    if data_dir:
        words.append(f"--data-dir {data_dir}")
    if out:
        words.append(f"--out {out}")
    unexpressed = {
        k: v for k, v in config.items() if k != "name" and k not in flags and v != preset.get(k)
    }
    return " ".join(words), unexpressed


def add_parser(sub):
    from mobilevit_utils import training

    p = sub.add_parser(
        "train",
        usage="%(prog)s --out OUT [--preset NAME] [--data-dir DIR] [--image-size H W] "
        "[--resume | --overwrite] [--skip-bad-images] [recipe flags]",
        help="train a model and keep the best checkpoint",
        description="Train MobileViT with a recipe preset; prints one line per epoch and the "
        "path of the best checkpoint (OUT/model.keras). Every recipe field can be overridden; "
        "[...] gives each preset's value.",
    )
    p.add_argument(
        "--preset",
        "--recipe",
        default=None,
        choices=sorted(training.RECIPES),
        help="recipe: quick (a tiny check, seconds), cpu (64 epochs: 144 min of fit on "
        "CIFAR-10's 50,000 images on 2 CPU cores, the released model's run; more or larger "
        "images take longer), gpu (200 epochs for one GPU, scaled from cpu's measured "
        "choices; never run on a GPU yet), finetune (start from a trained model, for your own images); default "
        f"{DEFAULT_PRESET}; with --resume, the run's own",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="dataset folder (<class>/*.jpg or train/<class>/*.jpg, subfolders included; or the "
        "CIFAR-10 JPEG archive); default $MOBILEVIT_DATA_DIR, else download CIFAR-10; with "
        "--resume, the run's own folder",
    )
    p.add_argument("--out", required=True, help="run folder for checkpoint, history and metadata")
    p.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="resize every image to this size (stretched, unless --crop-to-aspect-ratio or "
        "--pad-to-aspect-ratio); default: the input of the model fine-tuned, else the images' "
        "own size (mixed sizes: the most common); recorded in the metadata, so evaluate, "
        "predict and export resize the same way",
    )
    add_skip_flag(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last finished epoch, with the data folder, "
        "recipe, --image-size and --skip-bad-images it was started with (other data or "
        "another recipe is refused)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out: only a folder train made (marked .mobilevit-run), and "
        "only its run files (a folder holding anything else is refused)",
    )
    groups = {
        True: p.add_argument_group("recipe (each overrides the preset's value)"),
        False: p.add_argument_group("more recipe fields"),
    }
    for field, flag in recipe_flags().items():
        defaults = {name: getattr(recipe, field) for name, recipe in training.RECIPES.items()}
        flag.add_to(groups[field in FIRST], defaults)
    p.set_defaults(handler=run)


def _flag(field):
    flag = recipe_flags().get(field)
    return flag.flag if flag else field


def check_recipe(config, overrides):
    """Refuse a recipe that training would refuse (or run badly), naming the flags."""
    from mobilevit_utils import presets

    for field, need, value in config.problems():
        raise CLIError(f"{_flag(field)} must be {need}, got {value}")
    if config.num_heads is not None and config.num_heads < 1:
        raise CLIError(f"--num-heads must be at least 1, got {config.num_heads}")
    if config.crop_to_aspect_ratio and config.pad_to_aspect_ratio:
        raise CLIError(
            "--crop-to-aspect-ratio and --pad-to-aspect-ratio both keep the images' proportions; "
            "choose one (neither: stretch)"
        )
    if config.ema and config.weight_averaging:
        raise CLIError(
            "--ema and --weight-averaging both average the weights; choose one (--no-ema or "
            "--no-weight-averaging turns a preset's off)"
        )
    if config.validation_split == 0 and (
        config.early_stopping_patience or config.schedule == "plateau"
    ):
        raise CLIError(
            "--early-stopping-patience and --schedule plateau watch the validation split; a "
            "final fit (--validation-split 0) needs a fixed number of epochs and --schedule cosine"
        )
    if config.init_from and "model" in overrides:
        raise CLIError(
            "--model and --init-from both choose the layout: fine-tuning keeps the source's "
            "(drop --model, or pass --init-from none to train --model from scratch)"
        )
    if "head_epochs" in overrides and not config.init_from:
        raise CLIError("--head-epochs needs --init-from: only a fine-tuned model has a new head")
    source = config.init_from
    if source and source not in presets.PRESETS:
        if Path(source).suffix != ".keras":
            raise CLIError(
                f"--init-from must be a preset ({', '.join(presets.PRESETS)}) or a .keras file, "
                f"got {source!r}"
            )
        if not Path(source).is_file():
            raise CLIError(
                f"--init-from {source}: no such file; pass a .keras file or a preset "
                f"({', '.join(presets.PRESETS)})"
            )


def check_paths(args):
    """Refuse, before anything is written, an --out that cannot be a new run folder: a file, in
    an unwritable folder, or inside the data (where it would be read as a class)."""
    check_output_folder("--out", args.out)
    check_outside_data(
        args.out, args.data_dir, "the run would be read as part of the data (a class folder)"
    )


def reproducing_command(args, config):
    """The command line that repeats this `train` command, for the run's model card: the
    recipe as flags (`train_command`), then the flags no recipe field holds."""
    command, _ = train_command(config.to_dict(), args.data_dir, args.out)
    if args.image_size:
        command += " --image-size {} {}".format(*args.image_size)
    if on_error(args) == "skip":
        command += " --skip-bad-images"
    return command


def recorded_folder(out, recorded):
    """The data folder a run to resume was started on (None: CIFAR-10's download). Refused in
    one line when it is gone or, for a run of an older version, not found from here: never a
    download in its place."""
    from mobilevit_utils import environment

    folder, source = recorded.get("data_dir"), recorded["data"].get("source")
    if folder:
        if Path(folder).is_dir():
            return folder
        raise CLIError(
            f"--resume: {out} was started on {folder}, which is gone; pass --data-dir with the "
            "same images"
        )
    if "data_dir" in recorded or source in (None, CIFAR10_DOWNLOAD):
        return None
    for base in (environment.project_root(), Path.cwd()):  # an older run: its display path
        if base is not None and (base / source).is_dir():
            return str(base / source)
    raise CLIError(
        f"--resume: {out} was started on {source}, which is not found from here; pass "
        "--data-dir with the same images"
    )


def resumed_recipe(args):
    """With --resume of an unfinished run: what it was started with, for what the command
    leaves out (its data folder, --image-size, --skip-bad-images, set in `args`); returns its
    recipe (None: not a resume, the preset's). Another --preset is refused in one line."""
    from mobilevit_utils import training

    recorded = training.recorded_start(args.out) if args.resume else None
    if recorded is None:
        return None
    recipe = recorded["recipe"]
    name = recipe.get("name")
    if name not in training.RECIPES or (args.preset and args.preset != name):
        raise CLIError(
            f"--resume: {args.out} was started with the {name} recipe, not "
            f"{args.preset or DEFAULT_PRESET}; resume it with the same recipe (--preset {name}), "
            "or start a new run (--overwrite, or another output folder)"
            if name in training.RECIPES
            else f"--resume: {args.out} was started from Python with a custom recipe; resume it "
            "there (training.train(..., resume=True))"
        )
    if not args.data_dir:
        args.data_dir = recorded_folder(args.out, recorded)
    if args.image_size is None and recorded.get("image_size"):
        args.image_size = list(recorded["image_size"])
    args.skip_bad_images = args.skip_bad_images or recorded.get("on_error") == "skip"
    preset = training.get_recipe(name)
    fields = {field.name for field in dataclasses.fields(training.TrainConfig)}
    config = dataclasses.replace(preset, **{k: v for k, v in recipe.items() if k in fields})
    # Recorded as resolved: the fine-tuned model's layout, which train resolves again.
    return dataclasses.replace(config, model=preset.model) if config.init_from else config


def run(args):
    from mobilevit_utils import training

    base = resumed_recipe(args) or training.get_recipe(args.preset or DEFAULT_PRESET)
    overrides = train_overrides(args)
    config = dataclasses.replace(base, **overrides)
    check_recipe(config, overrides)
    if args.image_size and min(args.image_size) < 32:  # the model's smallest input
        raise CLIError(
            f"--image-size must be at least 32 32, got {args.image_size[0]} {args.image_size[1]}"
        )
    check_paths(args)
    result = training.train(
        config,
        run_dir=args.out,
        data_dir=args.data_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        image_size=tuple(args.image_size) if args.image_size else None,
        on_error=on_error(args),
        command=reproducing_command(args, config),
    )
    print(f"best checkpoint: {result['checkpoint']}")
    print(f"model card: {result['card']}")
