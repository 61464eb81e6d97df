"""Teachers for offline distillation: architectures from this package, only weights from files.

Loading a teacher never runs code stored in a file (docs/CONTRACT.md, "No code runs on load").
The architecture always comes from Python - this package's registry, named by a build record or
by you, or a gin-bound model_fn - and only weights are read from disk. A teacher
(`generate.teacher`, `Selection.model`) is one of:

  MODEL_DIR          a run directory of `python -m experiments.train`: its build.json names the
                     model and final.weights.h5 holds the weights (the EMA weights when the run
                     had EMA);
  FILE.h5            a weights file that carries a build record (the trainer's final.weights.h5,
                     `python -m mobilenetv4.convert` output);
  @registered_teacher()   a registered model name + a weights file without a record (.h5, a TF
                     checkpoint prefix or a timm .safetensors);
  @trained_model()   any gin model_fn (e.g. `resized_model`) + the weights the trainer saved;
  a tf_keras model   (Python API) used as it is.

A full model file - `.keras`, an `.h5` holding a `model_config`, a SavedModel directory - needs
deserialising code (a Keras `Lambda` layer stores Python bytecode) and is refused with a one-line
UserError (exit 2), unless you pass the documented opt-in for a file you trust:
`load_teacher.trust_model_file = True`. Even then a `.keras` file loads with tf_keras'
`safe_mode=True` (no Lambda bytecode) and a SavedModel through its serving signature; an `.h5`
model file is the one format whose loader has no safe mode, so trusting it means trusting its
code. Pickles are never loaded.
"""

import dataclasses
import math
import os
from typing import Callable, Optional

import gin
import numpy as np
import tensorflow as tf
import tf_keras as keras

from mobilenetv4 import build_record
from mobilenetv4 import model_names
from mobilenetv4.cli import UserError

TEACHER_OUTPUTS = ("logits", "probabilities")
WEIGHTS_FILE = "final.weights.h5"  # what the trainer writes into MODEL_DIR
# Formats that can carry code when deserialised; this package has no loader for them.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".bin", ".npy", ".npz")
_OPT_IN = "load_teacher.trust_model_file = True"
_HOW = (
    "give a training run directory, a weights .h5 with a build record, or "
    "@registered_teacher() / @trained_model() (docs/distillation.md)"
)


@dataclasses.dataclass
class Teacher:
    """A loaded teacher: the callable model, the normalisation its build record names (None when
    unknown), and one line saying where it came from."""

    model: Callable
    preprocessing: Optional[str]
    source: str


@gin.configurable(module="distill", allowlist=["trust_model_file"])
def load_teacher(teacher, image_size=None, trust_model_file=False, details=False):
    """The teacher as a callable model (or, with details=True, a `Teacher`).

    Args:
      teacher: a run directory, a weights .h5 with a build record, a tf_keras model (or any
        callable), or - only with trust_model_file - a full model file (see the module docstring).
      image_size: (H, W) of the images the teacher will see; a teacher built from a record at
        another resolution gets a bilinear resize in front (as `resized_model`).
      trust_model_file: the opt-in for full model files you trust (gin:
        `load_teacher.trust_model_file = True`). Off by default: such files are refused.
      details: return a `Teacher` instead of the bare model.
    """
    result = _open(teacher, image_size, bool(trust_model_file))
    return result if details else result.model


def _open(teacher, image_size, trust):
    if isinstance(teacher, Teacher):
        return teacher
    if callable(teacher):
        return Teacher(teacher, None, f"the model {getattr(teacher, 'name', teacher)!r}")
    if not isinstance(teacher, (str, os.PathLike)):
        raise UserError(f"teacher {teacher!r} is neither a path nor a model; {_HOW}")
    path = os.fspath(teacher)
    if not os.path.exists(path):
        if os.path.exists(path + ".index"):
            raise UserError(
                f"teacher {path} is a TF checkpoint, which does not say which model it "
                f"fits; use @registered_teacher() with its model name"
            )
        raise UserError(f"teacher {path} does not exist; {_HOW}")
    if os.path.isdir(path):
        return _open_dir(path, image_size, trust)
    lower = path.lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise UserError(
            f"teacher {path} is a pickle-based file, which can run code when loaded; "
            f"this package never loads one: {_HOW}"
        )
    if lower.endswith(".keras"):
        if not trust:
            raise UserError(
                f"teacher {path} is a full .keras model file, which may hold code "
                f"(Lambda layers); refused. {_HOW}, or set {_OPT_IN} for a file you trust"
            )
        return _load_keras_file(path, image_size)
    if lower.endswith((".h5", ".hdf5")):
        return _open_h5(path, image_size, trust)
    if lower.endswith(".safetensors"):
        raise UserError(
            f"teacher {path} holds timm weights; name the model with "
            "@registered_teacher() (registered_teacher.name, registered_teacher.weights)"
        )
    raise UserError(f"teacher {path} is not a format a teacher is read from; {_HOW}")


def _open_dir(path, image_size, trust):
    record_file = os.path.join(path, build_record.RUN_FILE)
    if os.path.isfile(record_file):
        record = build_record.read_run(path)
        weights = os.path.join(path, WEIGHTS_FILE)
        if not os.path.isfile(weights):
            raise UserError(
                f"teacher run directory {path} has no {WEIGHTS_FILE} (the training did "
                "not finish); finish or rerun the training first"
            )
        return _from_record(record, weights, record_file, image_size)
    if tf.saved_model.contains_saved_model(path):
        if not trust:
            raise UserError(
                f"teacher {path} is a SavedModel, whose graph is code this package did "
                f"not write; refused. {_HOW}, or set {_OPT_IN} for a model you trust"
            )
        return _load_saved_model(path)
    raise UserError(
        f"teacher directory {path} holds no {build_record.RUN_FILE} (not a training "
        f"run directory); {_HOW}"
    )


def _h5_holds_model(path):
    import h5py  # pylint: disable=g-import-not-at-top

    try:
        with h5py.File(path, "r") as f:
            return "model_config" in f.attrs
    except OSError:
        raise UserError(
            f"teacher {path} is not a readable HDF5 file (corrupt or another format); re-create it"
        ) from None


def _open_h5(path, image_size, trust):
    if _h5_holds_model(path):
        if not trust:
            raise UserError(
                f"teacher {path} is a full Keras model file (it holds a model_config, "
                "whose Lambda layers would run stored code when loaded); refused. "
                f"{_HOW}, or set {_OPT_IN} for a file you trust"
            )
        try:
            import mobilenetv4  # pylint: disable=g-import-not-at-top

            model = keras.models.load_model(
                path, custom_objects=mobilenetv4.custom_objects(), compile=False
            )
        except (ValueError, OSError, TypeError) as e:
            raise UserError(
                f"cannot load the trusted model file {path}: {_first_line(e)}"
            ) from None
        return Teacher(model, None, f"the trusted model file {path}")
    record = build_record.read_h5(path)
    if record is None:
        raise UserError(
            f"teacher {path} holds weights without a build record, so the model it "
            "fits is unknown; use @registered_teacher() with registered_teacher.name "
            "(e.g. 'conv_small') and registered_teacher.weights"
        )
    return _from_record(record, path, path, image_size)


def _load_keras_file(path, image_size):
    del image_size
    try:
        import mobilenetv4  # pylint: disable=g-import-not-at-top

        model = keras.models.load_model(
            path, custom_objects=mobilenetv4.custom_objects(), compile=False, safe_mode=True
        )
    except (ValueError, OSError, TypeError) as e:
        raise UserError(
            f"cannot load the trusted model file {path} in safe mode (a Lambda layer "
            f"is refused even when trusted): {_first_line(e)}"
        ) from None
    return Teacher(model, None, f"the trusted model file {path}")


def _load_saved_model(path):
    loaded = tf.saved_model.load(path)
    if "serving_default" not in getattr(loaded, "signatures", {}):
        raise UserError(f"SavedModel {path} has no 'serving_default' signature to call")
    signature = loaded.signatures["serving_default"]

    def call(images, training=False):
        del training
        outputs = signature(images)
        if len(outputs) != 1:
            raise UserError(f"SavedModel {path} returns {sorted(outputs)}; expected one output")
        return next(iter(outputs.values()))

    call._keep_alive = loaded  # the signature needs the loaded object alive
    return Teacher(call, None, f"the trusted SavedModel {path}")


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _build_kwargs(build):
    from mobilenetv4 import builder  # pylint: disable=g-import-not-at-top

    allowed = set(builder.build_model.__kwdefaults__) - {"name", "kernel_regularizer"}
    kwargs = {k: v for k, v in (build or {}).items() if k in allowed}
    if "input_shape" in kwargs and kwargs["input_shape"] is not None:
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    return kwargs


def _from_record(record, weights, where, image_size):
    """create_model(record's model, record's build) + the weights; resized to image_size."""
    import mobilenetv4  # pylint: disable=g-import-not-at-top

    name = record.get("model")
    if not name:
        raise UserError(
            f"{where} describes a searched architecture, not a registered model; a "
            "teacher must be a registered model: use @trained_model() with its model_fn"
        )
    kwargs = _build_kwargs(record.get("build"))
    if record.get("input_size") and "input_shape" not in kwargs:
        h, w = record["input_size"][:2]
        kwargs["input_shape"] = (int(h), int(w), 3)
    try:
        model = mobilenetv4.create_model(name, **kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(
            f"{where}: cannot build {name!r} from its build record: {_first_line(e)}"
        ) from None
    outer = record.get("teacher_resize")
    if outer:  # trained as resized_model: the same wrap, so the saved weights fit
        model = _resize_wrap(model, tuple(int(s) for s in outer[:2]))
    _load_weights(model, weights)
    model = _at_size(model, image_size)
    return Teacher(
        model, record.get("preprocessing"), f"{weights} ({build_record.describe(record)})"
    )


def _load_weights(model, path):
    try:
        model.load_weights(path)  # reads tensors by layer name; never deserialises a config
    except (ValueError, OSError, KeyError) as e:
        raise UserError(
            f"cannot load the weights {path} into {model.name}: {_first_line(e)}; "
            "the file was built for another model or is damaged"
        ) from None


def _at_size(model, image_size):
    """`model` behind a bilinear resize when its fixed input size differs from image_size."""
    if image_size is None:
        return model
    want = tuple(int(s) for s in image_size)
    have = tuple(model.input_shape[1:3])
    if None in have or have == want:
        return model
    return _resize_wrap(model, want)


@gin.configurable(module="distill")
def registered_teacher(
    name=gin.REQUIRED,
    weights=gin.REQUIRED,
    classes=None,
    input_size=None,
    width_multiplier=None,
    attention_type=None,
    padding=None,
    pretrained_tag=None,
):
    """A registered MobileNetV4 (`name`, optionally NAME@H[xW]) with `weights` loaded.

    weights: a tf_keras weights file (.h5 / .weights.h5, with or without a build record), a TF
    checkpoint prefix, or a timm .safetensors. Only tensors are read from it. Arguments left None
    come from the file's build record when it has one (classes, width, ...); a record for another
    model, or other classes or width, is an error naming both.
    """
    import mobilenetv4  # pylint: disable=g-import-not-at-top

    ref = model_names.parse(str(name))
    if ref.source != "mobilenetv4":
        raise UserError(
            f"registered_teacher.name {name!r} is not a MobileNetV4 name; use e.g. "
            "conv_small or conv_large@256"
        )
    weights = os.fspath(weights)
    if not (os.path.exists(weights) or os.path.exists(weights + ".index")):
        raise UserError(f"registered_teacher.weights {weights} does not exist")
    if weights.lower().endswith(PICKLE_SUFFIXES):
        raise UserError(
            f"registered_teacher.weights {weights} is pickle-based and is never loaded; "
            "convert it to .safetensors or a tf_keras .h5 first"
        )
    record = build_record.read_h5(weights)
    build = {
        "classes": classes,
        "width_multiplier": width_multiplier,
        "attention_type": attention_type,
        "padding": padding,
    }
    build_record.check_compatible(record, ref.name, build, weights)
    kwargs = {k: v for k, v in build.items() if v is not None}
    if record:
        kwargs = {**_build_kwargs(record.get("build")), **kwargs}
    size = input_size or ref.size or (record or {}).get("input_size")
    if size:
        h, w = (size, size) if isinstance(size, int) else tuple(size)[:2]
        if int(h) < 1 or int(w) < 1:
            raise UserError(f"registered_teacher.input_size must be positive, got {size}")
        kwargs["input_shape"] = (int(h), int(w), 3)
    try:
        if weights.lower().endswith(".safetensors"):
            return mobilenetv4.create_model(
                ref.name, weights=weights, pretrained_tag=pretrained_tag, **kwargs
            )
        model = mobilenetv4.create_model(ref.name, **kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(f"cannot build teacher {name!r} with {weights}: {_first_line(e)}") from None
    _load_weights(model, weights)
    return model


@gin.configurable(module="distill")
def trained_model(weights=gin.REQUIRED, model_fn=None, num_classes=None, image_size=None):
    """A model built by `model_fn(num_classes, image_size)` (e.g. the trainer's mobilenetv4_model
    or `resized_model`) with the weights the trainer saved (model_dir/final.weights.h5). Only the
    weights are read from the file (checked first); model_fn, num_classes and image_size are
    required."""
    weights = os.fspath(weights)
    if not (os.path.exists(weights) or os.path.exists(weights + ".index")):
        raise UserError(
            f"teacher weights {weights} do not exist; train the teacher first "
            "(python -m experiments.train ...) or fix the path"
        )
    if weights.lower().endswith(PICKLE_SUFFIXES):
        raise UserError(f"teacher weights {weights} are pickle-based and are never loaded")
    missing = [
        k
        for k, v in (
            ("model_fn", model_fn),
            ("num_classes", num_classes),
            ("image_size", image_size),
        )
        if v is None
    ]
    if missing:
        raise UserError(
            f"trained_model needs {', '.join('trained_model.' + k for k in missing)} "
            f"to build the model for {weights}"
        )
    model = model_fn(num_classes=num_classes, image_size=image_size)
    _load_weights(model, weights)
    return model


@gin.configurable(module="distill")
def resized_model(num_classes, image_size, model_fn=gin.REQUIRED, input_size=gin.REQUIRED):
    """`model_fn(num_classes, input_size)` behind a bilinear resize from `image_size`.

    A model_fn for the trainer and for `trained_model`: the teacher takes the student's images
    (e.g. 32x32 shards) and upsamples them inside, so it can run at a resolution where it is
    stronger (MobileNetV4 reduces 32 px to 1x1) while data, shards and preprocessing stay at the
    student's size. The Resizing layer has no weights, so saved weights load into the same wrap.
    """
    if int(input_size) < 1 or int(image_size) < 1:
        raise UserError(
            f"image_size and input_size must be positive, got {image_size}, {input_size}"
        )
    inner = model_fn(num_classes=num_classes, image_size=int(input_size))
    model = _resize_wrap(inner, (int(image_size), int(image_size)))
    own = getattr(inner, "build_record", None)
    if own:  # the run's build.json then rebuilds this wrap (load_teacher(MODEL_DIR))
        from experiments import trainer  # pylint: disable=g-import-not-at-top

        trainer.attach_build_record(
            model, dict(own, input_size=[int(input_size)] * 2, teacher_resize=[int(image_size)] * 2)
        )
    return model


def _resize_wrap(inner, outer_size):
    """Model(outer_size images) -> bilinear resize to inner's input -> inner. The layout of
    `resized_model`, so the weights the trainer saved from one load into the other."""
    h, w = tuple(int(s) for s in inner.input_shape[1:3])
    inputs = keras.Input(tuple(outer_size) + (3,))
    x = keras.layers.Resizing(h, w, interpolation="bilinear", name="teacher_resize")(inputs)
    return keras.Model(inputs, inner(x), name=f"{inner.name}_at{h}")


class TeacherRunner:
    """Maps uint8 image batches to teacher probabilities, splitting each batch over replicas.

    `preprocess` turns uint8 [B, H, W, 3] into what the teacher was trained on. `output` says
    whether the teacher ends in logits (softmax applied here, at `temperature`) or probabilities.
    Batches are padded to `batch_size` so the distributed function traces once.
    """

    def __init__(
        self, model, batch_size, preprocess, output="logits", temperature=1.0, strategy=None
    ):
        if output not in TEACHER_OUTPUTS:
            raise UserError(f"teacher output {output!r} unknown; choose one of {TEACHER_OUTPUTS}")
        if not (
            isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
        ):
            raise UserError(f"temperature must be a finite number above 0, got {temperature}")
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise UserError(
                f"batch_size {batch_size} must be a multiple of the {replicas} replicas"
            )
        self.batch_size = batch_size
        self.per_replica = batch_size // replicas
        self.model = model

        def step(images):
            out = model(preprocess(images), training=False)
            out = tf.cast(out, tf.float32)
            return tf.nn.softmax(out / temperature) if output == "logits" else out

        @tf.function
        def run(per_replica_images):
            probs = self.strategy.run(step, args=(per_replica_images,))
            return self.strategy.gather(probs, axis=0)

        self._run = run

    def __call__(self, images):
        images = np.asarray(images)
        n = len(images)
        if n > self.batch_size:
            raise ValueError(f"got {n} images, more than batch_size {self.batch_size}")
        if n < self.batch_size:
            pad = np.zeros((self.batch_size - n,) + images.shape[1:], images.dtype)
            images = np.concatenate([images, pad])
        chunks = [
            images[i * self.per_replica : (i + 1) * self.per_replica]
            for i in range(self.strategy.num_replicas_in_sync)
        ]
        dist = self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(chunks[ctx.replica_id_in_sync_group])
        )
        probs = self._run(dist).numpy()[:n]
        if not np.all(np.isfinite(probs)):
            raise UserError("teacher produced non-finite outputs; check its weights and preprocess")
        return probs
