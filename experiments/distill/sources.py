"""Source images for the distillation datasets: uint8 [H, W, 3] tf.data in a fixed order.

The order must not change between runs: shard contents and example ids are derived from it.
"""
import gin
import numpy as np
import tensorflow as tf


@gin.configurable(module="distill")
def tfds_source(name=gin.REQUIRED, split="train", data_dir=None):
  """Images of a TFDS dataset (e.g. imagenet2012, split 'train'), unshuffled, labels dropped."""
  import tensorflow_datasets as tfds  # heavy import, only when used
  ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
  return ds.map(lambda ex: _rgb(ex["image"]))


@gin.configurable(module="distill")
def array_source(path=gin.REQUIRED):
  """Images stored as a .npy array [N, H, W, 3] (or [N, H, W]) of uint8."""
  try:
    images = np.load(path)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read source images from {path}: {e}") from None
  if images.dtype != np.uint8 or images.ndim not in (3, 4):
    raise ValueError(f"{path} holds {images.dtype} {images.shape}; expected uint8 [N, H, W, 3] "
                     "or [N, H, W]")
  return tf.data.Dataset.from_tensor_slices(images).map(_rgb)


def _rgb(image):
  image = tf.convert_to_tensor(image)
  if image.shape.rank == 2:
    image = image[..., None]
  return tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image
