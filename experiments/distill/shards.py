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
last, after the shard), which holds the example count, byte size and CRC32. Both files are written
through `mobilenetv4.fileio` (a temporary name in the same folder, renamed into place when
complete), so a kill at any moment leaves no partial shard under a shard's name: at most a
`.tmp-*` file, which the next run of the same worker removes (`remove_stale_temporaries`).
"""

import dataclasses
import json
import os
import re
import zlib

import numpy as np
import tensorflow as tf

from mobilenetv4 import fileio
from mobilenetv4.cli import UserError

PROB_DTYPES = {"float16": tf.float16, "float32": tf.float32}
_SHARD_RE = re.compile(r"^(?P<dataset>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.(tfrecord|json)$")


class ShardError(UserError):
    """A shard is missing, incomplete or corrupt; the message names the file (exit 2 in a CLI)."""


@dataclasses.dataclass(frozen=True)
class LabelFormat:
    """How teacher probabilities are stored. top_k=0 stores all classes."""

    classes: int
    top_k: int = 0
    prob_dtype: str = "float16"

    def __post_init__(self):
        if self.prob_dtype not in PROB_DTYPES:
            raise UserError(
                f"prob_dtype {self.prob_dtype!r} is not supported; choose one of "
                f"{sorted(PROB_DTYPES)}"
            )
        if not _is_int(self.classes) or self.classes < 2:
            raise UserError(f"classes must be an integer of at least 2, got {self.classes!r}")
        if not _is_int(self.top_k) or not 0 <= self.top_k < self.classes:
            raise UserError(
                f"top_k must be an integer from 1 to classes - 1 = {self.classes - 1}, or "
                f"0 to store all {self.classes} probabilities; got {self.top_k!r}"
            )

    def label_bytes(self):
        """Bytes of label payload per example (before TFRecord/protobuf framing)."""
        width = np.dtype(self.prob_dtype).itemsize
        if self.top_k:
            return self.top_k * (4 + width)
        return self.classes * width

    def to_json(self):
        return dataclasses.asdict(self)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def shard_name(dataset, index, count):
    return f"{dataset}-{index:05d}-of-{count:05d}.tfrecord"


def encode_example(jpeg, probs, example_id, fmt):
    """Serialises one example. `probs` is the teacher's probability vector (numpy, [classes])."""
    probs = np.asarray(probs, np.float32)
    if probs.shape != (fmt.classes,):
        raise UserError(
            f"teacher output has shape {probs.shape}, expected ({fmt.classes},); "
            "set classes to the teacher's number of outputs"
        )
    dtype = np.dtype(fmt.prob_dtype).newbyteorder("<")
    feature = {
        "image/encoded": _bytes(jpeg),
        "example/id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(example_id)])),
    }
    if fmt.top_k:
        top = np.argsort(-probs, kind="stable")[: fmt.top_k]
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
    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "example/id": tf.io.FixedLenFeature([], tf.int64),
    }
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
            top_p = tf.cast(
                tf.io.decode_raw(ex["teacher/top_p"], dtype, little_endian=True), tf.float32
            )
            idx = tf.ensure_shape(idx, [fmt.top_k])
            top_p = tf.ensure_shape(top_p, [fmt.top_k])
            # Spread the mass outside the top-k evenly over the remaining classes.
            rest = tf.maximum(1.0 - tf.reduce_sum(top_p), 0.0) / float(fmt.classes - fmt.top_k)
            label = tf.tensor_scatter_nd_update(tf.fill([fmt.classes], rest), idx[:, None], top_p)
        else:
            label = tf.cast(
                tf.io.decode_raw(ex["teacher/probs"], dtype, little_endian=True), tf.float32
            )
            label = tf.ensure_shape(label, [fmt.classes])
        label = label / tf.reduce_sum(label)  # undo float16 rounding drift
        return {"image": image, "label": label, "id": ex["example/id"]}

    return parse


def write_shard(path, records, meta):
    """Writes serialized records to `path` atomically and then its sidecar with `meta` added.

    Returns the sidecar dict. Until the sidecar exists the shard does not count as done; a failure
    or kill while writing leaves neither a partial shard nor a partial sidecar under their names.
    """
    count = 0
    with fileio.atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in records:
                writer.write(record)
                count += 1
        crc, size = file_crc32(tmp)
    side = dict(meta, num_examples=count, num_bytes=size, crc32=crc, file=os.path.basename(path))
    fileio.write_text(_sidecar(path), json.dumps(side, indent=1, sort_keys=True) + "\n")
    return side


def remove_stale_temporaries(directory, names):
    """Removes what killed writers left of the shards `names` (basenames): fileio's `.tmp-*` files
    and the `.tmp` files of older versions. Call only while holding the lock for those shards."""
    wanted = set()
    for name in names:
        wanted.update((name, _sidecar(name)))
    removed = []
    for entry in os.listdir(directory):
        stale = False
        if entry.startswith(fileio._TMP_PREFIX):  # pylint: disable=protected-access
            stale = any(entry.endswith("-" + name) for name in wanted)
        elif entry.endswith(".tmp"):
            stale = entry[: -len(".tmp")] in wanted
        if stale:
            full = os.path.join(directory, entry)
            try:
                os.unlink(full)
                removed.append(full)
            except IsADirectoryError:
                pass
            except FileNotFoundError:
                pass
    return removed


def _sidecar(path):
    return path[: -len(".tfrecord")] + ".json"


def file_crc32(path, chunk=1 << 22):
    crc, size = 0, 0
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return crc, size
            crc = zlib.crc32(block, crc)
            size += len(block)


def read_sidecar(path):
    """The sidecar dict of shard `path` (JSON only: nothing in it can run code). ShardError for an
    unreadable or malformed one."""
    sidecar = _sidecar(path)
    try:
        with open(sidecar, encoding="utf-8") as f:
            side = json.load(f)
    except (OSError, ValueError) as e:
        raise ShardError(
            f"unreadable sidecar {sidecar}: {_first_line(e)}; delete it and its shard "
            "and rerun generate to rebuild the shard"
        ) from None
    problems = [
        k
        for k in ("num_bytes", "num_examples", "num_shards", "crc32")
        if not _is_int(side.get(k) if isinstance(side, dict) else None)
    ]
    if not problems and not (
        isinstance(side.get("image_size"), list) and isinstance(side.get("label_format"), dict)
    ):
        problems = ["image_size/label_format"]
    if problems:
        raise ShardError(
            f"malformed sidecar {sidecar} (bad or missing {', '.join(problems)}); "
            "delete it and its shard and rerun generate to rebuild the shard"
        )
    return side


def _first_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def is_complete(path):
    """True when the shard and its sidecar exist and the shard has the recorded size."""
    try:
        return os.path.getsize(path) == read_sidecar(path)["num_bytes"]
    except (OSError, ShardError):
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
        raise UserError(f"verify must be 'none', 'size' or 'full', got {verify!r}")
    if not os.path.isdir(directory):
        raise ShardError(
            f"shard directory {directory} does not exist (or is not a directory); run "
            "`python -m experiments.distill.generate` first or fix the path"
        )
    pattern = os.path.join(directory, f"{dataset}-*-of-*.json")
    sidecars = sorted(tf.io.gfile.glob(pattern))
    if not sidecars:
        raise ShardError(
            f"no finished shards of dataset {dataset!r} in {directory} (looked for "
            f"{pattern}); run `python -m experiments.distill.generate` first"
        )
    paths, sides = [], []
    for sidecar in sidecars:
        path = sidecar[: -len(".json")] + ".tfrecord"
        side = read_sidecar(path)
        if not os.path.exists(path):
            raise ShardError(
                f"shard {path} is missing but its sidecar exists; delete {sidecar} and "
                "rerun generate to rebuild it"
            )
        size = os.path.getsize(path)
        if verify != "none" and size != side["num_bytes"]:
            raise ShardError(
                f"corrupt shard {path}: {size} bytes on disk, {side['num_bytes']} "
                "recorded (truncated or overwritten); delete it and its .json and rerun "
                "generate to rebuild it"
            )
        if verify == "full" and file_crc32(path)[0] != side["crc32"]:
            raise ShardError(
                f"corrupt shard {path}: CRC32 differs from the one recorded at "
                "generation; delete it and its .json and rerun generate to rebuild it"
            )
        paths.append(path)
        sides.append(side)
    counts = {s["num_shards"] for s in sides}
    if len(counts) != 1:
        raise ShardError(
            f"shards of {dataset!r} in {directory} come from runs with different shard "
            f"counts {sorted(counts)}; regenerate into an empty directory"
        )
    fmt, size = label_format(sides[0]), sides[0]["image_size"]
    for path, side in zip(paths, sides):  # readers take the first sidecar's format for all
        if label_format(side) != fmt or side["image_size"] != size:
            raise ShardError(
                f"shard {path} of {dataset!r} was written with "
                "a different label format or image size than the others; "
                "regenerate into an empty directory"
            )
    planned = counts.pop()
    if len(paths) < planned and not allow_partial:
        raise ShardError(
            f"only {len(paths)} of {planned} shards of {dataset!r} in {directory} are "
            "finished; rerun generate (it resumes) or allow partial datasets"
        )
    return paths, sides


def label_format(sidecar):
    fields = sidecar.get("label_format")
    known = {f.name for f in dataclasses.fields(LabelFormat)}
    if not isinstance(fields, dict) or not set(fields) <= known or "classes" not in fields:
        raise ShardError(
            f"shard {sidecar.get('file', '?')} has a malformed label_format {fields!r}; "
            "regenerate it"
        )
    return LabelFormat(**fields)
