"""Representative images for INT8 calibration and held-out images for the fidelity check.

SOURCE is one of
  random                  uniform noise; latency-only use (the exporter refuses INT8 without real
                          data unless this is asked for explicitly)
  a trainer dataset spec  the same string as the trainer's `input_pipeline.dataset`
                          (`experiments.data.make_source`): sklearn_digits, tfds:NAME[/CONFIG],
                          folder:DIR (DIR/CLASS/images), tfrecord:GLOB (image/encoded +
                          image/class/label). Labelled: calibration images come from the train
                          split, held-out images (with their labels, for top-1) from the source's
                          held-out split (sklearn_digits, tfds) or, for folder: / tfrecord:, from a
                          disjoint part of the same files
  tfds:NAME:SPLIT         one split of a prepared TFDS dataset, e.g. tfds:imagenet2012:validation
                          (never downloads); calibration and held-out images are disjoint parts of it
  a directory             image files (jpg, jpeg, png, bmp, gif, webp), searched recursively, sorted
                          by path; unlabelled
  TFRecord file(s)/glob   tf.train.Example records with an encoded image under 'image/encoded'
                          (Model Garden / ImageNet convention) or 'image'; unlabelled

Images go through the trainer's evaluation transform (`mobilenetv4.preprocessing.eval_crop`:
central crop of `crop_fraction` of the shorter side, bilinear resize) and come back as float32
pixels in [0, 255], batch-major: the exported graph normalises itself.

Files are de-duplicated by real path (a symlink, or a symlink loop in a folder, never counts an
image twice), so calibration and held-out images are always disjoint.
"""

import dataclasses
import glob
import os

import numpy as np

from tflite import ToolError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
TRAINER_KINDS = ("sklearn_digits", "tfds", "folder", "tfrecord")
SHUFFLE_BUFFER = 2048  # mixes class-sorted sources (folder:, tfrecord:) before a disjoint split


@dataclasses.dataclass
class Images:
    """Calibration and held-out pixels of one source; `heldout_labels` is None when unlabelled."""

    calibration: np.ndarray
    heldout: np.ndarray
    heldout_labels: np.ndarray | None
    note: str  # why fewer images than asked, or that they are noise
    description: str  # where the images came from, for the report


def is_trainer_spec(source: str) -> bool:
    """True for the trainer's dataset spec grammar (not the legacy tfds:NAME:SPLIT)."""
    kind, _, arg = source.partition(":")
    if kind == "tfds":
        return ":" not in arg
    return kind in TRAINER_KINDS


def _walk_images(path):
    """Image files under `path`, following symlinked folders once each and keeping each real file
    once (a symlink loop cannot multiply the images)."""
    seen_dirs, seen_files, files = set(), set(), []
    for root, dirs, names in os.walk(path, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            if not name.lower().endswith(IMAGE_EXTENSIONS) or not os.path.isfile(full):
                continue
            real_file = os.path.realpath(full)
            if real_file not in seen_files:
                seen_files.add(real_file)
                files.append(full)
    return files


def _folder(path):
    files = _walk_images(path)
    if not files:
        raise ToolError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {path}")
    return len(files), ((f, _read(f), -1) for f in files)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ToolError(f"cannot read image {path}: {e.strerror or e}") from None


def _tfrecords(files):
    import tensorflow as tf

    def records():
        try:
            for i, record in enumerate(tf.data.TFRecordDataset(files)):
                example = tf.train.Example.FromString(record.numpy())
                for key in ("image/encoded", "image"):
                    if key in example.features.feature:
                        yield (
                            f"record {i} of {files[0]}",
                            example.features.feature[key].bytes_list.value[0],
                            -1,
                        )
                        break
                else:
                    raise ToolError(
                        f"TFRecord examples in {files[0]} have no 'image/encoded' or 'image' "
                        f"feature (found {sorted(example.features.feature)})"
                    )
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
            raise ToolError(
                f"{files[0]} is not a readable TFRecord file (corrupt or truncated)"
            ) from None

    return None, records()


def _tfds_split(spec, data_dir):
    import tensorflow_datasets as tfds

    _, name, *rest = spec.split(":")
    split = rest[0] if rest else "validation"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # unknown dataset name
        raise ToolError(f"unknown TFDS dataset {name!r}: {str(e).splitlines()[0]}") from None
    if not builder.is_prepared():
        raise ToolError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir}; prepare it first "
            "(tfds build / manual download) or pass an image folder or TFRecords instead"
        )
    if split not in builder.info.splits:
        raise ToolError(
            f"TFDS dataset {name!r} has no split {split!r}; choose one of {sorted(builder.info.splits)}"
        )
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    labelled = "label" in builder.info.features
    n = builder.info.splits[split].num_examples
    return n, (
        (f"{name}:{split}[{i}]", ex["image"].numpy(), int(ex["label"]) if labelled else -1)
        for i, ex in enumerate(ds)
    )


def _trainer_source(spec, split, num_classes, data_dir):
    """experiments.data.make_source(spec, split) as a stream of (key, encoded, label)."""
    from experiments import data

    try:
        source = data.make_source(spec, split, tfds_data_dir=data_dir, num_classes=num_classes)
    except (ValueError, OSError) as e:
        raise ToolError(f"--calibration {spec}: {str(e).splitlines()[0]}") from None
    if (
        num_classes is not None
        and source.num_classes is not None
        and source.num_classes > num_classes
    ):
        raise ToolError(
            f"--calibration {spec} has {source.num_classes} classes but the model has "
            f"{num_classes}; calibrate on the data the model was trained on"
        )
    ds = source.read(None, None)
    if spec.partition(":")[0] in ("folder", "tfrecord"):
        ds = ds.shuffle(
            min(SHUFFLE_BUFFER, max(1, source.num_examples)), seed=0, reshuffle_each_iteration=False
        )

    def stream():
        import tensorflow as tf

        try:
            for key, encoded, label in ds:
                yield key.numpy().decode(errors="replace"), encoded.numpy(), int(label)
        except (
            tf.errors.DataLossError,
            tf.errors.InvalidArgumentError,
            tf.errors.NotFoundError,
        ) as e:
            raise ToolError(
                f"--calibration {spec}: cannot read the data: {str(e.message).splitlines()[0]}"
            ) from None

    return source.num_examples, stream()


def _dedupe_key(key: str) -> str:
    return os.path.realpath(key) if os.path.isfile(key) else key


def _take(stream, n, size, crop_fraction, num_classes, where, exclude=frozenset()):
    """Up to n unique (pixels, label) from a (key, encoded, label) stream; keys in `exclude` and
    repeated real paths are skipped. Returns (pixels, labels, keys)."""
    from mobilenetv4 import preprocessing

    pixels, labels, keys = [], [], set()
    for key, encoded, label in stream:
        if len(pixels) >= n:
            break
        k = _dedupe_key(key)
        if k in keys or k in exclude:
            continue
        if num_classes is not None and label >= num_classes:
            raise ToolError(
                f"{where}: {key} has label {label}, but the model has {num_classes} classes "
                f"(labels 0..{num_classes - 1}); calibrate on the data the model was trained on"
            )
        keys.add(k)
        pixels.append(_decode_crop(encoded, key, size, crop_fraction, preprocessing))
        labels.append(label)
    return pixels, labels, keys


def _decode_crop(encoded, key, size, crop_fraction, preprocessing):
    import tensorflow as tf

    try:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, ValueError):
        raise ToolError(f"cannot decode image {key}; remove it or convert it to JPEG/PNG") from None
    return preprocessing.eval_crop(image, size, crop_fraction).numpy().astype(np.float32)


def _stack(pixels, size):
    return np.stack(pixels).astype(np.float32) if pixels else np.zeros((0, *size, 3), np.float32)


def load(
    source: str,
    size: tuple[int, int],
    count: int,
    heldout: int,
    *,
    crop_fraction: float | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    tfds_data_dir: str | None = None,
    log=print,
) -> Images:
    """Calibration and held-out images of `source` (see the module docstring)."""
    from mobilenetv4 import preprocessing

    h, w = size
    crop = preprocessing.EVAL_CROP_FRACTION if crop_fraction is None else float(crop_fraction)
    if source == "random":
        rng = np.random.default_rng(seed)
        pick = lambda n: rng.uniform(0, 255, size=(n, h, w, 3)).astype(np.float32)
        return Images(
            pick(count),
            pick(heldout),
            None,
            "random noise images: fidelity figures do not reflect accuracy",
            "random noise",
        )
    if is_trainer_spec(source):
        return _load_trainer(source, (h, w), count, heldout, crop, num_classes, tfds_data_dir, log)
    if source.startswith("tfds:"):
        total, stream = _tfds_split(source, tfds_data_dir)
    elif os.path.isdir(source):
        total, stream = _folder(source)
    else:
        files = sorted(glob.glob(source))
        if not files:
            raise ToolError(
                f"calibration source {source!r} is neither 'random', a dataset spec (sklearn_digits, "
                "tfds:NAME, folder:DIR, tfrecord:GLOB), tfds:NAME:SPLIT, an image folder, nor "
                "existing TFRecord file(s)"
            )
        total, stream = _tfrecords(files)
    labelled = source.startswith("tfds:")
    pixels, labels, _ = _take(
        stream, count + heldout, (h, w), crop, num_classes if labelled else None, source
    )
    return _split_one_source(source, pixels, labels if labelled else None, count, heldout, (h, w))


def _split_one_source(source, pixels, labels, count, heldout, size):
    """Disjoint calibration / held-out parts of one stream of unique images (3:1 when small)."""
    total = len(pixels)
    note = ""
    if total < count + heldout:
        if total < (2 if count else 1):
            raise ToolError(
                f"{source} holds {total} usable image(s); calibration needs at least a few dozen"
            )
        heldout = max(1, min(heldout, total // 4)) if count else total
        count = total - heldout
        note = f"{source} holds only {total} unique images: {count} used for calibration, {heldout} held out"
    cal, held = _stack(pixels[:count], size), _stack(pixels[count : count + heldout], size)
    held_labels = (
        np.asarray(labels[count : count + heldout], np.int64) if labels is not None else None
    )
    return Images(
        cal,
        held,
        held_labels,
        note,
        f"{source}: {len(cal)} images for calibration, {len(held)} other images held out",
    )


def _load_trainer(spec, size, count, heldout, crop, num_classes, data_dir, log):
    from experiments import data

    has_eval = data.eval_split_of(spec) is not None
    if not has_eval:
        _, stream = _trainer_source(spec, "train", num_classes, data_dir)
        pixels, labels, _ = _take(stream, count + heldout, size, crop, num_classes, spec)
        return _split_one_source(spec, pixels, labels, count, heldout, size)
    pixels, keys = [], set()
    if count:
        _, stream = _trainer_source(spec, "train", num_classes, data_dir)
        pixels, _, keys = _take(stream, count, size, crop, num_classes, spec)
        if not pixels:
            raise ToolError(f"--calibration {spec}: its train split holds no images")
        log(f"  loaded {len(pixels)} calibration images from {spec} (train split)")
    _, held_stream = _trainer_source(spec, "eval", num_classes, data_dir)
    held, labels, _ = _take(held_stream, heldout, size, crop, num_classes, spec, exclude=keys)
    if not held:
        raise ToolError(f"--calibration {spec}: its held-out split holds no images")
    return Images(
        _stack(pixels, size),
        _stack(held, size),
        np.asarray(labels, np.int64),
        "",
        f"{spec}: {len(pixels)} train-split images for calibration, {len(held)} held-out-split images",
    )


def load_split(
    source: str,
    size: tuple[int, int],
    count: int,
    heldout: int,
    *,
    seed: int = 0,
    tfds_data_dir: str | None = None,
    crop_fraction: float | None = None,
    log=print,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration images, held-out images, note): `load` without the labels."""
    images = load(
        source,
        size,
        count,
        heldout,
        crop_fraction=crop_fraction,
        seed=seed,
        tfds_data_dir=tfds_data_dir,
        log=log,
    )
    return images.calibration, images.heldout, images.note
