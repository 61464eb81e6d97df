"""Small pieces shared by the blocks: registration, BN, activations, padding, layer scale, drop path."""
import tensorflow as tf
import tf_keras as keras

PACKAGE = "mobilenetv4"
PADDINGS = ("same", "symmetric")
ACTIVATIONS = ("relu", "gelu", "relu6", "hard_swish", "swish", None)


def register(cls):
  """Registers a layer under the package name so saved models reload without our Python."""
  return keras.utils.register_keras_serializable(package=PACKAGE)(cls)


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
  """Rounds channels to a multiple of `divisor`, never dropping more than 10% (timm/TF convention)."""
  min_value = min_value or divisor
  new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if new_value < round_limit * value:
    new_value += divisor
  return new_value


def kernel_init():
  # He-normal on fan-out, the initialiser of the MobileNet family (timm `_init_weight_goog`).
  return keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")


def batch_norm(momentum, epsilon, name):
  return keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)


def get_activation(name):
  """An activation layer, or None. GELU is the exact (erf) form, as in MNv4-Hybrid-L."""
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")
  if name is None:
    return None
  # tf_keras's "gelu" defaults to approximate=False.
  return keras.layers.Activation(name, name="act")


def symmetric_pad(kernel_size, name):
  """PyTorch-style padding of k // 2 on every side, for strided layers with imported weights."""
  return keras.layers.ZeroPadding2D(kernel_size // 2, name=name)


@register
class LayerScale(keras.layers.Layer):
  """Per-channel learned scale of a residual branch (CaiT); MNv4 hybrids init it to 1e-5."""

  def __init__(self, init_value=1e-5, **kwargs):
    super().__init__(**kwargs)
    self.init_value = init_value

  def build(self, input_shape):
    self.gamma = self.add_weight(
        name="gamma", shape=(input_shape[-1],),
        initializer=keras.initializers.Constant(self.init_value), trainable=True)
    super().build(input_shape)

  def call(self, x):
    return x * tf.cast(self.gamma, x.dtype)

  def get_config(self):
    return {**super().get_config(), "init_value": self.init_value}


@register
class StochasticDepth(keras.__internal__.layers.BaseRandomLayer):
  """Drops the whole residual branch per sample with probability `rate` while training.

  Draws through tf_keras' RandomGenerator (like Dropout), so a trainer that checkpoints the
  layers' generator states replays the same masks after a resume.
  """

  def __init__(self, rate, seed=None, **kwargs):
    super().__init__(seed=seed, **kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"stochastic depth rate must be in [0, 1), got {rate}")
    self.rate = rate

  def call(self, x, training=None):
    if not training or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
    mask = tf.floor(keep + self._random_generator.random_uniform(shape, dtype=x.dtype))
    return x / keep * mask

  def get_config(self):
    return {**super().get_config(), "rate": self.rate}


def residual(block, shortcut, branch, training):
  """shortcut + drop_path(layer_scale(branch)); the tail shared by UIB, FusedIB and attention."""
  if block.layer_scale is not None:
    branch = block.layer_scale(branch)
  if block.drop_path is not None:
    branch = block.drop_path(branch, training=training)
  return shortcut + branch
