"""Trains the same BN-free model with 1 and 2 (logical CPU) replicas at the
same global batch and prints the largest weight difference as JSON.
Run by test_trainer.py in its own process (logical devices must be set first)."""

import json
import os
import sys
import tempfile

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
from training_fixtures import bn_free_model, random_array_data  # noqa: E402
from experiments import trainer  # noqa: E402

runs = []
for strategy in ("default", "mirrored"):
    built = []

    def model_fn(num_classes, image_size):
        built.append(bn_free_model(num_classes, image_size))
        built.append([w.copy() for w in built[0].get_weights()])  # initial values
        return built[0]

    with tempfile.TemporaryDirectory() as model_dir:
        result = trainer.train(
            model_dir,
            data=random_array_data(n=64, size=16, classes=4),
            model_fn=model_fn,
            batch_size=16,
            epochs=2,
            peak_learning_rate=0.01,
            warmup_epochs=1,
            weight_decay=0.1,
            ema_decay=0.9,
            strategy=strategy,
            mixed_precision="float32",
            log_every_steps=4,
        )
        trained = built[0].get_weights()
        built[0].load_weights(result["weights"])  # the EMA weights
        runs.append((result["replicas"], built[1], trained, built[0].get_weights()))

(r1, init1, final1, ema1), (r2, init2, final2, ema2) = runs
print(
    json.dumps(
        {
            "replicas": [r1, r2],
            "max_abs_init_difference": max(
                float(np.abs(a - b).max()) for a, b in zip(init1, init2)
            ),
            "max_abs_weight_difference": max(
                float(np.abs(a - b).max()) for a, b in zip(final1, final2)
            ),
            "max_abs_ema_difference": max(float(np.abs(a - b).max()) for a, b in zip(ema1, ema2)),
            "max_abs_weight_change": max(float(np.abs(a - b).max()) for a, b in zip(final1, init1)),
        }
    )
)
