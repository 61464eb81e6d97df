"""Hostile files and small data for the reliability acceptance tests (issue 16).

`make_hostile(directory)` writes files that run code when deserialised the usual way, each
leaving its own marker file in `directory/markers` if it ever does:

  model.h5            a full tf_keras model (.h5) with a Lambda layer: its stored bytecode runs
                      when `keras.models.load_model` rebuilds the model
  model_record.h5     the same file, also carrying a forged build record for conv_small (10
                      classes, 32 px), so record-driven loaders get as far as reading weights
  model.keras         the same model in the .keras format (runs with safe_mode=False)
  evil.pkl            a pickle whose `__reduce__` runs code on `pickle.load`
  evil.pt             the same pickle inside a torch.save-style zip (archive/data.pkl)
  evil.npy / evil.npz an object array holding that pickle (runs on np.load(allow_pickle=True))
  pickle.safetensors  the pickle under a .safetensors name
  run/                a training run directory: build.json (conv_small, 10 classes, 32 px),
                      final.weights.h5 = model_record.h5, checkpoints/ whose files are pickles
  images/             an image folder (one class sub-folder) of 16 .png/.jpg files and an
                      .npy and a .pkl, all pickles

tests/reliability/test_no_code_execution.py checks that these files really are hostile.
"""

import os
import pickle
import shutil
import zipfile

import numpy as np

HOSTILE_FILES = (
    "model.h5",
    "model_record.h5",
    "model.keras",
    "evil.pkl",
    "evil.pt",
    "evil.npy",
    "evil.npz",
    "pickle.safetensors",
)


class _Payload:
    """Unpickling this writes the marker file (pickle calls exec with the stored source)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def _lambda_model(marker):
    import tf_keras as keras

    def payload(x, marker=marker):
        open(marker, "w").write("code ran")  # noqa: SIM115 - the payload of a hostile file
        return x

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(payload, name="payload")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="hostile")


def make_hostile(directory):
    """Writes the hostile files into `directory` (see the module docstring); returns
    {name: path} plus "markers" (the folder a payload writes into; empty when no code ran)."""
    from mobilenetv4 import build_record

    directory = os.fspath(directory)
    markers = os.path.join(directory, "markers")
    os.makedirs(markers, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in HOSTILE_FILES}
    marker = lambda name: os.path.join(markers, name + ".ran")

    import warnings

    for name in ("model.h5", "model_record.h5", "model.keras"):
        model = _lambda_model(marker(name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "HDF5 is legacy": the point here
            model.save(paths[name])
    record = build_record.make(
        "conv_small",
        build={"classes": 10, "width_multiplier": 1.0},
        input_size=(32, 32),
        preprocessing="imagenet",
        weights="raw",
    )
    build_record.write_h5(paths["model_record.h5"], record)

    evil = pickle.dumps(_Payload(marker("evil.pkl")))
    with open(paths["evil.pkl"], "wb") as f:
        f.write(evil)
    with zipfile.ZipFile(paths["evil.pt"], "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(_Payload(marker("evil.pt"))))
        z.writestr("archive/version", "3\n")
    np.save(
        paths["evil.npy"], np.array([_Payload(marker("evil.npy"))], dtype=object), allow_pickle=True
    )
    np.savez(paths["evil.npz"], a=np.array([_Payload(marker("evil.npz"))], dtype=object))
    with open(paths["pickle.safetensors"], "wb") as f:
        f.write(pickle.dumps(_Payload(marker("pickle.safetensors"))))

    run = os.path.join(directory, "run")
    os.makedirs(os.path.join(run, "checkpoints"))
    build_record.write_run(run, dict(record, has_ema=False))
    shutil.copy(paths["model_record.h5"], os.path.join(run, "final.weights.h5"))
    ckpt_pickle = pickle.dumps(_Payload(marker("run_checkpoint")))
    with open(os.path.join(run, "checkpoints", "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "ckpt-1"\nall_model_checkpoint_paths: "ckpt-1"\n')
    for part in ("ckpt-1.index", "ckpt-1.data-00000-of-00001"):
        with open(os.path.join(run, "checkpoints", part), "wb") as f:
            f.write(ckpt_pickle)
    paths["run"] = run

    images = os.path.join(directory, "images")
    os.makedirs(os.path.join(images, "digit"))
    for i, suffix in enumerate((".png", ".jpg") * 8 + (".npy", ".pkl")):
        with open(os.path.join(images, "digit", f"{i}{suffix}"), "wb") as f:
            f.write(pickle.dumps(_Payload(marker(f"images_{i}{suffix}"))))
    paths["images"] = images

    for leftover in os.listdir(markers):  # building called the Lambda once: not the loaders' doing
        os.unlink(os.path.join(markers, leftover))
    paths["markers"] = markers
    return paths


def write_digits_tfrecord(path, n=40, size=32, classes=10, label_offset=0):
    """n PNG-encoded random `size` px RGB images with labels (i % classes) + label_offset."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(os.fspath(path)) as w:
        for i in range(n):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            feature = {
                "image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])
                ),
                "image/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[i % classes + label_offset])
                ),
            }
            w.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    return os.fspath(path)
