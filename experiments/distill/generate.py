"""Offline distillation datasets: augment, JPEG round trip, teacher soft labels, TFRecord shards.

    python -m experiments.distill.generate --gin_file=gin_configs/distill_generate_quickstart.gin \
        [--gin_param="generate.output_dir = '/tmp/d'"] [--worker_index=0 --num_workers=1]

Per dataset (D1, D2, D3 of paper Section 8) and per shard: take the shard's source images
(every num_shards-th), repeat them `replicas` times, Inception-crop and augment them, encode as
JPEG at `jpeg_quality`, decode, run the teacher and write (JPEG bytes, probabilities). A shard's
content depends only on (seed, dataset, shard), so a killed run that is rerun skips finished
shards and rebuilds the rest identically. Workers split the shards by index modulo num_workers.

The teacher is built from this package's registry and only its weights are read from files
(experiments/distill/teacher.py); shards and sidecars are written atomically (mobilenetv4.fileio);
each worker holds a lock on its part of output_dir, so a second live job for the same worker and
directory is refused. Every user error - a bad flag, gin file or value, a refused teacher file -
is one `error: ...` line and exit code 2 (docs/CONTRACT.md).
"""

import contextlib
import dataclasses
import inspect
import math
import os
import re
import time
import zlib
from typing import Any, Optional

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
from mobilenetv4 import fileio
from mobilenetv4.cli import UserError

_NAME = re.compile(r"^[A-Za-z0-9_.]+$")


def _is_int(value, minimum=None):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    return ok and (minimum is None or value >= minimum)


def _is_finite(value):
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


@dataclasses.dataclass
class Selection:
    """D3: keep candidates the relevance model scores above threshold, per_class per class."""

    model: Any
    threshold: float = 0.3
    per_class: int = 130_000
    output: str = "logits"

    def __post_init__(self):
        relevance.check_selection(self.threshold, self.per_class)
        if self.output not in teacher_lib.TEACHER_OUTPUTS:
            raise UserError(
                f"Selection.output {self.output!r} unknown; choose one of "
                f"{teacher_lib.TEACHER_OUTPUTS}"
            )


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

    def __post_init__(self):
        where = f"DistillDataset {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise UserError(
                f"DistillDataset name {self.name!r} must be letters, digits, '_' or '.' "
                "(it names the shard files)"
            )
        if self.augmentation not in augment.AUGMENTATIONS:
            raise UserError(
                f"{where}: unknown augmentation {self.augmentation!r}; choose one of "
                f"{augment.AUGMENTATIONS}"
            )
        if not _is_int(self.replicas, 1):
            raise UserError(
                f"{where}: replicas must be an integer of at least 1, got {self.replicas!r}"
            )
        if not _is_int(self.randaugment_layers, 0):
            raise UserError(
                f"{where}: randaugment_layers must be an integer of at least 0, got "
                f"{self.randaugment_layers!r}"
            )
        if not (_is_finite(self.randaugment_magnitude) and self.randaugment_magnitude >= 0):
            raise UserError(
                f"{where}: randaugment_magnitude must be a finite number of at least 0, "
                f"got {self.randaugment_magnitude!r}"
            )
        if not (_is_finite(self.mixup_alpha) and self.mixup_alpha > 0):
            raise UserError(
                f"{where}: mixup_alpha must be a finite number above 0, got {self.mixup_alpha!r}"
            )
        augment.check_crop_area_range(self.crop_area_range)
        if self.selection is not None and not isinstance(self.selection, Selection):
            raise UserError(f"{where}: selection must be a Selection, got {self.selection!r}")

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
    with strategy.scope():
        model = teacher_lib.load_teacher(sel.model, image_size=image_size, details=True)
    logging.info("%s relevance model: %s", spec.name, model.source)
    scorer = teacher_lib.TeacherRunner(
        model.model,
        batch_size,
        _preprocess(preprocess, model),
        output=sel.output,
        strategy=strategy,
    )
    resized = images.map(lambda im: tf.cast(tf.image.resize(im, image_size), tf.uint8))
    scores = np.concatenate([scorer(b.numpy()) for b in resized.batch(batch_size)])
    idx, cls = relevance.select_balanced(scores, sel.threshold, sel.per_class, seed=seed)
    logging.info(
        "%s selection: %s",
        spec.name,
        relevance.selection_report(scores, cls, sel.threshold, sel.per_class),
    )
    return idx


def _shard_examples(
    spec, source, num_source, index, num_shards, image_size, jpeg_quality, batch_size
):
    """tf.data of (id, jpeg bytes, decoded uint8 image) batches for one shard, fixed order."""
    own = source.enumerate().shard(num_shards, index).cache()
    replicas = tf.data.Dataset.range(spec.replicas).flat_map(
        lambda r: own.map(lambda s, im: (r * num_source + s, im))
    )
    ids = replicas.map(lambda i, im: i)
    images = augment.augment_dataset(
        replicas.map(lambda i, im: im),
        spec.augmentation,
        image_size,
        randaugment_layers=spec.randaugment_layers,
        randaugment_magnitude=spec.randaugment_magnitude,
        mixup_alpha=spec.mixup_alpha,
        crop_area_range=spec.crop_area_range,
        randaugment_exclude_ops=spec.randaugment_exclude_ops,
    )

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


def _preprocess(preprocess, teacher):
    """The explicit `preprocess`, else the normalisation the teacher's build record names, else the
    trainer's ('imagenet'), all from mobilenetv4.preprocessing."""
    if preprocess is not None:
        return preprocess
    name = teacher.preprocessing or None
    if name is None:
        return augment.normalize
    return lambda images: augment.normalize(images, name)


def _check_arguments(
    datasets,
    output_dir,
    image_size,
    num_shards,
    jpeg_quality,
    batch_size,
    teacher_output,
    temperature,
    seed,
    worker_index,
    num_workers,
):
    """UserError for the first impossible value, before any work is done."""
    if not _is_int(num_workers, 1):
        raise UserError(f"num_workers must be an integer of at least 1, got {num_workers!r}")
    if not _is_int(worker_index) or not 0 <= worker_index < num_workers:
        raise UserError(
            f"worker_index {worker_index!r} is outside [0, num_workers={num_workers}); "
            f"workers are numbered 0 to {num_workers - 1}"
        )
    if (
        not isinstance(datasets, (list, tuple))
        or not datasets
        or not all(isinstance(d, DistillDataset) for d in datasets)
    ):
        raise UserError("generate.datasets must be a non-empty list of @DistillDataset() bindings")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise UserError(f"dataset names must be unique, got {names}")
    if not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
        raise UserError(f"generate.output_dir must be a directory path, got {output_dir!r}")
    if (
        not isinstance(image_size, (list, tuple))
        or len(image_size) != 2
        or not all(_is_int(s, 1) for s in image_size)
    ):
        raise UserError(
            f"image_size must be (height, width) in positive pixels, got {image_size!r}"
        )
    if not _is_int(num_shards, 1) or num_shards > 99_999:
        raise UserError(f"num_shards must be an integer from 1 to 99999, got {num_shards!r}")
    if num_shards < num_workers:
        raise UserError(
            f"num_shards={num_shards} is below num_workers={num_workers}: some workers "
            "would have no shard; use fewer workers or more shards"
        )
    if not _is_int(jpeg_quality) or not 1 <= jpeg_quality <= 100:
        raise UserError(f"jpeg_quality must be an integer from 1 to 100, got {jpeg_quality!r}")
    if not _is_int(batch_size, 1):
        raise UserError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
    if teacher_output not in teacher_lib.TEACHER_OUTPUTS:
        raise UserError(
            f"teacher_output {teacher_output!r} unknown; choose one of "
            f"{teacher_lib.TEACHER_OUTPUTS}"
        )
    if not (_is_finite(temperature) and temperature > 0):
        raise UserError(f"temperature must be a finite number above 0, got {temperature!r}")
    if not _is_int(seed, 0):
        raise UserError(f"seed must be an integer of at least 0, got {seed!r}")


def _check_finished(path, meta):
    """UserError when a finished shard at `path` was generated with other settings than `meta`
    (resuming would mix two recipes in one dataset)."""
    side = shards.read_sidecar(path)
    for key, value in meta.items():
        if key in side and side[key] != value:
            raise UserError(
                f"finished shard {path} was generated with {key}={side[key]!r}, this run "
                f"asks for {value!r}; use an empty output_dir (or the same settings to "
                "resume)"
            )


@contextlib.contextmanager
def _lock(output_dir, worker_index, num_workers):
    """The run lock of this worker's part of output_dir (fileio.RunLock, released if killed)."""
    lock = fileio.RunLock(
        os.path.join(output_dir, ".locks", f"worker-{worker_index:05d}-of-{num_workers:05d}"),
        what="output_dir",
    )
    try:
        lock.acquire()
    except fileio.RunLocked as e:
        pid = re.search(r"\(pid ([^)]*)\)", str(e))
        raise UserError(
            f"output_dir {output_dir} is in use by another running generate (worker "
            f"{worker_index} of {num_workers}, pid {pid.group(1) if pid else '?'}); wait "
            "for it to finish or use another output_dir"
        ) from None
    try:
        yield lock
    finally:
        lock.release()


@gin.configurable(module="distill", denylist=["worker_index", "num_workers"])
def generate(
    datasets=gin.REQUIRED,
    teacher=gin.REQUIRED,
    output_dir=gin.REQUIRED,
    classes=gin.REQUIRED,
    image_size=(224, 224),
    num_shards=16,
    jpeg_quality=95,
    top_k=0,
    prob_dtype="float16",
    batch_size=64,
    teacher_output="logits",
    temperature=1.0,
    preprocess=None,
    strategy="default",
    seed=0,
    worker_index=0,
    num_workers=1,
):
    """Writes this worker's shards of every dataset into output_dir; returns their sidecars.

    teacher: a training run directory, a weights .h5 with a build record, @registered_teacher(),
    @trained_model() or a tf_keras model (experiments/distill/teacher.py; full model files only
    with `load_teacher.trust_model_file = True`). preprocess maps uint8 images to the teacher's
    input; None takes the normalisation its build record names (else the trainer's 'imagenet').
    top_k=0 stores all `classes` probabilities, else the top k and the remainder mass. Finished
    shards are skipped, so rerunning after a kill resumes.
    """
    given = locals()  # first statement: exactly generate's arguments
    _check_arguments(**{k: given[k] for k in inspect.signature(_check_arguments).parameters})
    output_dir = os.fspath(output_dir)
    names = [d.name for d in datasets]
    fmt = shards.LabelFormat(classes=classes, top_k=top_k, prob_dtype=prob_dtype)
    image_size = tuple(int(s) for s in image_size)
    fileio.check_writable_dir(output_dir, flag="generate.output_dir")
    mine = [i for i in range(num_shards) if i % num_workers == worker_index]
    with _lock(output_dir, worker_index, num_workers):
        removed = shards.remove_stale_temporaries(
            output_dir, [shards.shard_name(d.name, i, num_shards) for d in datasets for i in mine]
        )
        if removed:
            logging.info("removed %d unfinished files a killed run left: %s", len(removed), removed)
        strategy = trainer.make_strategy(strategy) if isinstance(strategy, str) else strategy
        with strategy.scope():
            loaded = teacher_lib.load_teacher(teacher, image_size=image_size, details=True)
        logging.info("teacher: %s", loaded.source)
        runner = teacher_lib.TeacherRunner(
            loaded.model,
            batch_size,
            _preprocess(preprocess, loaded),
            output=teacher_output,
            temperature=temperature,
            strategy=strategy,
        )
        logging.info(
            "worker %d/%d: shards %s of %s into %s; teacher on %d replicas",
            worker_index,
            num_workers,
            mine,
            names,
            output_dir,
            strategy.num_replicas_in_sync,
        )
        settled = locals()  # every ShardJob field is a variable of the same name by now
        job = ShardJob(**{f.name: settled[f.name] for f in dataclasses.fields(ShardJob)})
        return _generate_shards(datasets, job)


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """What one worker's generation writes: its shard indices (`mine`) and the settings of the run,
    fixed once the teacher is loaded."""

    output_dir: str
    mine: list
    classes: int
    image_size: tuple
    num_shards: int
    jpeg_quality: int
    fmt: "shards.LabelFormat"
    batch_size: int
    preprocess: object
    strategy: object
    seed: int
    runner: object

    def meta(self, spec, index):
        """The settings shard `index` of `spec` is generated with (its sidecar's "meta")."""
        return {
            "dataset": spec.name,
            "shard": index,
            "num_shards": self.num_shards,
            "augmentation": spec.augmentation,
            "replicas": spec.replicas,
            "randaugment": [
                spec.randaugment_layers,
                spec.randaugment_magnitude,
                list(spec.randaugment_exclude_ops),
            ],
            "mixup_alpha": spec.mixup_alpha,
            "crop_area_range": list(spec.crop_area_range),
            "image_size": list(self.image_size),
            "jpeg_quality": self.jpeg_quality,
            "label_format": self.fmt.to_json(),
            "seed": self.seed,
        }


def _generate_shards(datasets, job):
    written = []
    for spec in datasets:
        paths = {
            i: os.path.join(job.output_dir, shards.shard_name(spec.name, i, job.num_shards))
            for i in job.mine
        }
        finished = {i for i, p in paths.items() if shards.is_complete(p)}
        for i in finished:
            _check_finished(paths[i], job.meta(spec, i))
        if len(finished) == len(job.mine):
            logging.info(
                "%s: all %d shards of this worker already finished", spec.name, len(job.mine)
            )
            continue  # also skips D3's relevance scoring on resume
        source = spec.images(job.classes)
        if spec.selection is not None:
            tf.random.set_seed(job.seed)
            chosen = _select(
                spec, source, job.image_size, job.batch_size, job.preprocess, job.strategy, job.seed
            )
            pool = np.stack(list(source.as_numpy_iterator()))
            source = tf.data.Dataset.from_tensor_slices(pool[chosen])
        num_source = int(source.reduce(np.int64(0), lambda n, _: n + 1))
        if num_source < job.num_shards:
            raise UserError(
                f"dataset {spec.name!r} has {num_source} source images, fewer than "
                f"num_shards={job.num_shards}; lower num_shards"
            )
        total = num_source * spec.replicas
        done = 0
        start = time.time()
        for index in job.mine:
            path = paths[index]
            if index in finished:
                logging.info(
                    "%s: shard %d/%d already finished, skipped",
                    spec.name,
                    index + 1,
                    job.num_shards,
                )
                continue
            tf.random.set_seed(_shard_seed(job.seed, spec.name, index))
            batches = _shard_examples(
                spec,
                source,
                num_source,
                index,
                job.num_shards,
                job.image_size,
                job.jpeg_quality,
                job.batch_size,
            )
            records = _label(
                batches, job.runner, job.fmt, f"{spec.name} shard {index + 1}/{job.num_shards}"
            )
            meta = job.meta(spec, index)
            side = shards.write_shard(path, records, meta)
            written.append(side)
            done += side["num_examples"]
            rate = done / max(time.time() - start, 1e-9)
            logging.info(
                "%s: shard %d/%d done, %d examples, %.0f bytes/example, %.1f examples/s "
                "(this worker: about %d examples in all)",
                spec.name,
                index + 1,
                job.num_shards,
                side["num_examples"],
                side["num_bytes"] / max(side["num_examples"], 1),
                rate,
                total * len(job.mine) // job.num_shards,
            )
    return written


FLAGS, PARAMS = common_flags.GIN_FILES, common_flags.GIN_PARAMS
WORKER = flags.DEFINE_integer(
    "worker_index", 0, "this worker's index, 0 to num_workers - 1", lower_bound=0
)
WORKERS = flags.DEFINE_integer("num_workers", 1, "number of generation workers", lower_bound=1)

# Errors of the data readers and of the files a run reads that are the user's to fix.
_INPUT_ERRORS = (
    data_lib.DataError,
    FileNotFoundError,
    tf.errors.NotFoundError,
    tf.errors.DataLossError,
    tf.errors.InvalidArgumentError,
)


def main(argv):
    del argv  # common_flags.run refuses positional arguments
    if not FLAGS.value:
        raise UserError(
            "pass --gin_file=gin_configs/distill_generate_quickstart.gin (or another "
            "gin_configs/distill_generate_*.gin)"
        )
    logging.set_verbosity(logging.INFO)
    common_flags.split_cpu_if_asked()
    common_flags.parse_gin(FLAGS.value, PARAMS.value)
    try:
        written = generate(worker_index=WORKER.value, num_workers=WORKERS.value)
    except UserError:
        raise
    except _INPUT_ERRORS as e:
        message = " ".join(str(getattr(e, "message", e)).split()) or type(e).__name__
        raise UserError(f"cannot read the input data: {message}") from None
    except RuntimeError as e:
        if "Required bindings" in str(e) or "gin" in type(e).__module__:
            raise UserError(f"bad gin configuration: {e}") from None
        raise
    print(
        f"this run wrote {len(written)} shards ({sum(s['num_examples'] for s in written)} examples)"
    )
    return 0


if __name__ == "__main__":
    common_flags.run(main)
