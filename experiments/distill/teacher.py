"""Runs a teacher (any tf_keras model, Keras file or SavedModel) under tf.distribute."""
import os

import gin
import numpy as np
import tensorflow as tf
import tf_keras as keras

TEACHER_OUTPUTS = ("logits", "probabilities")


def load_teacher(teacher):
  """Returns a callable model from a tf_keras.Model, a .keras/.h5 file or a SavedModel dir."""
  if callable(teacher):
    return teacher
  path = os.fspath(teacher)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"teacher {path!r} does not exist; pass a tf_keras model file "
                            "(.keras/.h5) or a SavedModel directory")
  try:
    import mobilenetv4  # registered layers, when the library is installed
    custom = mobilenetv4.custom_objects()
  except (ImportError, AttributeError):
    custom = {}
  try:
    return keras.models.load_model(path, custom_objects=custom, compile=False)
  except (ValueError, OSError, TypeError):
    if not tf.saved_model.contains_saved_model(path):
      raise ValueError(f"cannot load teacher {path!r}: it is neither a tf_keras model file nor "
                       "a SavedModel") from None
  loaded = tf.saved_model.load(path)
  if "serving_default" not in getattr(loaded, "signatures", {}):
    raise ValueError(f"SavedModel {path!r} has no 'serving_default' signature to call")
  signature = loaded.signatures["serving_default"]

  def call(images, training=False):
    del training
    outputs = signature(images)
    if len(outputs) != 1:
      raise ValueError(f"SavedModel {path!r} returns {sorted(outputs)}; expected one output")
    return next(iter(outputs.values()))

  call._keep_alive = loaded  # the signature needs the loaded object alive
  return call


@gin.configurable(module="distill")
def trained_model(weights=gin.REQUIRED, model_fn=gin.REQUIRED, num_classes=gin.REQUIRED,
                  image_size=gin.REQUIRED):
  """A model built by `model_fn(num_classes, image_size)` (e.g. the trainer's mobilenetv4_model)
  with the weights the trainer saved (model_dir/final.weights.h5)."""
  if not tf.io.gfile.exists(weights):
    raise FileNotFoundError(f"teacher weights {weights!r} do not exist; train the teacher first "
                            "(python -m experiments.train ...) or fix the path")
  model = model_fn(num_classes=num_classes, image_size=image_size)
  model.load_weights(weights)
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
    raise ValueError(f"image_size and input_size must be positive, got {image_size}, "
                     f"{input_size}")
  inner = model_fn(num_classes=num_classes, image_size=int(input_size))
  inputs = keras.Input((int(image_size), int(image_size), 3))
  x = keras.layers.Resizing(int(input_size), int(input_size), interpolation="bilinear",
                            name="teacher_resize")(inputs)
  return keras.Model(inputs, inner(x), name=f"{inner.name}_at{int(input_size)}")


class TeacherRunner:
  """Maps uint8 image batches to teacher probabilities, splitting each batch over replicas.

  `preprocess` turns uint8 [B, H, W, 3] into what the teacher was trained on. `output` says
  whether the teacher ends in logits (softmax applied here, at `temperature`) or probabilities.
  Batches are padded to `batch_size` so the distributed function traces once.
  """

  def __init__(self, model, batch_size, preprocess, output="logits", temperature=1.0,
               strategy=None):
    if output not in TEACHER_OUTPUTS:
      raise ValueError(f"teacher output {output!r} unknown; choose one of {TEACHER_OUTPUTS}")
    self.strategy = strategy or tf.distribute.get_strategy()
    replicas = self.strategy.num_replicas_in_sync
    if batch_size % replicas:
      raise ValueError(f"batch_size {batch_size} must be a multiple of the {replicas} replicas")
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
    chunks = [images[i * self.per_replica:(i + 1) * self.per_replica]
              for i in range(self.strategy.num_replicas_in_sync)]
    dist = self.strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(chunks[ctx.replica_id_in_sync_group]))
    probs = self._run(dist).numpy()[:n]
    if not np.all(np.isfinite(probs)):
      raise ValueError("teacher produced non-finite outputs; check its weights and preprocess")
    return probs
