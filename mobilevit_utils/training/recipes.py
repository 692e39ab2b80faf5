"""Recipes: a training run's settings as plain data (`TrainConfig`), and the named presets."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training recipe: plain data. Copy and edit with `dataclasses.replace(RECIPES[...], ...)`."""

    name: str = "custom"
    model: str = "xxs_cifar"
    num_heads: int | None = None  # attention heads per transformer; None keeps the variant's
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 2e-3  # peak, reached after warm-up
    min_learning_rate: float = 2e-5  # end of the cosine decay
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # "cosine" (warm-up + cosine) or "plateau" (ReduceLROnPlateau)
    optimizer: str = "adamw"  # "adamw", "adam" or "sgd" (momentum 0.9, nesterov)
    weight_decay: float = 0.05  # AdamW/SGD; never applied to norms and biases
    gradient_clip_norm: float | None = 1.0  # clip the global gradient norm: rare spikes derail runs
    ema: bool = False  # validate and checkpoint an exponential moving average of the weights
    ema_momentum: float = 0.999  # the average's memory: about 1 / (1 - momentum) steps
    # Validate and checkpoint an average of the weights and BatchNorm statistics whose decay
    # warms up, min(ema_momentum, (1 + t) / (10 + t)) at its t-th update, one update every
    # `averaging_interval` steps (`WeightAverage`); unlike `ema`, it does not lag a short run.
    weight_averaging: bool = False
    averaging_interval: int = 5
    label_smoothing: float = 0.1
    # "balanced": weigh each class's loss by n / (classes * its count), so that an imbalanced
    # dataset's rare classes count as much as the common ones (sklearn's rule); None: equal.
    class_weight: str | None = None
    augmentation: str = "light"  # a preset of mobilevit_utils.augmentation
    dropout: float = 0.1  # before the classifier
    transformer_dropout: float = 0.0
    validation_split: float = 0.1
    max_per_class: int | None = None  # train on a subset (quick runs)
    # Fitting images of another shape to the input (Keras' conventions): crop their centre to
    # its shape, or pad them whole with black bars; both False: stretch them. Recorded in the
    # run's metadata, so that evaluation, prediction and export fit images the same way.
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False
    early_stopping_patience: int | None = None
    mixed_precision: bool = False  # float16 compute, float32 weights and logits: for GPUs
    # XLA on TensorFlow, torch.compile on PyTorch (JAX always compiles). "auto" is Keras' rule:
    # XLA only where TensorFlow sees a GPU/TPU. On CPU, XLA measured 5x slower than TensorFlow's
    # own kernels (benchmarks/results/train_throughput.txt).
    jit_compile: bool | str = "auto"
    # Augment batches in parallel (tf.data AUTOTUNE): keeps a GPU fed, but the order in which
    # the random layers draw from their seed varies, so runs are no longer bit-reproducible.
    parallel_augmentation: bool = False
    # Fine-tuning: start from a trained model, a preset name (`presets.list_presets()`) or a
    # .keras file. Its backbone's weights, input size and preprocessing are kept; the head is
    # new, sized for the data's classes.
    init_from: str | None = None
    # With init_from: the new head alone first (backbone frozen, BatchNorm in inference mode),
    # for head_epochs at head_learning_rate; then `epochs` of every layer at learning_rate.
    head_epochs: int = 0
    head_learning_rate: float = 1e-3
    seed: int = 42

    def to_dict(self):
        return dataclasses.asdict(self)

    def problems(self):
        """(field, what it must be, its value) for every out-of-range number; empty when none."""
        checks = {
            "epochs": (self.epochs >= 1, "at least 1"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "learning_rate": (self.learning_rate > 0, "above 0"),
            "min_learning_rate": (self.min_learning_rate >= 0, "at least 0"),
            "warmup_epochs": (0 <= self.warmup_epochs, "at least 0"),
            "weight_decay": (self.weight_decay >= 0, "at least 0"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "at least 0 and below 1"),
            "dropout": (0 <= self.dropout < 1, "at least 0 and below 1"),
            "transformer_dropout": (0 <= self.transformer_dropout < 1, "at least 0 and below 1"),
            "validation_split": (0 <= self.validation_split < 1, "at least 0 and below 1"),
            "ema_momentum": (0 <= self.ema_momentum < 1, "at least 0 and below 1"),
            "averaging_interval": (self.averaging_interval >= 1, "at least 1"),
            "max_per_class": (self.max_per_class is None or self.max_per_class >= 1, "at least 1"),
            "seed": (self.seed >= 0, "at least 0"),
            "head_epochs": (self.head_epochs >= 0, "at least 0"),
            "head_learning_rate": (self.head_learning_rate > 0, "above 0"),
        }
        if self.gradient_clip_norm is not None:
            checks["gradient_clip_norm"] = (self.gradient_clip_norm > 0, "above 0")
        return [
            (field, need, getattr(self, field)) for field, (ok, need) in checks.items() if not ok
        ]

    def validate(self):
        """Raise ValueError naming the first out-of-range field (a negative learning rate
        trains to a loss of 1e24 and saves the checkpoint without complaint)."""
        for field, need, value in self.problems():
            raise ValueError(f"{field} must be {need}, got {value}.")
        if self.ema and self.weight_averaging:
            raise ValueError("ema and weight_averaging both average the weights; choose one.")
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError(
                "crop_to_aspect_ratio and pad_to_aspect_ratio both fit images to the input "
                "without stretching them; choose one."
            )
        return self


RECIPES = {
    # CI and notebooks in quick mode: a few hundred images, two epochs, seconds.
    "quick": TrainConfig(
        name="quick",
        epochs=2,
        batch_size=32,
        max_per_class=40,
        warmup_epochs=0.5,
        learning_rate=1e-3,
        augmentation="light",
    ),
    # Sized to 2 hours on 2 CPU cores from measured speed (benchmarks/README.md). MobileViTv2
    # width 0.5: at 12 epochs it beat v1 (xxs_cifar) by 3.12 and 2.62 points on two seeds; at
    # equal training time it tied the rebalanced v1 layout (82.48 against 82.78 %, within the
    # seeds' 0.86-point spread), so the layout with the larger gain per epoch won. 64 epochs at
    # its measured ~95 s per epoch here. Whole-pixel shifts ("light") gained 1.4 points at 12
    # epochs and 0.8 at 48 over the bilinear ones, now "light_bilinear". A run with peak
    # learning rate 2e-3 and no gradient clipping diverged halfway (epoch 15).
    "cpu": TrainConfig(
        name="cpu",
        model="v2_050_cifar",
        epochs=64,
        batch_size=128,
        learning_rate=1.5e-3,
        warmup_epochs=2.0,
        augmentation="light",
        label_smoothing=0.1,
    ),
    # The long recipe for one GPU (a Colab T4 or better). NEVER RUN ON A GPU: no GPU has been
    # available to this project, so its time and accuracy are unmeasured. It is the cpu
    # recipe's measured choices, scaled by stated rules (benchmarks/README.md, "The gpu recipe"):
    # - layout v2 0.5: 3 seeds per arm at 12 epochs, 83.85 +/- 0.27 % against v1's
    #   81.43 +/- 0.44, Welch's 95 % interval +1.5 to +3.3 points;
    # - SGD with Nesterov momentum against AdamW on v2, 3 seeds per arm: see the arms table;
    # - kept from cpu because what was tried against it lost at 12 epochs: the light policy
    #   (medium -3.7 points, MixUp -2.4, CutMix -3.1), no EMA (-1.3), label smoothing 0.1;
    # - 200 epochs: the small model keeps gaining past 64 (benchmarks/results/epoch_scaling.txt);
    # - batch 256 (float16 activations fit a few GB), the peak rate scaled linearly with the
    #   batch for SGD (Goyal et al., 2017): 0.1 at 128 -> 0.2; Keras' weight decay is decoupled
    #   and scales with the rate, so per epoch it decays as before;
    # - warm-up the cpu recipe's share of the schedule (2 of 64 epochs): 6 of 200.
    # Speed only: float16 compute, XLA, parallel augmentation. TensorFlow is the backend to use:
    # it also exports TFLite, and Colab ships it with GPU support.
    "gpu": TrainConfig(
        name="gpu",
        model="v2_050_cifar",
        epochs=200,
        batch_size=256,
        optimizer="sgd",
        learning_rate=0.2,
        weight_decay=5e-3,
        warmup_epochs=6.0,
        augmentation="light",
        label_smoothing=0.1,
        mixed_precision=True,
        jit_compile=True,
        parallel_augmentation=True,
    ),
    # Fine-tuning a trained model on a small dataset of your own (docs/guide.md, "Your own
    # images"): by default the v1 CIFAR-10 model (the previous release), from which its learning
    # rates and its measured gains were obtained; or any preset / .keras file (init_from).
    "finetune": TrainConfig(
        name="finetune",
        init_from="mobilevit_xxs_cifar10",
        # A random head's large early gradients would otherwise reach, and wreck, the
        # pretrained features: the head trains alone first, at a high rate (it is one layer).
        head_epochs=3,
        head_learning_rate=3e-3,
        # Then every layer, below the from-scratch peak (1.5e-3). Chosen on scikit-learn's
        # digits, 50 per class, judged on held-out training digits: 2e-4 / 1e-3 gave 86.1 %,
        # 5e-4 / 3e-3 96.4 %, 1e-3 / 3e-3 97.5 % (benchmarks/results/finetune_digits_lr.txt).
        # Small datasets: 20 % held out, small batches for enough steps.
        epochs=12,
        learning_rate=1e-3,
        min_learning_rate=2e-6,
        warmup_epochs=1.0,
        batch_size=32,
        validation_split=0.2,
        augmentation="light",
        label_smoothing=0.1,
    ),
}


def get_recipe(name):
    if isinstance(name, TrainConfig):
        return name
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; expected one of {sorted(RECIPES)}.")
    return RECIPES[name]
