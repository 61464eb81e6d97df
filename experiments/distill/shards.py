"""Soft-label shard format: TFRecord files of (JPEG bytes, teacher probabilities).

One `tf.train.Example` per augmented image:
  image/encoded    bytes   the JPEG the teacher saw (decoded exactly as at generation time)
  teacher/probs    bytes   raw little-endian float16/float32 vector of all `classes` probabilities
                           (only when top_k == 0)
  teacher/top_k    bytes   raw int32 indices of the k most probable classes (top_k > 0)
  teacher/top_p    bytes   raw float16/float32 probabilities of those classes (top_k > 0)
  example/id       int64   replica * num_source_images + source index: unique within a dataset

With top-k storage the remainder mass 1 - sum(top_p) is spread evenly over the other classes when
the soft label is rebuilt, so every label still sums to one.

Each shard `NAME-SSSSS-of-NNNNN.tfrecord` is complete only when its sidecar `.json` exists (written
last, after an atomic rename of the shard), which holds the example count, byte size and CRC32.
A killed run leaves at most `*.tmp` files, which the next run overwrites.
"""
import dataclasses
import json
import os
import zlib

import numpy as np
import tensorflow as tf

PROB_DTYPES = {"float16": tf.float16, "float32": tf.float32}


class ShardError(ValueError):
  """A shard is missing, incomplete or corrupt; the message names the file."""


@dataclasses.dataclass(frozen=True)
class LabelFormat:
  """How teacher probabilities are stored. top_k=0 stores all classes."""
  classes: int
  top_k: int = 0
  prob_dtype: str = "float16"

  def __post_init__(self):
    if self.prob_dtype not in PROB_DTYPES:
      raise ValueError(f"prob_dtype {self.prob_dtype!r} is not supported; choose one of "
                       f"{sorted(PROB_DTYPES)}")
    if self.classes < 2:
      raise ValueError(f"classes must be at least 2, got {self.classes}")
    if not 0 <= self.top_k < self.classes:
      raise ValueError(f"top_k must be in [0, classes) = [0, {self.classes}); got {self.top_k} "
                       "(use 0 to store all classes)")

  def label_bytes(self):
    """Bytes of label payload per example (before TFRecord/protobuf framing)."""
    width = np.dtype(self.prob_dtype).itemsize
    if self.top_k:
      return self.top_k * (4 + width)
    return self.classes * width

  def to_json(self):
    return dataclasses.asdict(self)


def shard_name(dataset, index, count):
  return f"{dataset}-{index:05d}-of-{count:05d}.tfrecord"


def encode_example(jpeg, probs, example_id, fmt):
  """Serialises one example. `probs` is the teacher's probability vector (numpy, [classes])."""
  probs = np.asarray(probs, np.float32)
  if probs.shape != (fmt.classes,):
    raise ValueError(f"teacher output has shape {probs.shape}, expected ({fmt.classes},); "
                     "set classes to the teacher's number of outputs")
  dtype = np.dtype(fmt.prob_dtype).newbyteorder("<")
  feature = {
      "image/encoded": _bytes(jpeg),
      "example/id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(example_id)])),
  }
  if fmt.top_k:
    top = np.argsort(-probs, kind="stable")[:fmt.top_k]
    feature["teacher/top_k"] = _bytes(top.astype("<i4").tobytes())
    feature["teacher/top_p"] = _bytes(probs[top].astype(dtype).tobytes())
  else:
    feature["teacher/probs"] = _bytes(probs.astype(dtype).tobytes())
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _bytes(value):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def make_parser(fmt, image_size=None):
  """Returns a tf function: serialized Example -> dict(image uint8 [H,W,3], label [classes], id).

  The label is float32 and sums to one; `image_size` (H, W) fixes the static shape after decode.
  """
  dtype = PROB_DTYPES[fmt.prob_dtype]
  spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
          "example/id": tf.io.FixedLenFeature([], tf.int64)}
  if fmt.top_k:
    spec["teacher/top_k"] = tf.io.FixedLenFeature([], tf.string)
    spec["teacher/top_p"] = tf.io.FixedLenFeature([], tf.string)
  else:
    spec["teacher/probs"] = tf.io.FixedLenFeature([], tf.string)

  def parse(record):
    ex = tf.io.parse_single_example(record, spec)
    image = tf.io.decode_jpeg(ex["image/encoded"], channels=3)
    if image_size is not None:
      image = tf.ensure_shape(image, [image_size[0], image_size[1], 3])
    if fmt.top_k:
      idx = tf.io.decode_raw(ex["teacher/top_k"], tf.int32, little_endian=True)
      top_p = tf.cast(tf.io.decode_raw(ex["teacher/top_p"], dtype, little_endian=True),
                      tf.float32)
      idx = tf.ensure_shape(idx, [fmt.top_k])
      top_p = tf.ensure_shape(top_p, [fmt.top_k])
      # Spread the mass outside the top-k evenly over the remaining classes.
      rest = tf.maximum(1.0 - tf.reduce_sum(top_p), 0.0) / float(fmt.classes - fmt.top_k)
      label = tf.tensor_scatter_nd_update(tf.fill([fmt.classes], rest), idx[:, None], top_p)
    else:
      label = tf.cast(tf.io.decode_raw(ex["teacher/probs"], dtype, little_endian=True),
                      tf.float32)
      label = tf.ensure_shape(label, [fmt.classes])
    label = label / tf.reduce_sum(label)  # undo float16 rounding drift
    return {"image": image, "label": label, "id": ex["example/id"]}

  return parse


def write_shard(path, records, meta):
  """Writes serialized records to `path` atomically and then its sidecar with `meta` added.

  Returns the sidecar dict. Until the sidecar exists the shard does not count as done.
  """
  tmp = path + ".tmp"
  count = 0
  with tf.io.TFRecordWriter(tmp) as writer:
    for record in records:
      writer.write(record)
      count += 1
  crc, size = file_crc32(tmp)
  os.replace(tmp, path)
  side = dict(meta, num_examples=count, num_bytes=size, crc32=crc, file=os.path.basename(path))
  sidecar_tmp = _sidecar(path) + ".tmp"
  with open(sidecar_tmp, "w") as f:
    json.dump(side, f, indent=1, sort_keys=True)
  os.replace(sidecar_tmp, _sidecar(path))
  return side


def _sidecar(path):
  return path[:-len(".tfrecord")] + ".json"


def file_crc32(path, chunk=1 << 22):
  crc, size = 0, 0
  with open(path, "rb") as f:
    while True:
      block = f.read(chunk)
      if not block:
        return crc, size
      crc = zlib.crc32(block, crc)
      size += len(block)


def is_complete(path):
  """True when the shard and its sidecar exist and the shard has the recorded size."""
  try:
    with open(_sidecar(path)) as f:
      side = json.load(f)
    return os.path.getsize(path) == side["num_bytes"]
  except (OSError, ValueError, KeyError):
    return False


def load_manifest(directory, dataset, verify="size", allow_partial=False):
  """Checks the shards of `dataset` in `directory`; returns (paths, sidecars).

  verify: "size" compares each file's size with its sidecar (cheap, catches truncation);
  "full" also recomputes the CRC32 (catches flipped bytes; reads every shard once); "none".
  Raises ShardError naming the first bad file and what to do; also when the shards differ in
  label format or image size, or fewer are finished than the generation planned (unless
  allow_partial).
  """
  if verify not in ("none", "size", "full"):
    raise ValueError(f"verify must be 'none', 'size' or 'full', got {verify!r}")
  pattern = os.path.join(directory, f"{dataset}-*-of-*.json")
  sidecars = sorted(tf.io.gfile.glob(pattern))
  if not sidecars:
    raise ShardError(f"no finished shards of dataset {dataset!r} in {directory} (looked for "
                     f"{pattern}); run `python -m experiments.distill.generate` first")
  paths, sides = [], []
  for sidecar in sidecars:
    path = sidecar[:-len(".json")] + ".tfrecord"
    try:
      with open(sidecar) as f:
        side = json.load(f)
    except (OSError, ValueError) as e:
      raise ShardError(f"unreadable sidecar {sidecar}: {e}; delete it and its shard and rerun "
                       "generate to rebuild the shard") from None
    if not os.path.exists(path):
      raise ShardError(f"shard {path} is missing but its sidecar exists; delete {sidecar} and "
                       "rerun generate to rebuild it")
    size = os.path.getsize(path)
    if verify != "none" and size != side["num_bytes"]:
      raise ShardError(f"corrupt shard {path}: {size} bytes on disk, {side['num_bytes']} "
                       "recorded (truncated or overwritten); delete it and its .json and rerun "
                       "generate to rebuild it")
    if verify == "full" and file_crc32(path)[0] != side["crc32"]:
      raise ShardError(f"corrupt shard {path}: CRC32 differs from the one recorded at "
                       "generation; delete it and its .json and rerun generate to rebuild it")
    paths.append(path)
    sides.append(side)
  counts = {s["num_shards"] for s in sides}
  if len(counts) != 1:
    raise ShardError(f"shards of {dataset!r} in {directory} come from runs with different shard "
                     f"counts {sorted(counts)}; regenerate into an empty directory")
  fmt, size = label_format(sides[0]), sides[0]["image_size"]
  for path, side in zip(paths, sides):  # readers take the first sidecar's format for all
    if label_format(side) != fmt or side["image_size"] != size:
      raise ShardError(f"shard {path} of {dataset!r} was written with "
                       "a different label format or image size than the others; "
                       "regenerate into an empty directory")
  planned = counts.pop()
  if len(paths) < planned and not allow_partial:
    raise ShardError(f"only {len(paths)} of {planned} shards of {dataset!r} in {directory} are "
                     "finished; rerun generate (it resumes) or allow partial datasets")
  return paths, sides


def label_format(sidecar):
  return LabelFormat(**sidecar["label_format"])
