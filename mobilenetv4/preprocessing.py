"""The one definition of input normalisation and the evaluation crop.

Training (`experiments.data`), INT8 calibration and export (`tflite`), weight import
(`mobilenetv4.weights`) and distillation all take their constants and their eval transform from
here, so a model is calibrated and checked on exactly the images it was evaluated on.

Pixels are float in [0, 255]. A normalisation name is what a build record stores:
  imagenet   (x - 255 * (0.485, 0.456, 0.406)) / (255 * (0.229, 0.224, 0.225))   the trainer's
  inception  x / 127.5 - 1
  none       x unchanged (the model takes what the caller gives it)

TensorFlow is imported lazily: the constants are usable without it.
"""

from __future__ import annotations

from mobilenetv4.cli import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # in [0, 1] pixel units
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

NORMALIZATIONS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": (INCEPTION_MEAN, INCEPTION_STD),
    "none": None,
}
DEFAULT_NORMALIZATION = "imagenet"  # what experiments.train feeds its models
EVAL_CROP_FRACTION = 0.875  # central crop of the shorter side before resizing (Model Garden's)


def mean_std_255(name: str):
    """(mean, std) in [0, 255] pixel units for a normalisation name, or None for 'none'."""
    if name not in NORMALIZATIONS:
        raise UserError(
            f"unknown preprocessing {name!r}; choose one of {', '.join(sorted(NORMALIZATIONS))}"
        )
    pair = NORMALIZATIONS[name]
    if pair is None:
        return None
    mean, std = pair
    return tuple(255.0 * m for m in mean), tuple(255.0 * s for s in std)


def normalize(images, name: str = DEFAULT_NORMALIZATION):
    """Float pixels in [0, 255] (any leading shape, channels last) -> the network's input."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    pair = mean_std_255(name)
    if pair is None:
        return images
    mean, std = pair
    return (images - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def central_crop(image, crop_fraction: float = EVAL_CROP_FRACTION):
    """The central square of side crop_fraction * shorter side of one HxWxC image."""
    import tensorflow as tf

    size = tf.cast(tf.shape(image)[:2], tf.float32)
    crop = crop_fraction * tf.minimum(size[0], size[1])
    offset = tf.cast((size - crop) / 2.0, tf.int32)
    crop = tf.cast(crop, tf.int32)
    return image[offset[0] : offset[0] + crop, offset[1] : offset[1] + crop, :]


def eval_crop(image, size, crop_fraction: float = EVAL_CROP_FRACTION):
    """The evaluation transform on pixels: central crop, bilinear resize to `size` (int or (H, W)),
    clipped to [0, 255]. Returns float32 pixels; normalise with `normalize`."""
    import tensorflow as tf

    h, w = (size, size) if isinstance(size, int) else tuple(size)[:2]
    image = central_crop(tf.cast(image, tf.float32), crop_fraction)
    image = tf.image.resize(image, [h, w], method="bilinear")
    image = tf.clip_by_value(image, 0.0, 255.0)
    image.set_shape([h, w, 3])
    return image


def eval_preprocess(
    image,
    size,
    crop_fraction: float = EVAL_CROP_FRACTION,
    normalization: str = DEFAULT_NORMALIZATION,
):
    """`normalize(eval_crop(image))`: what the trainer evaluates on."""
    return normalize(eval_crop(image, size, crop_fraction), normalization)
