"""Student input: read soft-label shards and mix D1/D2/D3 dynamically (paper Section 8).

Each dataset is read independently (shuffled, repeated) and `tf.data.Dataset.sample_from_datasets`
draws every example from dataset i with probability ratio_i / sum(ratios), so the mixture holds
in expectation at any point of training, not per fixed epoch. The only augmentation is a
left-right flip (Appendix H).
"""

import math
from typing import Optional, Sequence

import gin
import tensorflow as tf

from experiments.distill import augment
from experiments.distill import shards
from mobilenetv4 import preprocessing
from mobilenetv4.cli import UserError


def check_ratios(ratios, count=None):
    """The ratios as floats; UserError unless each is a finite number above 0 (and, given `count`,
    there is one per dataset)."""
    try:
        ratios = tuple(ratios)
    except TypeError:
        raise UserError(f"mixing ratios must be a list of numbers, got {ratios!r}") from None
    if count is not None and len(ratios) != count:
        raise UserError(
            f"{count} datasets but {len(ratios)} mixing ratios {ratios}; give one ratio per dataset"
        )
    for r in ratios:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0:
            raise UserError(
                f"mixing ratios must be finite numbers above 0, got {ratios} (drop a "
                "dataset instead of giving it ratio 0)"
            )
    return tuple(float(r) for r in ratios)


def soft_label_dataset(
    directory,
    name,
    verify="size",
    shuffle_buffer=10_000,
    seed=None,
    input_context: Optional[tf.distribute.InputContext] = None,
    allow_partial=False,
):
    """Endless shuffled dataset of {"image": uint8 [H,W,3], "label": [classes], "id"} for one
    distillation dataset; sharded by files across input pipelines when there are enough files."""
    paths, sides = shards.load_manifest(directory, name, verify=verify, allow_partial=allow_partial)
    fmt = shards.label_format(sides[0])
    size = tuple(sides[0]["image_size"])
    files = tf.data.Dataset.from_tensor_slices(paths)
    by_record = False
    if input_context and input_context.num_input_pipelines > 1:
        if len(paths) >= input_context.num_input_pipelines:
            files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        else:
            by_record = True
    files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(paths), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=seed is not None,
    )
    if by_record:
        records = records.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle_buffer:
        records = records.shuffle(shuffle_buffer, seed=seed)
    return records.map(
        shards.make_parser(fmt, size),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=seed is not None,
    )


def mix_datasets(datasets: Sequence[tf.data.Dataset], ratios: Sequence[float], seed=None):
    """Samples from `datasets` with probabilities proportional to `ratios` (endless inputs)."""
    ratios = check_ratios(ratios, len(datasets))
    weights = [float(r) / sum(ratios) for r in ratios]
    return tf.data.Dataset.sample_from_datasets(
        list(datasets), weights=weights, seed=seed, stop_on_empty_dataset=False
    )


@gin.configurable(module="distill")
class DistillationData:
    """The trainer's data interface (`experiments.data.TrainingData`, like ImageClassificationData)
    over soft-label shards: train batches mix `datasets` at `ratios`; eval comes from `eval_data`.
    For the run's build record it also exposes `preprocessing` (the normalisation name, when the
    default preprocess is used), `eval_crop_fraction` and `spec` (both of `eval_data`: the source
    the student is measured on, which is also what its INT8 export should calibrate on).

    directory: where generate wrote the shards. flip: the only augmentation (Appendix H); digits
    are not mirror-symmetric, so the quickstart turns it off. examples_per_epoch: what one "epoch"
    of the schedule means (default: all stored examples). eval_data: an ImageClassificationData
    (e.g. @input_pipeline()) whose eval split measures the student; None for no eval.
    """

    def __init__(
        self,
        directory=gin.REQUIRED,
        datasets=("d1", "d2", "d3"),
        ratios=(1, 1, 2),
        eval_data=None,
        flip=True,
        preprocess=None,
        examples_per_epoch=None,
        verify="size",
        shuffle_buffer=10_000,
        deterministic=False,
    ):
        self.directory = directory
        self.datasets = tuple(datasets)
        if not self.datasets or len(set(self.datasets)) != len(self.datasets):
            raise UserError(
                f"DistillationData.datasets must be distinct names, got {self.datasets}"
            )
        self.ratios = check_ratios(ratios, len(self.datasets))
        if examples_per_epoch is not None and (
            isinstance(examples_per_epoch, bool)
            or not isinstance(examples_per_epoch, int)
            or examples_per_epoch < 1
        ):
            raise UserError(
                f"examples_per_epoch must be an integer of at least 1, got {examples_per_epoch!r}"
            )
        if (
            isinstance(shuffle_buffer, bool)
            or not isinstance(shuffle_buffer, int)
            or shuffle_buffer < 0
        ):
            raise UserError(
                f"shuffle_buffer must be an integer of at least 0, got {shuffle_buffer!r}"
            )
        sides = {
            name: shards.load_manifest(directory, name, verify=verify)[1] for name in self.datasets
        }
        formats = {
            name: (shards.label_format(s[0]).classes, tuple(s[0]["image_size"]))
            for name, s in sides.items()
        }
        if len(set(formats.values())) != 1:
            raise shards.ShardError(
                f"datasets in {directory} differ in (classes, image size): "
                f"{formats}; they must come from one teacher and one size"
            )
        self.num_classes, size = next(iter(formats.values()))
        if size[0] != size[1]:
            raise shards.ShardError(
                f"shards in {directory} hold {size} images; the trainer expects square images"
            )
        self.image_size = size[0]
        stored = sum(s["num_examples"] for ss in sides.values() for s in ss)
        self.num_train_examples = int(examples_per_epoch or stored)
        self.eval_data = eval_data() if callable(eval_data) else eval_data
        if self.eval_data is not None:
            if self.eval_data.num_classes != self.num_classes:
                raise UserError(
                    f"eval data has {self.eval_data.num_classes} classes, the teacher's "
                    f"soft labels {self.num_classes}"
                )
            if self.eval_data.image_size != self.image_size:
                raise UserError(
                    f"eval data is at {self.eval_data.image_size} px, the shards at "
                    f"{self.image_size}; set the eval pipeline's image_size to match"
                )
        self.num_eval_examples = self.eval_data.num_eval_examples if self.eval_data else 0
        self.flip = flip
        self.preprocess = preprocess or augment.normalize
        self.preprocessing = None if preprocess else preprocessing.DEFAULT_NORMALIZATION
        self.eval_crop_fraction = getattr(self.eval_data, "eval_crop_fraction", None)
        self.spec = getattr(self.eval_data, "spec", None)
        self.verify = verify
        self.shuffle_buffer = shuffle_buffer
        self.deterministic = deterministic

    def steps_per_epoch(self, global_batch):
        steps = self.num_train_examples // global_batch
        if steps == 0:
            raise UserError(
                f"global batch {global_batch} exceeds the {self.num_train_examples} "
                "examples of an epoch; lower batch_size or raise examples_per_epoch"
            )
        return steps

    def mixed(self, ctx=None, seed=None):
        """The endless mixture of example dicts, before flip, preprocessing and batching."""
        parts = [
            soft_label_dataset(
                self.directory,
                name,
                verify="none",
                shuffle_buffer=self.shuffle_buffer,
                seed=None if seed is None else seed + i,
                input_context=ctx,
            )
            for i, name in enumerate(self.datasets)
        ]
        return mix_datasets(parts, self.ratios, seed=seed)

    def train_dataset(self, ctx, per_replica_batch, epoch, seed, skip_steps=0):
        """One epoch of (images, soft labels) batches; with deterministic=True a resumed epoch
        replays the same batches (the trainer's contract)."""
        replicas = ctx.num_replicas_in_sync if ctx else 1
        pipelines = ctx.num_input_pipelines if ctx else 1
        n_batches = self.steps_per_epoch(per_replica_batch * replicas) * replicas // pipelines
        epoch_seed = seed * 1_000_003 + epoch if self.deterministic else None
        parallel = None if self.deterministic else tf.data.AUTOTUNE

        def student_input(example):
            if epoch_seed is not None:
                tf.random.set_seed(epoch_seed)  # graph-level: only this map's flip
            image = example["image"]
            if self.flip:
                image = tf.image.random_flip_left_right(image)
            return self.preprocess(image), example["label"]

        ds = self.mixed(ctx, epoch_seed).map(student_input, num_parallel_calls=parallel)
        ds = ds.batch(per_replica_batch, drop_remainder=True).take(n_batches)
        return ds.skip(skip_steps * replicas // pipelines).prefetch(tf.data.AUTOTUNE)

    def eval_dataset(self, ctx, per_replica_batch, num_batches):
        if self.eval_data is None:
            raise UserError("DistillationData has no eval_data; bind DistillationData.eval_data")
        return self.eval_data.eval_dataset(ctx, per_replica_batch, num_batches)
