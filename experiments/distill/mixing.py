"""Student input: read soft-label shards and mix D1/D2/D3 dynamically (paper Section 8).

Each dataset is read independently (shuffled, repeated) and `tf.data.Dataset.sample_from_datasets`
draws every example from dataset i with probability ratio_i / sum(ratios), so the mixture holds
in expectation at any point of training, not per fixed epoch. The only augmentation is a
left-right flip (Appendix H).
"""
from typing import Optional, Sequence

import gin
import tensorflow as tf

from experiments.distill import shards


def soft_label_dataset(directory, name, verify="size", shuffle_buffer=10_000, seed=None,
                       input_context: Optional[tf.distribute.InputContext] = None,
                       allow_partial=False):
  """Endless shuffled dataset of {"image": uint8 [H,W,3], "label": [classes], "id"} for one
  distillation dataset; sharded by files across input pipelines when there are enough files."""
  paths, sides = shards.load_manifest(directory, name, verify=verify,
                                      allow_partial=allow_partial)
  fmt = shards.label_format(sides[0])
  size = tuple(sides[0]["image_size"])
  for side in sides:
    if shards.label_format(side) != fmt or tuple(side["image_size"]) != size:
      raise shards.ShardError(f"shard {side['file']} of {name!r} in {directory} was written with "
                              "a different label format or image size than the others; "
                              "regenerate into an empty directory")
  files = tf.data.Dataset.from_tensor_slices(paths)
  by_record = False
  if input_context and input_context.num_input_pipelines > 1:
    if len(paths) >= input_context.num_input_pipelines:
      files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    else:
      by_record = True
  files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()
  records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(len(paths), 8),
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
  if by_record:
    records = records.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  if shuffle_buffer:
    records = records.shuffle(shuffle_buffer, seed=seed)
  return records.map(shards.make_parser(fmt, size), num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=seed is not None)


def mix_datasets(datasets: Sequence[tf.data.Dataset], ratios: Sequence[float], seed=None):
  """Samples from `datasets` with probabilities proportional to `ratios` (endless inputs)."""
  if len(datasets) != len(ratios):
    raise ValueError(f"{len(datasets)} datasets but {len(ratios)} mixing ratios; give one ratio "
                     "per dataset")
  if any(r < 0 for r in ratios) or sum(ratios) <= 0:
    raise ValueError(f"mixing ratios must be non-negative with a positive sum, got {ratios}")
  weights = [float(r) / sum(ratios) for r in ratios]
  return tf.data.Dataset.sample_from_datasets(list(datasets), weights=weights, seed=seed,
                                              stop_on_empty_dataset=False)


@gin.configurable(module="distill")
def distillation_dataset(directory=gin.REQUIRED, datasets=("d1", "d2", "d3"), ratios=(1, 1, 2),
                         batch_size=gin.REQUIRED, preprocess=None, flip=True, verify="size",
                         shuffle_buffer=10_000, seed=None, input_context=None):
  """Batched (images float32 [B,H,W,3], soft labels [B, classes]) for the student.

  preprocess maps uint8 images to the student's input (default: float32 in [0, 255]).
  `batch_size` is per input pipeline when an input_context is given.
  """
  parts = [soft_label_dataset(directory, name, verify=verify, shuffle_buffer=shuffle_buffer,
                              seed=None if seed is None else seed + i,
                              input_context=input_context)
           for i, name in enumerate(datasets)]
  classes = {p.element_spec["label"].shape[0] for p in parts}
  if len(classes) != 1:
    raise shards.ShardError(f"datasets {list(datasets)} in {directory} store different numbers "
                            f"of classes {sorted(classes)}; they must share one teacher")
  mixed = mix_datasets(parts, ratios, seed=seed)

  def student_input(example):
    image = example["image"]
    if flip:
      image = tf.image.random_flip_left_right(image)
    image = preprocess(image) if preprocess else tf.cast(image, tf.float32)
    return image, example["label"]

  return (mixed.map(student_input, num_parallel_calls=tf.data.AUTOTUNE)
          .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
