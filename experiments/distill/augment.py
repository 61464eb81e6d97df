"""The augmentations of the paper's distillation datasets (Section 8), on uint8 images.

D1: Inception crop + RandAugment l2m9; D2: Inception crop + extreme Mixup; D3: Inception crop +
RandAugment l2m5. Crop and RandAugment come from Model Garden (`official.vision.ops`).
"""

import math

import gin
import tensorflow as tf
from official.vision.ops import augment as mg_augment
from official.vision.ops import preprocess_ops

from mobilenetv4 import preprocessing
from mobilenetv4.cli import UserError

# Model Garden's RandAugment pixel constants are tuned for 224x224 ImageNet crops; they are
# scaled with the crop size so that a translate or cutout covers the same fraction of the image.
_REF_SIZE = 224.0
_TRANSLATE_CONST = 100.0
_CUTOUT_CONST = 40.0


def inception_crop(image, image_size, area_range=(0.08, 1.0)):
    """Random crop of 8%-100% of the area, aspect 3/4-4/3, resized to image_size (uint8 out)."""
    # An explicit op seed: with seed=None the crop ignores the global seed, and shards must be
    # reproducible for resume. The per-shard global seed still varies the crops between shards.
    crop = preprocess_ops.random_crop_image(image, area_range=tuple(area_range), seed=1)
    crop = tf.image.resize(crop, image_size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(crop), 0.0, 255.0), tf.uint8)


def rand_augment(num_layers, magnitude, image_size, exclude_ops=()):
    """Model Garden RandAugment with its pixel constants scaled to `image_size`."""
    known = mg_augment.RandAugment().available_ops
    unknown = sorted(set(exclude_ops) - set(known))
    if unknown:
        raise UserError(f"unknown RandAugment ops {unknown} in exclude_ops; choose from {known}")
    scale = min(image_size) / _REF_SIZE
    return mg_augment.RandAugment(
        num_layers=num_layers,
        magnitude=magnitude,
        translate_const=_TRANSLATE_CONST * scale,
        cutout_const=max(1.0, _CUTOUT_CONST * scale),
        exclude_ops=list(exclude_ops) or None,
    )


def extreme_mixup(images, alpha=1.0):
    """Mixes each image of a batch with its neighbour (batch shifted by one), big_vision style.

    a ~ Beta(alpha, alpha) per image and a = max(a, 1 - a), so each image keeps at least half of
    its own content. Labels are not mixed: the teacher labels the mixed image.
    """
    x = tf.cast(images, tf.float32)
    n = tf.shape(x)[0]
    g1 = tf.random.gamma([n], alpha)
    g2 = tf.random.gamma([n], alpha)
    a = g1 / (g1 + g2)
    a = tf.maximum(a, 1.0 - a)[:, None, None, None]
    mixed = a * x + (1.0 - a) * tf.roll(x, shift=1, axis=0)
    return tf.cast(tf.clip_by_value(tf.round(mixed), 0.0, 255.0), tf.uint8)


AUGMENTATIONS = ("randaugment", "mixup")


def augment_dataset(
    images,
    kind,
    image_size,
    randaugment_layers=2,
    randaugment_magnitude=9,
    mixup_alpha=1.0,
    mixup_group=64,
    crop_area_range=(0.08, 1.0),
    randaugment_exclude_ops=(),
):
    """Maps a dataset of uint8 [H, W, 3] images to augmented uint8 [*image_size, 3] images.

    kind "randaugment": Inception crop then RandAugment(layers, magnitude).
    kind "mixup": Inception crop then extreme Mixup inside groups of `mixup_group` images.
    Maps run sequentially so that a fixed global seed reproduces a shard exactly (resume relies
    on it); the teacher, not the augmentation, dominates generation time.
    """
    image_size = tuple(image_size)
    check_crop_area_range(crop_area_range)
    cropped = images.map(lambda im: inception_crop(im, image_size, crop_area_range))
    if kind == "randaugment":
        policy = rand_augment(
            randaugment_layers, randaugment_magnitude, image_size, randaugment_exclude_ops
        )
        return cropped.map(policy.distort)
    if kind == "mixup":
        if not (_is_number(mixup_alpha) and mixup_alpha > 0):
            raise UserError(f"mixup_alpha must be a finite number above 0, got {mixup_alpha!r}")
        return cropped.batch(mixup_group).map(lambda b: extreme_mixup(b, mixup_alpha)).unbatch()
    raise UserError(f"unknown augmentation {kind!r}; choose one of {AUGMENTATIONS}")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_crop_area_range(area_range):
    """UserError unless area_range is (low, high) with 0 < low <= high <= 1."""
    try:
        low, high = area_range
    except (TypeError, ValueError):
        raise UserError(f"crop_area_range must be a pair (low, high), got {area_range!r}") from None
    if not (_is_number(low) and _is_number(high) and 0 < low <= high <= 1):
        raise UserError(f"crop_area_range must satisfy 0 < low <= high <= 1, got {area_range!r}")


@gin.configurable(module="distill")
def normalize(images, normalization=preprocessing.DEFAULT_NORMALIZATION):
    """uint8 -> float32 network input by `mobilenetv4.preprocessing.normalize` ('imagenet': the
    trainer's convention, experiments.data), used for the teacher at generation and the student."""
    return preprocessing.normalize(images, normalization)
