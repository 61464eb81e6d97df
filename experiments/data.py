"""tf.data input pipelines for image classification.

A *source* lists encoded examples (key, image bytes, label); the pipeline decodes,
augments (Model Garden's `official.vision.ops`), batches per replica and applies
Mixup/CutMix. Train batches are (images float32 [B, H, W, 3], labels float32
[B, classes]): one-hot, or soft after Mixup/CutMix. Label smoothing is left to the
loss so that every label source (hard, mixed, distilled) is treated the same.

Dataset specs are strings, so one gin binding switches datasets:
  "sklearn_digits"          the 8x8 digits bundled in scikit-learn (offline)
  "tfds:NAME[/CONFIG]"      any TFDS image classification dataset
  "folder:DIR"              DIR/CLASS_NAME/*.jpg|png|... (class = sub-folder)
  "tfrecord:GLOB"           tf.Example records (image/encoded, image/class/label)
Any spec may end in reader options `;key=value`: `label_offset=N` (label = stored label - N, e.g.
labels 1..10 with label_offset=1) and `num_classes=N` (needed by tfrecord), e.g.
  "tfrecord:/data/train-*;num_classes=10;label_offset=1".
Every source checks its labels against num_classes as they stream: a label outside
[0, num_classes) stops the run naming the file (or record key), the label and the spec.

Normalisation and the eval crop come from mobilenetv4.preprocessing (the one definition the export,
calibration and weight import use too).
"""

import dataclasses
import glob
import os
from typing import Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import tensorflow as tf

from mobilenetv4 import preprocessing
from mobilenetv4.cli import UserError
from official.vision.ops import augment
from official.vision.ops import preprocess_ops

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
# First bytes of the formats tf.io.decode_image reads; checked in-graph so that
# a bad file fails with its own name instead of an anonymous decode error.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF")


class DataError(UserError):
    """A dataset is missing, empty or malformed; the message says which and why (exit 2)."""


@runtime_checkable
class TrainingData(Protocol):
    """What `experiments.trainer.train(data=...)` needs from a dataset.

    Implemented by ImageClassificationData (labelled images) and
    experiments.distill.mixing.DistillationData (soft labels).

    Attributes:
      num_classes: width of the label vectors (the classifier's classes).
      image_size: square input resolution in pixels.
      num_train_examples: examples in one epoch of the schedule.
      num_eval_examples: held-out examples (0: no evaluation).

    Optional attributes the trainer reads when present (for the run's build record):
      spec: the dataset spec string (e.g. "sklearn_digits"), recorded as `data`.
      eval_crop_fraction: the eval transform's central crop, recorded as `eval_crop_fraction`.
    """

    num_classes: int
    image_size: int
    num_train_examples: int
    num_eval_examples: int

    def steps_per_epoch(self, global_batch: int) -> int:
        """Optimisation steps per epoch at this global batch (>= 1, else DataError)."""

    def train_dataset(
        self,
        ctx: Optional[tf.distribute.InputContext],
        per_replica_batch: int,
        epoch: int,
        seed: int,
        skip_steps: int = 0,
    ) -> tf.data.Dataset:
        """One epoch of (images float32 [B, H, W, 3], labels float32 [B, classes]) batches for
        this input pipeline; `skip_steps` drops the epoch's first steps (resume)."""

    def eval_dataset(
        self, ctx: Optional[tf.distribute.InputContext], per_replica_batch: int, num_batches: int
    ) -> tf.data.Dataset:
        """`num_batches` batches of (images, labels, weights), weight 0 on padding."""


def _check_labels(ds, num_classes, label_offset, spec):
    """label - label_offset, asserted in [0, num_classes) as the examples stream."""

    def check(key, encoded, label):
        label = tf.cast(label, tf.int64)
        raw = label
        if label_offset:
            label = label - label_offset
        ok = tf.logical_and(label >= 0, label < num_classes)
        stored = ["(stored", raw, f"minus label_offset {label_offset})"] if label_offset else []
        with tf.control_dependencies(
            [
                tf.debugging.Assert(
                    ok,
                    ["label", label]
                    + stored
                    + [
                        "of",
                        key,
                        f"is outside 0..{num_classes - 1} for {spec}; check num_classes or set "
                        "input_pipeline.label_offset",
                    ],
                    summarize=1,
                )
            ]
        ):
            return key, encoded, tf.identity(label)

    return ds.map(check)


@dataclasses.dataclass
class Source:
    """Encoded examples of one split. `read(input_context, seed)` yields
    (key string, encoded image bytes, int64 label), sharded per input pipeline,
    with `label_offset` subtracted and every label checked against `num_classes`.
    `files`: the record files behind it (to name a corrupt one)."""

    name: str
    num_examples: int
    num_classes: int
    read: Callable[[Optional[tf.distribute.InputContext], Optional[int]], tf.data.Dataset]
    label_offset: int = 0
    files: Sequence[str] = ()
    spec: str = ""  # the dataset spec string that rebuilds it (set by make_source)
    keys: Sequence[str] = ()  # every example's key, when known without reading (exact hold_out)

    def __post_init__(self):
        raw_read = self.read

        def read(ctx, seed):
            return _check_labels(
                raw_read(ctx, seed), self.num_classes, self.label_offset, self.name
            )

        self.read = read


def find_corrupt_file(files):
    """The first of `files` that is not a complete TFRecord file, with TF's reason, or None."""
    for path in files:
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            return path, _short(e.message)
    return None


def _short(message):
    lines = [l.strip() for l in str(message).splitlines() if l.strip()] or ["?"]
    text = lines[0]
    if "}}" in text:
        text = text.split("}}", 1)[1].strip()
    return text.split(" [Op:")[0].strip()


def _shard(ds, ctx):
    if ctx is not None and ctx.num_input_pipelines > 1:
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
    return ds


def _in_memory_source(name, keys, images, labels, num_classes):
    keys = np.asarray(keys)
    images = np.asarray(images, dtype=object)
    labels = np.asarray(labels, dtype=np.int64)

    def read(ctx, seed):
        del seed  # whole-example shuffling happens in the pipeline
        return _shard(tf.data.Dataset.from_tensor_slices((keys, images, labels)), ctx)

    return Source(name, len(labels), num_classes, read, keys=keys)


def sklearn_digits_source(split, eval_fraction=0.2):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

    A fixed stratified split keeps the held-out part disjoint from training.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    idx_train, idx_eval = train_test_split(
        np.arange(len(digits.target)),
        test_size=eval_fraction,
        stratify=digits.target,
        random_state=0,
    )
    idx = idx_train if split == "train" else idx_eval
    pixels = np.round(digits.images[idx] * (255.0 / 16.0)).astype(np.uint8)
    encoded = [tf.io.encode_png(p[:, :, None]).numpy() for p in pixels]
    keys = [f"sklearn_digits[{i}]" for i in idx]
    source = _in_memory_source(f"sklearn_digits:{split}", keys, encoded, digits.target[idx], 10)
    source.spec = "sklearn_digits"
    return source


def image_folder_source(directory):
    """Images in DIR/CLASS/..., classes sorted by name (label = index)."""
    if not os.path.isdir(directory):
        raise DataError(
            f"image folder '{directory}' does not exist; pass a "
            "directory holding one sub-folder of images per class"
        )
    classes = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    if not classes:
        raise DataError(
            f"image folder '{directory}' has no class sub-folders; "
            "expected DIR/CLASS_NAME/IMAGE files"
        )
    paths, labels = [], []
    for label, cls in enumerate(classes):
        for root, _, files in os.walk(os.path.join(directory, cls)):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(root, f))
                    labels.append(label)
    if not paths:
        raise DataError(
            f"image folder '{directory}' holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
        )
    paths = np.asarray(paths)
    labels = np.asarray(labels, np.int64)

    def read(ctx, seed):
        del seed
        ds = _shard(tf.data.Dataset.from_tensor_slices((paths, labels)), ctx)
        return ds.map(lambda p, l: (p, tf.io.read_file(p), l), num_parallel_calls=tf.data.AUTOTUNE)

    return Source(f"folder:{directory}", len(paths), len(classes), read, keys=paths)


def tfrecord_source(
    pattern,
    num_classes,
    num_examples=None,
    image_key="image/encoded",
    label_key="image/class/label",
    label_offset=0,
):
    """tf.Example records; label = record[label_key] - label_offset.

    Files are sharded per input pipeline. Without `num_examples` the records are
    counted once (one pass over the files).
    """
    files = sorted(glob.glob(pattern))
    if not files:
        raise DataError(f"no TFRecord files match '{pattern}'")
    if num_classes is None:
        raise DataError(
            f"tfrecord source '{pattern}' needs num_classes (gin: "
            "input_pipeline.num_classes, or the spec option ';num_classes=N')"
        )
    if num_examples is None:
        num_examples = 0
        for path in files:  # one file at a time, so a corrupt one is named
            try:
                num_examples += sum(1 for _ in tf.data.TFRecordDataset(path))
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
                raise DataError(
                    f"TFRecord file {path} is corrupt or truncated ({_short(e.message)}); "
                    "re-create or remove it"
                ) from None
    features = {
        image_key: tf.io.FixedLenFeature([], tf.string),
        label_key: tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(filename, record):
        ex = tf.io.parse_single_example(record, features)
        return filename, ex[image_key], ex[label_key]

    def read(ctx, seed):
        names = _shard(tf.data.Dataset.from_tensor_slices(files), ctx)
        if seed is not None:
            names = names.shuffle(len(files), seed=seed)
        return names.interleave(
            lambda f: tf.data.TFRecordDataset(f).map(lambda r: parse(f, r)),
            cycle_length=16,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    return Source(
        f"tfrecord:{pattern}",
        num_examples,
        num_classes,
        read,
        label_offset=label_offset,
        files=files,
    )


def tfds_source(name, split, data_dir=None, manual_dir=None, download=False):
    """A TFDS image classification dataset with 'image' and 'label' features.

    imagenet2012 needs its tar files in `manual_dir` (TFDS manual download).
    Nothing is downloaded unless `download=True`.
    """
    import tensorflow_datasets as tfds

    if manual_dir is not None and not os.path.isdir(manual_dir):
        raise DataError(
            f"TFDS manual_dir '{manual_dir}' does not exist; put the "
            f"dataset's downloaded archives there (see TFDS's page for "
            f"'{name}')"
        )
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DataError(f"TFDS data_dir '{data_dir}' does not exist")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(f"unknown TFDS dataset '{name}': {str(e).splitlines()[0]}")
    if not builder.is_prepared():
        if manual_dir is None and not download:
            raise DataError(
                f"TFDS dataset '{name}' is not prepared in '{builder.data_dir}'; "
                "prepare it (`tfds build`), pass manual_dir= for manual-download "
                "datasets, or allow download=True"
            )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    info = builder.info
    if split not in info.splits:
        raise DataError(
            f"TFDS dataset '{name}' has no split '{split}'; it has {sorted(info.splits.keys())}"
        )
    if "image" not in info.features or "label" not in info.features:
        raise DataError(f"TFDS dataset '{name}' lacks 'image'/'label' features")

    def read(ctx, seed):
        ds = builder.as_dataset(
            split=split,
            shuffle_files=seed is not None,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(input_context=ctx, shuffle_seed=seed, add_tfds_id=True),
        )
        return ds.map(lambda ex: (ex["tfds_id"], ex["image"], ex["label"]))

    return Source(
        f"tfds:{name}:{split}",
        info.splits[split].num_examples,
        info.features["label"].num_classes,
        read,
    )


def eval_split_of(spec):
    """The held-out counterpart of a training spec (None when it has none)."""
    kind = parse_spec(spec)[0].partition(":")[0]
    return spec if kind in ("sklearn_digits", "tfds") else None


SPEC_OPTIONS = ("label_offset", "num_classes")


def parse_spec(spec):
    """'KIND[:ARG][;key=value...]' -> (base spec, {option: int}); DataError when malformed."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"dataset spec must be a non-empty string, got {spec!r}")
    base, *parts = spec.split(";")
    options = {}
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in SPEC_OPTIONS:
            raise DataError(
                f"dataset spec '{spec}': unknown option '{part}'; options are "
                + ", ".join(f"{k}=N" for k in SPEC_OPTIONS)
            )
        try:
            options[key] = int(value)
        except ValueError:
            raise DataError(
                f"dataset spec '{spec}': {key} must be an integer, got '{value}'"
            ) from None
    if options.get("num_classes", 1) < 1:
        raise DataError(f"dataset spec '{spec}': num_classes must be at least 1")
    return base.strip(), options


def make_source(
    spec,
    split,
    tfds_data_dir=None,
    tfds_manual_dir=None,
    tfds_download=False,
    num_classes=None,
    num_examples=None,
    label_offset=None,
):
    """Builds a Source from a spec string (see module docstring).

    `split` is "train" or "eval"; for TFDS, eval is 'validation' when the
    dataset has it, else 'test'. `num_classes` (used by tfrecord; the other
    kinds know their classes) and `label_offset` given here apply unless the
    spec carries its own `;num_classes=` / `;label_offset=`.
    """
    base, options = parse_spec(spec)
    num_classes = options.get("num_classes", num_classes)
    label_offset = options.get("label_offset", label_offset) or 0
    source = _make_base_source(
        base, split, tfds_data_dir, tfds_manual_dir, tfds_download, num_classes, num_examples
    )
    source.label_offset = int(label_offset)
    parts = [base]
    if base.startswith("tfrecord:"):
        parts.append(f"num_classes={source.num_classes}")
    if source.label_offset:
        parts.append(f"label_offset={source.label_offset}")
    source.spec = ";".join(parts)
    return source


def _make_base_source(
    spec, split, tfds_data_dir, tfds_manual_dir, tfds_download, num_classes, num_examples
):
    kind, _, arg = spec.partition(":")
    if kind == "sklearn_digits":
        return sklearn_digits_source(split)
    if kind == "tfds":
        if not arg:
            raise DataError("tfds spec needs a dataset name, e.g. 'tfds:mnist'")
        tfds_split = split
        if split == "eval":
            import tensorflow_datasets as tfds

            try:
                splits = tfds.builder(arg, data_dir=tfds_data_dir).info.splits
            except Exception:  # let tfds_source report the real problem
                splits = {}
            tfds_split = "validation" if "validation" in splits else "test"
        return tfds_source(arg, tfds_split, tfds_data_dir, tfds_manual_dir, tfds_download)
    if kind == "folder":
        return image_folder_source(arg)
    if kind == "tfrecord":
        return tfrecord_source(arg, num_classes, num_examples)
    raise DataError(
        f"unknown dataset spec '{spec}'; use sklearn_digits, tfds:NAME, folder:DIR or tfrecord:GLOB"
    )


_HASH_BUCKETS = 1 << 20


def _in_validation(keys, fraction, seed):
    """Whether each key's example belongs to the validation part (a seeded hash of the key)."""
    bucket = tf.strings.to_hash_bucket_strong(keys, _HASH_BUCKETS, [int(seed), 0])
    return bucket < round(fraction * _HASH_BUCKETS)


def hold_out(source, fraction, seed=0):
    """(training part, validation part) of `source`: an example goes to the validation part when a
    seeded hash of its key falls below `fraction`, so the split is deterministic by seed, the same
    on every worker and in every epoch, and streams (no pass over the data). Counts are exact when
    the source lists its keys (digits, folders), else `fraction` of the examples (TFDS).

    Args:
      source: a Source whose keys identify examples (not a TFRecord glob: its keys are files).
      fraction: the validation part's share, in (0, 1).
      seed: the split's seed.
    """
    if source.files:
        raise DataError(
            f"{source.name}: validation_fraction splits examples by key, and TFRecord keys are "
            "file names; write the validation examples to their own files and name them with "
            "input_pipeline.validation_dataset"
        )
    if len(source.keys):
        held = int(np.sum(_in_validation(tf.constant(list(source.keys)), fraction, seed).numpy()))
    else:
        held = round(source.num_examples * fraction)
    if held < 1 or held >= source.num_examples:
        raise DataError(
            f"validation_fraction {fraction} of the {source.num_examples} examples of "
            f"{source.name} leaves {held} for validation; choose a fraction that leaves both parts "
            "non-empty"
        )

    def part(validation):
        def read(ctx, seed_):
            ds = source.read(ctx, seed_)
            return ds.filter(lambda k, e, l: _in_validation(k, fraction, seed) == validation)

        count = held if validation else source.num_examples - held
        name = f"{source.name}[{'validation' if validation else 'training'} part]"
        return Source(name, count, source.num_classes, read, spec=source.spec)

    return part(False), part(True)


def decode(key, encoded):
    """Decodes to uint8 RGB; a non-image fails naming `key` (the file/record)."""
    head = tf.strings.substr(encoded, 0, 4)
    known = tf.reduce_any([tf.strings.substr(head, 0, len(s)) == s for s in _SIGNATURES])
    with tf.control_dependencies(
        [
            tf.debugging.Assert(
                known, ["undecodable image (not JPEG/PNG/GIF/BMP/WebP):", key], summarize=1
            )
        ]
    ):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return image


@dataclasses.dataclass
class Augmentation:
    """Train-time augmentation of Table 10 (defaults: none beyond the crop)."""

    crop: str = "inception"  # "inception" or "resize"
    crop_area_range: Sequence[float] = (0.08, 1.0)
    flip: bool = True
    randaug_layers: int = 0  # 0 disables RandAugment
    randaug_magnitude: float = 10.0
    randaug_prob: Optional[float] = None
    randaug_exclude_ops: Sequence[str] = ()
    mix_prob: float = 0.0  # 0 disables Mixup/CutMix
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    mix_switch_prob: float = 0.5


def train_preprocess(image, image_size, aug, randaug=None):
    if aug.crop == "inception":
        image = preprocess_ops.random_crop_image(image, area_range=tuple(aug.crop_area_range))
    elif aug.crop != "resize":
        raise DataError(f"unknown crop '{aug.crop}'; use 'inception' or 'resize'")
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    if aug.flip:
        image = tf.image.random_flip_left_right(image)
    image = tf.clip_by_value(image, 0.0, 255.0)
    if randaug is not None:
        image = randaug.distort(image)
    image = preprocessing.normalize(image)
    image.set_shape([image_size, image_size, 3])
    return image


def eval_preprocess(image, image_size, crop_fraction):
    """The eval transform (mobilenetv4.preprocessing.eval_preprocess: central crop,
    bilinear resize, clip, ImageNet normalisation)."""
    return preprocessing.eval_preprocess(image, image_size, crop_fraction)


class ImageClassificationData:
    """Train and eval pipelines of one dataset: implements `TrainingData`.

    The trainer calls `train_dataset(ctx, per_replica_batch, epoch, seed)` for
    each epoch (the dataset ends after the epoch's batches) and
    `eval_dataset(ctx, per_replica_batch, num_batches)`, whose elements carry a
    third item, per-example weights, 0 on padding. Any `TrainingData` can
    replace this class (e.g. a distillation dataset with soft labels).
    `spec` is the training source's dataset spec (recorded in the run's build
    record), `preprocessing` the normalisation name (mobilenetv4.preprocessing).
    `validation_source`: a split held apart from both (e.g. `hold_out` of the training
    split), served by `validation_dataset` like the eval split; the NAS search's rewards
    come from it.
    """

    def __init__(
        self,
        train_source,
        eval_source,
        image_size,
        augmentation=None,
        eval_crop_fraction=preprocessing.EVAL_CROP_FRACTION,
        shuffle_buffer=10_000,
        deterministic=False,
        cache=False,
        validation_source=None,
    ):
        self.train_source = train_source
        self.eval_source = eval_source
        self.validation_source = validation_source
        self.image_size = int(image_size)
        self.aug = augmentation or Augmentation()
        self.eval_crop_fraction = eval_crop_fraction
        self.shuffle_buffer = shuffle_buffer
        # Sequential maps keep stateful random ops in a fixed order, so that a
        # resumed run sees exactly the augmentations of an uninterrupted one.
        self.parallel = None if deterministic else tf.data.AUTOTUNE
        self.cache = cache
        self.spec = getattr(train_source, "spec", "") or train_source.name
        self.preprocessing = preprocessing.DEFAULT_NORMALIZATION
        self.num_classes = train_source.num_classes
        self.num_train_examples = train_source.num_examples
        self.num_eval_examples = eval_source.num_examples if eval_source else 0
        self.num_validation_examples = validation_source.num_examples if validation_source else 0

    def steps_per_epoch(self, global_batch):
        steps = self.num_train_examples // global_batch
        if steps == 0:
            raise DataError(
                f"global batch {global_batch} exceeds the {self.num_train_examples} "
                f"training examples of {self.train_source.name}; lower batch_size"
            )
        return steps

    def _decoded(self, source, ctx, seed, example_shard=False):
        # example_shard: read everything, keep every P-th example (even shards).
        ds = _shard(source.read(None, seed), ctx) if example_shard else source.read(ctx, seed)
        ds = ds.map(lambda k, e, l: (decode(k, e), l), num_parallel_calls=self.parallel)
        return ds.cache() if self.cache else ds

    def train_dataset(self, ctx, per_replica_batch, epoch, seed, skip_steps=0):
        """One epoch of per-replica batches for this input pipeline.

        Each pipeline yields steps_per_epoch * replicas-in-sync / pipelines batches
        (repeating its shard if needed) so all workers run the same step count.
        `skip_steps` replays and drops the epoch's first steps (resume mid-epoch);
        with deterministic=True the rest equals an uninterrupted epoch.
        """
        replicas = ctx.num_replicas_in_sync if ctx else 1
        pipelines = ctx.num_input_pipelines if ctx else 1
        n_batches = self.steps_per_epoch(per_replica_batch * replicas) * replicas // pipelines
        epoch_seed = seed * 1_000_003 + epoch
        randaug = None
        if self.aug.randaug_layers:
            randaug = augment.RandAugment(
                num_layers=self.aug.randaug_layers,
                magnitude=self.aug.randaug_magnitude,
                prob_to_apply=self.aug.randaug_prob,
                exclude_ops=list(self.aug.randaug_exclude_ops),
            )
        ds = self._decoded(self.train_source, ctx, epoch_seed)
        ds = ds.shuffle(self.shuffle_buffer, seed=epoch_seed).repeat()

        def preprocess(image, label):
            tf.random.set_seed(epoch_seed)  # graph-level: this map's ops only
            return train_preprocess(image, self.image_size, self.aug, randaug), label

        ds = ds.map(preprocess, num_parallel_calls=self.parallel)
        ds = ds.batch(per_replica_batch, drop_remainder=True).take(n_batches)
        if self.aug.mix_prob > 0:
            # label_smoothing=0: the loss smooths, whatever produced the labels.
            mixer = augment.MixupAndCutmix(
                num_classes=self.num_classes,
                mixup_alpha=self.aug.mixup_alpha,
                cutmix_alpha=self.aug.cutmix_alpha,
                prob=self.aug.mix_prob,
                switch_prob=self.aug.mix_switch_prob,
                label_smoothing=0.0,
            )

            def mix(images, labels):
                tf.random.set_seed(epoch_seed)
                return mixer.distort(images, labels)

            ds = ds.map(mix, num_parallel_calls=self.parallel)
        else:
            ds = ds.map(
                lambda im, l: (im, tf.one_hot(l, self.num_classes)),
                num_parallel_calls=self.parallel,
            )
        return ds.skip(skip_steps * replicas // pipelines).prefetch(tf.data.AUTOTUNE)

    def eval_dataset(self, ctx, per_replica_batch, num_batches):
        """Centre-crop eval batches (images, one-hot labels, weights).

        Examples are split evenly over pipelines and padded with weight-0 images
        so that every replica runs `num_batches` equal-shape steps (TPU-friendly).
        """
        if self.eval_source is None:
            raise DataError("no eval dataset configured")
        return self._held_out_dataset(self.eval_source, ctx, per_replica_batch, num_batches)

    def validation_dataset(self, ctx, per_replica_batch, num_batches):
        """The validation split's batches, made like eval_dataset's."""
        if self.validation_source is None:
            raise DataError("no validation split configured (input_pipeline.validation_fraction)")
        return self._held_out_dataset(self.validation_source, ctx, per_replica_batch, num_batches)

    def _held_out_dataset(self, source, ctx, per_replica_batch, num_batches):
        replicas = ctx.num_replicas_in_sync if ctx else 1
        pipelines = ctx.num_input_pipelines if ctx else 1
        ds = self._decoded(source, ctx, None, example_shard=True)
        ds = ds.map(
            lambda im, l: (
                eval_preprocess(im, self.image_size, self.eval_crop_fraction),
                tf.one_hot(l, self.num_classes),
                1.0,
            ),
            num_parallel_calls=self.parallel,
        )
        pad = tf.data.Dataset.from_tensors(
            (tf.zeros([self.image_size, self.image_size, 3]), tf.zeros([self.num_classes]), 0.0)
        ).repeat()
        ds = ds.concatenate(pad).batch(per_replica_batch, drop_remainder=True)
        return ds.take(num_batches * replicas // pipelines).prefetch(tf.data.AUTOTUNE)
