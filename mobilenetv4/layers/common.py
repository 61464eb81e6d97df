"""Small pieces shared by the blocks: registration, the config mechanism, BN, activations, padding,
layer scale, drop path."""

import tensorflow as tf
import tf_keras as keras

PACKAGE = "mobilenetv4"
PADDINGS = ("same", "symmetric")
ACTIVATIONS = ("relu", "gelu", "relu6", "hard_swish", "swish", None)


def register(cls):
    """Registers a layer under the package name so saved models reload without our Python."""
    return keras.utils.register_keras_serializable(package=PACKAGE)(cls)


def _deserialize(name, value):
    if name.endswith("_regularizer"):
        return keras.regularizers.get(value)
    if name.endswith("_initializer"):
        return keras.initializers.get(value)
    return value


def _serialize(name, value):
    if value is not None and name.endswith("_regularizer"):
        return keras.regularizers.serialize(value)
    if value is not None and name.endswith("_initializer"):
        return keras.initializers.serialize(value)
    return value


class ConfigurableMixin:
    """The one config mechanism of the package's layers.

    `__init__` hands its own arguments to `self.record_config(**init_arguments(locals()))` (or
    `record_config(name=value, ...)` for a few), which stores each
    as an attribute of the same name (arguments named `*_regularizer` / `*_initializer` as Keras
    objects) and remembers it; `get_config` returns them all (regularizers and initializers
    serialised the Keras way), so `from_config(get_config())` rebuilds the same layer. A subclass
    records its own extra arguments with another `record_config` call.
    """

    def record_config(self, **arguments):
        """Stores `arguments` as attributes and adds them to the layer's config.

        Args:
          **arguments: constructor arguments, by the names `__init__` takes them.
        """
        for name, value in arguments.items():
            setattr(self, name, _deserialize(name, value))
        self._config_names = tuple(getattr(self, "_config_names", ())) + tuple(arguments)

    def get_config(self):
        config = super().get_config()
        for name in getattr(self, "_config_names", ()):
            config[name] = _serialize(name, getattr(self, name))
        return config


def init_arguments(local_variables):
    """The named arguments of the `__init__` whose `locals()` this is (without self, **kwargs).

    Call it before `__init__` defines variables of its own: every local is taken as an argument.
    """
    return {
        name: value
        for name, value in local_variables.items()
        if name not in ("self", "kwargs", "__class__")
    }


def conv_bn_settings(block):
    """The ConvBN arguments a block passes on unchanged to every conv it makes (its own config)."""
    return {
        name: getattr(block, name)
        for name in ("padding", "bn_momentum", "bn_epsilon", "kernel_regularizer")
    }


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """Rounds channels to a multiple of `divisor`, never dropping more than 10% (timm/TF convention)."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def kernel_init():
    """He-normal on fan-out, the initialiser of the MobileNet family (timm `_init_weight_goog`)."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="truncated_normal"
    )


def batch_norm(momentum, epsilon, name):
    """A BatchNormalization layer with the block's momentum and epsilon.

    Args:
      momentum: moving-average momentum of the statistics.
      epsilon: added to the variance.
      name: the layer name.
    """
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)


def get_activation(name):
    """An activation layer named "act", or None. GELU is the exact (erf) form, as in MNv4-Hybrid-L.

    Args:
      name: one of ACTIVATIONS (None for no activation).
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")
    if name is None:
        return None
    # tf_keras's "gelu" defaults to approximate=False.
    return keras.layers.Activation(activation=name, name="act")


def symmetric_pad(kernel_size, name):
    """PyTorch-style padding of k // 2 on every side, for strided layers with imported weights."""
    return keras.layers.ZeroPadding2D(padding=kernel_size // 2, name=name)


@register
class LayerScale(ConfigurableMixin, keras.layers.Layer):
    """Per-channel learned scale of a residual branch (CaiT); MNv4 hybrids init it to 1e-5.

    Args:
      init_value: initial value of every channel's scale.
      **kwargs: keras.layers.Layer arguments (name, dtype, ...).
    """

    def __init__(self, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.record_config(init_value=init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, x):
        return x * tf.cast(self.gamma, x.dtype)


@register
class StochasticDepth(ConfigurableMixin, keras.__internal__.layers.BaseRandomLayer):
    """Drops the whole residual branch per sample with probability `rate` while training.

    Draws through tf_keras' RandomGenerator (like Dropout), so a trainer that checkpoints the
    layers' generator states replays the same masks after a resume.

    Args:
      rate: drop probability, in [0, 1).
      seed: optional seed of the layer's random generator.
      **kwargs: keras.layers.Layer arguments (name, dtype, ...).
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"stochastic depth rate must be in [0, 1), got {rate}")
        self.record_config(rate=rate, seed=seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
        mask = tf.floor(keep + self._random_generator.random_uniform(shape, dtype=x.dtype))
        return x / keep * mask


def residual_tail(layer_scale_init_value, stochastic_depth_rate, use_residual=True):
    """(LayerScale or None, StochasticDepth or None): the tail of a residual block.

    Args:
      layer_scale_init_value: initial layer-scale value, or None for no layer scale.
      stochastic_depth_rate: drop-path rate; 0 for none.
      use_residual: whether the block has a shortcut (drop path needs one).
    """
    layer_scale = (
        LayerScale(init_value=layer_scale_init_value, name="layer_scale")
        if layer_scale_init_value is not None
        else None
    )
    drop_path = (
        StochasticDepth(rate=stochastic_depth_rate, name="drop_path")
        if use_residual and stochastic_depth_rate > 0
        else None
    )
    return layer_scale, drop_path


def residual(block, shortcut, branch, training):
    """shortcut + drop_path(layer_scale(branch)); the tail shared by UIB, FusedIB and attention."""
    if block.layer_scale is not None:
        branch = block.layer_scale(branch)
    if block.drop_path is not None:
        branch = block.drop_path(branch, training=training)
    return shortcut + branch
