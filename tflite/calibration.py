"""Representative images for INT8 calibration and held-out images for the fidelity check.

SOURCE is one of
  random                  uniform noise; latency-only use (the exporter refuses INT8 without real
                          data unless this is asked for explicitly)
  tfds:NAME[:SPLIT]       a prepared TFDS dataset, e.g. tfds:imagenet2012:validation (never downloads)
  a directory             image files (jpg, jpeg, png, bmp, gif), searched recursively, sorted by path
  TFRecord file(s)/glob   tf.train.Example records with an encoded image under 'image/encoded'
                          (Model Garden / ImageNet convention) or 'image'
Images go through the evaluation transform (resize the shorter side to size / 0.875, centre crop)
and come back as float32 pixels in [0, 255], batch-major: the exported graph normalises itself.
"""
import glob
import os

import numpy as np

from tflite import ToolError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
CROP_FRACTION = 0.875


def center_crop(image, size):
    """Decoded uint8 HxWx3 tensor -> float32 `size` crop after resizing by the crop fraction."""
    import tensorflow as tf
    h, w = size
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_max(tf.constant([h, w], tf.float32) / CROP_FRACTION / shape)
    resized = tf.image.resize(image, tf.cast(tf.math.ceil(shape * scale), tf.int32), method="bilinear")
    return tf.image.resize_with_crop_or_pad(resized, h, w)


def _decode(encoded, what: str):
    import tensorflow as tf
    try:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise ToolError(f"cannot decode image {what}; remove it or convert it to JPEG/PNG") from None
    return image


def _folder(path):
    files = sorted(f for f in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ToolError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {path}")
    import tensorflow as tf
    return len(files), ((_decode(tf.io.read_file(f), f), f) for f in files)


def _tfrecords(files):
    import tensorflow as tf

    def encoded(record):
        example = tf.train.Example.FromString(record.numpy())
        for key in ("image/encoded", "image"):
            if key in example.features.feature:
                return example.features.feature[key].bytes_list.value[0]
        raise ToolError(f"TFRecord examples in {files[0]} have no 'image/encoded' or 'image' feature "
                        f"(found {sorted(example.features.feature)})")

    try:
        records = list(tf.data.TFRecordDataset(files))
    except tf.errors.DataLossError:
        raise ToolError(f"{files} is not a readable TFRecord file") from None
    return len(records), ((_decode(encoded(r), f"in {files}"), "record") for r in records)


def _tfds(spec, data_dir):
    import tensorflow_datasets as tfds
    _, name, *rest = spec.split(":")
    split = rest[0] if rest else "validation"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # unknown dataset name
        raise ToolError(f"unknown TFDS dataset {name!r}: {str(e).splitlines()[0]}") from None
    if not builder.is_prepared():
        raise ToolError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir}; prepare it first "
                        "(tfds build / manual download) or pass an image folder or TFRecords instead")
    if split not in builder.info.splits:
        raise ToolError(f"TFDS dataset {name!r} has no split {split!r}; choose one of {sorted(builder.info.splits)}")
    ds = builder.as_dataset(split=split)
    n = builder.info.splits[split].num_examples
    return n, ((ex["image"], name) for ex in ds)


def _open(source, data_dir):
    if source.startswith("tfds:"):
        return _tfds(source, data_dir)
    if os.path.isdir(source):
        return _folder(source)
    files = sorted(glob.glob(source))
    if files:
        return _tfrecords(files)
    raise ToolError(f"calibration source {source!r} is neither 'random', 'tfds:NAME[:SPLIT]', an image "
                    "folder, nor existing TFRecord file(s)")


def load_split(source: str, size: tuple[int, int], count: int, heldout: int, *, seed: int = 0,
               tfds_data_dir: str | None = None, log=print) -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration images, held-out images, note). Held-out images come after the calibration
    images in the source's order; a small source is split 3:1 and the note says so."""
    h, w = size
    if source == "random":
        rng = np.random.default_rng(seed)
        pick = lambda n: rng.uniform(0, 255, size=(n, h, w, 3)).astype(np.float32)
        return pick(count), pick(heldout), "random noise images: fidelity figures do not reflect accuracy"
    total, images = _open(source, tfds_data_dir)
    note = ""
    if total < count + heldout:
        if total < 2:
            raise ToolError(f"{source} holds {total} image(s); calibration needs at least a few dozen")
        heldout = max(1, min(heldout, total // 4))
        count = total - heldout
        note = f"{source} holds only {total} images: {count} used for calibration, {heldout} held out"
    out = []
    for i, (image, _) in enumerate(images):
        if i >= count + heldout:
            break
        out.append(center_crop(image, (h, w)).numpy().astype(np.float32))
        if (i + 1) % 100 == 0:
            log(f"  loaded {i + 1}/{count + heldout} images from {source}")
    batch = np.stack(out)
    return batch[:count], batch[count:], note
