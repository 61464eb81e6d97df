"""Offline distillation datasets: augment, JPEG round trip, teacher soft labels, TFRecord shards.

    python -m experiments.distill.generate --gin_file=gin_configs/distill_quickstart.gin \
        [--gin_param=generate.output_dir='/tmp/d'] [--worker_index=0 --num_workers=1]

Per dataset (D1, D2, D3 of paper Section 8) and per shard: take the shard's source images
(every num_shards-th), repeat them `replicas` times, Inception-crop and augment them, encode as
JPEG at `jpeg_quality`, decode, run the teacher and write (JPEG bytes, probabilities). A shard's
content depends only on (seed, dataset, shard), so a killed run that is rerun skips finished
shards and rebuilds the rest identically. Workers split the shards by index modulo num_workers.
"""
import dataclasses
import os
import sys
import time
import zlib
from typing import Any, Callable, Optional

from absl import app
from absl import flags
from absl import logging
import gin
import numpy as np
import tensorflow as tf

from experiments import data as data_lib
from experiments import common_flags
from experiments import trainer
from experiments.distill import augment
from experiments.distill import relevance
from experiments.distill import shards
from experiments.distill import teacher as teacher_lib


@dataclasses.dataclass
class Selection:
  """D3: keep candidates the relevance model scores above threshold, per_class per class."""
  model: Any
  threshold: float = 0.3
  per_class: int = 130_000
  output: str = "logits"


@dataclasses.dataclass
class DistillDataset:
  """One distillation dataset. `source` is a dataset spec of experiments.data ("tfds:NAME",
  "folder:DIR", "tfrecord:GLOB", "sklearn_digits") read in its fixed order; labels are unused."""
  name: str
  source: str
  augmentation: str  # "randaugment" or "mixup"
  replicas: int
  split: str = "train"
  randaugment_layers: int = 2
  randaugment_magnitude: float = 9
  mixup_alpha: float = 1.0
  crop_area_range: tuple = (0.08, 1.0)
  randaugment_exclude_ops: tuple = ()  # Model Garden op names, e.g. ('Invert', 'Solarize')
  selection: Optional[Selection] = None

  def images(self, classes):
    """uint8 [H, W, 3] source images in a fixed order."""
    src = data_lib.make_source(self.source, self.split, num_classes=classes)
    return src.read(None, None).map(lambda key, encoded, label: data_lib.decode(key, encoded))


gin.external_configurable(Selection, module="distill")
gin.external_configurable(DistillDataset, module="distill")


def _shard_seed(seed, name, index):
  return (seed * 1_000_003 + zlib.crc32(name.encode()) + index * 7919) % (2**31 - 1)


def _select(spec, images, image_size, batch_size, preprocess, strategy, seed):
  """Scores the candidate images with the relevance model and returns the balanced selection."""
  sel = spec.selection
  scorer = teacher_lib.TeacherRunner(teacher_lib.load_teacher(sel.model), batch_size, preprocess,
                                     output=sel.output, strategy=strategy)
  resized = images.map(lambda im: tf.cast(tf.image.resize(im, image_size), tf.uint8))
  scores = np.concatenate([scorer(b.numpy()) for b in resized.batch(batch_size)])
  idx, cls = relevance.select_balanced(scores, sel.threshold, sel.per_class, seed=seed)
  logging.info("%s selection: %s", spec.name,
               relevance.selection_report(scores, cls, sel.threshold, sel.per_class))
  return idx


def _shard_examples(spec, source, num_source, index, num_shards, image_size, jpeg_quality,
                    batch_size):
  """tf.data of (id, jpeg bytes, decoded uint8 image) batches for one shard, fixed order."""
  own = source.enumerate().shard(num_shards, index).cache()
  replicas = tf.data.Dataset.range(spec.replicas).flat_map(
      lambda r: own.map(lambda s, im: (r * num_source + s, im)))
  ids = replicas.map(lambda i, im: i)
  images = augment.augment_dataset(
      replicas.map(lambda i, im: im), spec.augmentation, image_size,
      randaugment_layers=spec.randaugment_layers,
      randaugment_magnitude=spec.randaugment_magnitude, mixup_alpha=spec.mixup_alpha,
      crop_area_range=spec.crop_area_range,
      randaugment_exclude_ops=spec.randaugment_exclude_ops)

  def jpeg_round_trip(i, im):
    data = tf.io.encode_jpeg(im, quality=jpeg_quality)
    return i, data, tf.io.decode_jpeg(data, channels=3)

  return tf.data.Dataset.zip((ids, images)).map(jpeg_round_trip).batch(batch_size).prefetch(2)


def _label(batches, runner, fmt, what, every_secs=30.0):
  """Yields serialized examples batch by batch, logging progress every `every_secs`."""
  count, last = 0, time.time()
  for ids, jpegs, images in batches:
    probs = runner(images.numpy())
    for i, j, p in zip(ids.numpy(), jpegs.numpy(), probs):
      yield shards.encode_example(j, p, i, fmt)
    count += len(probs)
    if time.time() - last > every_secs:
      logging.info("%s: %d examples labelled", what, count)
      last = time.time()


@gin.configurable(module="distill", denylist=["worker_index", "num_workers"])
def generate(datasets=gin.REQUIRED, teacher=gin.REQUIRED, output_dir=gin.REQUIRED,
             classes=gin.REQUIRED, image_size=(224, 224), num_shards=16, jpeg_quality=95, top_k=0,
             prob_dtype="float16", batch_size=64, teacher_output="logits", temperature=1.0,
             preprocess=augment.normalize, strategy="default", seed=0, worker_index=0, num_workers=1):
  """Writes this worker's shards of every dataset into output_dir; returns their sidecars.

  teacher: a tf_keras model, a model file or SavedModel path. preprocess maps uint8 images to
  the teacher's input. top_k=0 stores all `classes` probabilities, else the top k and the
  remainder mass. Finished shards are skipped, so rerunning after a kill resumes.
  """
  if not 0 <= worker_index < num_workers:
    raise ValueError(f"worker_index {worker_index} is outside [0, num_workers={num_workers})")
  if not 1 <= jpeg_quality <= 100:
    raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
  names = [d.name for d in datasets]
  if len(set(names)) != len(names):
    raise ValueError(f"dataset names must be unique, got {names}")
  fmt = shards.LabelFormat(classes=classes, top_k=top_k, prob_dtype=prob_dtype)
  image_size = tuple(image_size)
  tf.io.gfile.makedirs(output_dir)
  strategy = trainer.make_strategy(strategy) if isinstance(strategy, str) else strategy
  with strategy.scope():
    model = teacher_lib.load_teacher(teacher)
  runner = teacher_lib.TeacherRunner(model, batch_size, preprocess, output=teacher_output,
                                     temperature=temperature, strategy=strategy)
  mine = [i for i in range(num_shards) if i % num_workers == worker_index]
  logging.info("worker %d/%d: shards %s of %s into %s; teacher on %d replicas", worker_index,
               num_workers, mine, names, output_dir, strategy.num_replicas_in_sync)
  written = []
  for spec in datasets:
    paths = {i: f"{output_dir}/{shards.shard_name(spec.name, i, num_shards)}" for i in mine}
    if all(shards.is_complete(p) for p in paths.values()):
      logging.info("%s: all %d shards of this worker already finished", spec.name, len(mine))
      continue  # also skips D3's relevance scoring on resume
    source = spec.images(classes)
    if spec.selection is not None:
      tf.random.set_seed(seed)
      chosen = _select(spec, source, image_size, batch_size, preprocess, strategy, seed)
      pool = np.stack(list(source.as_numpy_iterator()))
      source = tf.data.Dataset.from_tensor_slices(pool[chosen])
    num_source = int(source.reduce(np.int64(0), lambda n, _: n + 1))
    if num_source < num_shards:
      raise ValueError(f"dataset {spec.name!r} has {num_source} source images, fewer than "
                       f"num_shards={num_shards}; lower num_shards")
    total = num_source * spec.replicas
    done = 0
    start = time.time()
    for index in mine:
      path = paths[index]
      if shards.is_complete(path):
        logging.info("%s: shard %d/%d already finished, skipped", spec.name, index + 1,
                     num_shards)
        continue
      tf.random.set_seed(_shard_seed(seed, spec.name, index))
      batches = _shard_examples(spec, source, num_source, index, num_shards, image_size,
                                jpeg_quality, batch_size)
      records = _label(batches, runner, fmt, f"{spec.name} shard {index + 1}/{num_shards}")
      meta = {"dataset": spec.name, "shard": index, "num_shards": num_shards,
              "augmentation": spec.augmentation, "replicas": spec.replicas,
              "randaugment": [spec.randaugment_layers, spec.randaugment_magnitude,
                              list(spec.randaugment_exclude_ops)],
              "mixup_alpha": spec.mixup_alpha, "image_size": list(image_size),
              "jpeg_quality": jpeg_quality, "label_format": fmt.to_json(), "seed": seed}
      side = shards.write_shard(path, records, meta)
      written.append(side)
      done += side["num_examples"]
      rate = done / max(time.time() - start, 1e-9)
      logging.info("%s: shard %d/%d done, %d examples, %.0f bytes/example, %.1f examples/s "
                   "(this worker: about %d examples in all)", spec.name, index + 1, num_shards,
                   side["num_examples"], side["num_bytes"] / max(side["num_examples"], 1), rate,
                   total * len(mine) // num_shards)
  return written


FLAGS, PARAMS = common_flags.GIN_FILES, common_flags.GIN_PARAMS
WORKER = flags.DEFINE_integer("worker_index", 0, "this worker's index")
WORKERS = flags.DEFINE_integer("num_workers", 1, "number of generation workers")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.value:
    raise app.UsageError("pass --gin_file=gin_configs/distill_generate_<recipe>.gin")
  logging.set_verbosity(logging.INFO)
  common_flags.split_cpu_if_asked()
  for path in FLAGS.value:
    if not os.path.exists(path):
      print(f"error: gin file '{path}' does not exist", file=sys.stderr)
      return 2
  try:
    gin.parse_config_files_and_bindings(FLAGS.value, PARAMS.value)
    written = generate(worker_index=WORKER.value, num_workers=WORKERS.value)
  except (ValueError, KeyError, FileNotFoundError, NameError) as e:
    # ShardError and experiments.data.DataError are ValueErrors; gin reports unknown or
    # missing bindings as ValueError / KeyError / NameError.
    print(f"error: {str(e).strip()}", file=sys.stderr)
    return 2
  print(f"this run wrote {len(written)} shards "
        f"({sum(s['num_examples'] for s in written)} examples)")
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
