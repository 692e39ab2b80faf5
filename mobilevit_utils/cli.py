"""Command line: `python -m mobilevit_utils {train,evaluate,predict,export} ...`.

Errors a user can fix (missing data, bad arguments, unwritable folders) print one line and exit
with status 2; nothing prints a traceback unless MOBILEVIT_VERBOSE=1.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_USAGE = 2


class CLIError(Exception):
    """A problem the user can fix; printed as one line."""


# The recipe fields `train` can override, with their flags.
TRAIN_OVERRIDES = {"model": "--model", "epochs": "--epochs", "batch_size": "--batch-size",
                   "learning_rate": "--lr", "augmentation": "--augmentation",
                   "label_smoothing": "--label-smoothing", "ema": "--ema",
                   "mixed_precision": "--mixed-precision", "jit_compile": "--jit-compile",
                   "max_per_class": "--max-per-class", "seed": "--seed"}


def _flag_words(flag, value):
    """`--flag value`, or `--flag` / `--no-flag` for on/off fields."""
    if isinstance(value, bool) and flag != "--jit-compile":
        return flag if value else f"--no-{flag[2:]}"
    return f"{flag} {str(value).lower() if isinstance(value, bool) else value}"


def train_command(config, data_dir=None, out=None):
    """The `train` command line that reproduces a run's resolved recipe (its config.json, a dict),
    and the recipe fields no flag can set (differences from the preset; empty when none)."""
    from mobilevit_utils import training

    preset = training.get_recipe(config["name"]).to_dict()
    words = ["python -m mobilevit_utils train", f"--preset {config['name']}"]
    for field, flag in TRAIN_OVERRIDES.items():
        if field == "seed" or config[field] != preset[field]:
            words.append(_flag_words(flag, config[field]))
    if data_dir:
        words.append(f"--data-dir {data_dir}")
    if out:
        words.append(f"--out {out}")
    unexpressed = {k: v for k, v in config.items()
                   if k != "name" and k not in TRAIN_OVERRIDES and v != preset.get(k)}
    return " ".join(words), unexpressed


def _add_train(sub):
    from mobilevit_utils import augmentation, models, training

    p = sub.add_parser(
        "train", help="train a model and keep the best checkpoint",
        description="Train MobileViT with a recipe preset; prints one line per epoch and the "
                    "path of the best checkpoint (OUT/model.keras).",
    )
    p.add_argument("--preset", "--recipe", default="cpu", choices=sorted(training.RECIPES),
                   help="recipe: quick (seconds, CI), cpu (<= 2 h on 2 cores), gpu (full recipe); "
                        "default %(default)s")
    p.add_argument("--model", default=None, choices=sorted(models.MODEL_CONFIGS),
                   help="variant (default: the preset's, xxs_cifar)")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (train/<class>/*.jpg, or the CIFAR-10 JPEG archive); "
                        "default $MOBILEVIT_DATA_DIR, else download CIFAR-10")
    p.add_argument("--out", required=True, help="run folder for checkpoint, history and metadata")
    p.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the preset's peak learning rate")
    p.add_argument("--augmentation", help="override the preset's augmentation policy: "
                                          f"{', '.join(augmentation.POLICIES)}")
    p.add_argument("--label-smoothing", type=float, help="override the preset's label smoothing")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="validate and keep an exponential moving average of the weights")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                   help="float16 compute with float32 weights and logits (GPUs; slow on CPUs)")
    p.add_argument("--jit-compile", type=_jit_value, metavar="{auto,true,false}",
                   help="XLA (TensorFlow) / torch.compile (PyTorch); auto: XLA on GPUs only")
    p.add_argument("--max-per-class", type=int, help="train on at most this many images per class")
    p.add_argument("--seed", type=int, help="random seed (default: the preset's, 42)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last finished epoch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.set_defaults(handler=_train)


def _jit_value(text):
    values = {"auto": "auto", "true": True, "false": False}
    if text.lower() not in values:
        raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")
    return values[text.lower()]


def train_overrides(args):
    """The recipe fields a parsed `train` command sets (flags left out keep the preset's)."""
    overrides = {field: getattr(args, flag[2:].replace("-", "_"))
                 for field, flag in TRAIN_OVERRIDES.items()}
    return {field: value for field, value in overrides.items() if value is not None}


def _train(args):
    from mobilevit_utils import augmentation, training

    overrides = train_overrides(args)
    if "augmentation" in overrides and overrides["augmentation"] not in augmentation.POLICIES:
        raise CLIError(f"--augmentation must be one of {list(augmentation.POLICIES)}, "
                       f"got {overrides['augmentation']!r}")
    for key in ("epochs", "batch_size", "max_per_class"):
        if key in overrides and overrides[key] < 1:
            raise CLIError(f"--{key.replace('_', '-')} must be at least 1, got {overrides[key]}")
    result = training.train(args.preset, run_dir=args.out, data_dir=args.data_dir,
                            resume=args.resume, overwrite=args.overwrite, **overrides)
    print(f"best checkpoint: {result['checkpoint']}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m mobilevit_utils",
        description="MobileViT for Keras 3: train, evaluate, predict and export image classifiers.",
        epilog="Set KERAS_BACKEND=jax|torch|tensorflow to choose the backend.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from mobilevit_utils import evaluation, export

    _add_train(sub)
    for add in (*evaluation.CLI_COMMANDS, *export.CLI_COMMANDS):
        add(sub)
    return parser


def _user_errors():
    from mobilevit_utils import data, training

    return (CLIError, data.DataError, training.RunExistsError, PermissionError,
            FileNotFoundError, ValueError)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue from the last finished epoch",
              file=sys.stderr)
        return 130
    except _user_errors() as error:
        if os.environ.get("MOBILEVIT_VERBOSE"):
            raise
        message = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
