"""One quick training run under KERAS_BACKEND, on two logical CPU devices where the backend
supports it (TensorFlow MirroredStrategy, JAX DataParallel). Usage: python distributed_train.py OUT"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/helpers.py
backend = os.environ["KERAS_BACKEND"]
strategy = None
if backend == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    replicas = strategy.num_replicas_in_sync
elif backend == "jax":
    import jax

    strategy = "data_parallel"
    replicas = len(jax.devices())
else:
    replicas = 1

from helpers import tiny_dataset  # noqa: E402

from mobilevit_utils import training  # noqa: E402

result = training.train(
    "quick",
    run_dir=sys.argv[1],
    dataset=tiny_dataset(n_per_class=16),
    strategy=strategy,
    epochs=1,
    batch_size=8,
    overwrite=True,
)
loss = result["history"][-1]["loss"]
assert loss == loss, "loss is NaN"
print(f"{backend}: trained on {replicas} device(s), loss {loss:.3f}")
