"""Is the input pipeline fast enough? Images/s of the augmented training pipeline versus the
model's training images/s, measured on this machine in one run. The ratio should be >= 5.

    MOBILEVIT_DATA_DIR=../shared/data python benchmarks/input_pipeline.py --augmentation strong
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import train_images_per_second  # noqa: E402

from mobilevit_utils import augmentation, data  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--augmentation", default="strong", choices=list(augmentation.POLICIES))
    parser.add_argument("--variant", default="xxs_cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()

    dataset = data.load_dataset(max_per_class=1000)
    config = augmentation.get_augmentation(args.augmentation)
    pipeline = data.make_pipeline(
        dataset.x_train,
        dataset.y_train,
        args.batch_size,
        num_classes=dataset.num_classes,
        training=True,
        augmenter=augmentation.build_augmenter(config, 0),
        mixer=augmentation.build_mixer(config, 0),
    ).repeat()
    pipeline_speed = data.measure_throughput(pipeline, max_batches=args.batches)
    model_speed, _, _ = train_images_per_second(args.variant, args.batch_size, steps=5)
    print(f"augmentation        {args.augmentation}")
    print(f"input pipeline      {pipeline_speed:,.0f} images/s")
    print(
        f"model training      {model_speed:,.1f} images/s ({args.variant}, batch {args.batch_size})"
    )
    print(
        f"ratio               {pipeline_speed / model_speed:.1f}x (>= 5 means the pipeline is not the bottleneck)"
    )


if __name__ == "__main__":
    main()
