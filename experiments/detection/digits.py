"""Make the offline digits detection set: real handwritten scans with exact boxes.

    python -m experiments.detection.digits --output_dir data/digits_det [--seed 0]

scikit-learn's handwritten digits (1,797 real 8x8 scans, bundled with scikit-learn: no download)
are pasted onto canvases (default 128x128 RGB, light noisy paper, 1-4 digits in dark ink, each
scan enlarged by a whole factor 2-5, i.e. 16-40 px, never overlapping). A box is the scan's ink
extent (its nonzero pixels) times the factor, so boxes are exact to the pixel edge.

Written to --output_dir:
  train-0000N-of-0000M.tfrecord, val-00000-of-00001.tfrecord
      Model Garden's detection tf.Examples (image/encoded PNG, image/source_id = the COCO image id,
      image/object/bbox/{xmin,ymin,xmax,ymax} normalised, image/object/class/label = digit + 1,
      image/object/area, image/object/is_crowd)
  val_annotations.json, train_annotations.json   COCO-format ground truth (categories 1..10 named
      "0".."9"; bbox [x, y, w, h] in pixels) for Model Garden's COCO evaluator
  experiment.yaml    a --config_file for `retinanet_mobilenetv4_digits` with these absolute paths
  manifest.json      seed, counts and which source scans went to which split

Deterministic: the same --seed and sizes give byte-identical files. Train and validation are
disjoint at the level of source scans: the scans are split once (--val_fraction) and each split's
canvases use only its own scans. Every file is written atomically; existing outputs are refused
unless --overwrite; the folder is locked while the job runs.
"""

from __future__ import annotations

import io
import os

import numpy as np

from mobilenetv4 import cli, fileio

NUM_SOURCES = 1797  # sklearn.datasets.load_digits()
LABEL_OFFSET = 1  # class id = digit + 1 (0 is Model Garden's background)
CATEGORIES = [{"id": d + LABEL_OFFSET, "name": str(d), "supercategory": "digit"} for d in range(10)]


def split_sources(seed: int, val_fraction: float, n: int = NUM_SOURCES):
    """(train source indices, val source indices): a seeded permutation, disjoint."""
    rng = np.random.default_rng([seed, 1])
    order = rng.permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _ink_box(scan: np.ndarray):
    rows = np.flatnonzero(scan.max(axis=1) > 0)
    cols = np.flatnonzero(scan.max(axis=0) > 0)
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def make_canvas(
    rng: np.random.Generator,
    scans: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    size: int,
    max_digits: int = 4,
    scales=(2, 3, 4, 5),
):
    """One canvas: (uint8 HxWx3 image, [(ymin, xmin, ymax, xmax) pixels, ...], [label, ...],
    [source index, ...])."""
    background = rng.uniform(185, 250)
    image = (
        background
        + rng.normal(0.0, 6.0, size=(size, size, 1))
        + rng.normal(0.0, 4.0, size=(1, 1, 3))
    )
    taken = []  # occupied squares (y0, x0, y1, x1), with a 2-px margin
    boxes, classes, sources = [], [], []
    for _ in range(int(rng.integers(1, max_digits + 1))):
        source = int(pool[rng.integers(len(pool))])
        k = int(rng.choice(scales))
        side = 8 * k
        for _attempt in range(20):
            y0, x0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            square = (y0 - 2, x0 - 2, y0 + side + 2, x0 + side + 2)
            if all(
                square[2] <= t[0] or t[2] <= square[0] or square[3] <= t[1] or t[3] <= square[1]
                for t in taken
            ):
                break
        else:
            continue  # no room left for this one
        scan = scans[source]
        ink = np.kron(scan / 16.0, np.ones((k, k)))[..., None]  # whole-factor enlargement
        colour = rng.uniform(0, 70, size=(1, 1, 3))
        patch = image[y0 : y0 + side, x0 : x0 + side]
        image[y0 : y0 + side, x0 : x0 + side] = patch * (1 - ink) + colour * ink
        r0, c0, r1, c1 = _ink_box(scan)
        boxes.append((y0 + r0 * k, x0 + c0 * k, y0 + r1 * k, x0 + c1 * k))
        classes.append(int(labels[source]) + LABEL_OFFSET)
        sources.append(source)
        taken.append(square)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), boxes, classes, sources


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def tf_example(image_id: int, png: bytes, size: int, boxes, classes) -> bytes:
    import tensorflow as tf

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def blob(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    feature = {
        "image/encoded": blob(png),
        "image/format": blob(b"png"),
        "image/source_id": blob(str(image_id).encode()),
        "image/height": ints([size]),
        "image/width": ints([size]),
        "image/object/bbox/ymin": floats(b[:, 0] / size),
        "image/object/bbox/xmin": floats(b[:, 1] / size),
        "image/object/bbox/ymax": floats(b[:, 2] / size),
        "image/object/bbox/xmax": floats(b[:, 3] / size),
        "image/object/class/label": ints(classes),
        "image/object/area": floats((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])),
        "image/object/is_crowd": ints([0] * len(classes)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_tfrecord(path: str, records) -> None:
    import tensorflow as tf

    with fileio.atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in records:
                writer.write(record)


def output_files(num_train_shards: int) -> list[str]:
    train = [f"train-{i:05d}-of-{num_train_shards:05d}.tfrecord" for i in range(num_train_shards)]
    return train + [
        "val-00000-of-00001.tfrecord",
        "train_annotations.json",
        "val_annotations.json",
        "experiment.yaml",
        "manifest.json",
    ]


def make(
    output_dir: str,
    *,
    seed: int = 0,
    num_train: int = 2000,
    num_val: int = 300,
    image_size: int = 128,
    val_fraction: float = 0.2,
    num_train_shards: int = 4,
    max_digits: int = 4,
    overwrite: bool = False,
    log=print,
) -> dict:
    """Writes the set; returns the manifest."""
    from sklearn.datasets import load_digits

    if image_size < 48:
        raise cli.UserError(
            f"--image_size {image_size} is too small for 40-px digits; use 48 or more"
        )
    if not 0.0 < val_fraction < 1.0:
        raise cli.UserError(f"--val_fraction must be between 0 and 1, got {val_fraction}")
    names = output_files(num_train_shards)
    fileio.check_writable_dir(output_dir)
    with fileio.RunLock(output_dir, what="output_dir"):
        fileio.check_outputs(
            [os.path.join(output_dir, n) for n in names], overwrite=overwrite, flag="--output_dir"
        )
        digits = load_digits()
        scans, labels = digits.images.astype(np.float64), digits.target.astype(np.int64)
        train_pool, val_pool = split_sources(seed, val_fraction, len(scans))
        splits = {"train": (train_pool, num_train, 0), "val": (val_pool, num_val, 1)}
        manifest = {
            "seed": seed,
            "image_size": image_size,
            "num_train": num_train,
            "num_val": num_val,
            "val_fraction": val_fraction,
            "label_offset": LABEL_OFFSET,
            "num_classes": 10,
            "categories": CATEGORIES,
            "source": "sklearn.datasets.load_digits",
            "train_sources": train_pool.tolist(),
            "val_sources": val_pool.tolist(),
            "objects": {},
        }
        for split, (pool, count, stream) in splits.items():
            rng = np.random.default_rng([seed, 2, stream])
            images, annotations, records, used = [], [], [], set()
            first_id = 1 if split == "train" else 1_000_001  # ids never collide across splits
            for i in range(count):
                image_id = first_id + i
                image, boxes, classes, sources = make_canvas(
                    rng, scans, labels, pool, image_size, max_digits
                )
                used.update(sources)
                records.append(tf_example(image_id, _png(image), image_size, boxes, classes))
                images.append(
                    {
                        "id": image_id,
                        "file_name": f"{image_id}.png",
                        "height": image_size,
                        "width": image_size,
                    }
                )
                for (y0, x0, y1, x1), c in zip(boxes, classes):
                    annotations.append(
                        {
                            "id": len(annotations) + 1 + (0 if split == "train" else 10**7),
                            "image_id": image_id,
                            "category_id": c,
                            "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "area": (x1 - x0) * (y1 - y0),
                            "iscrowd": 0,
                        }
                    )
            if split == "train":
                shards = [records[j::num_train_shards] for j in range(num_train_shards)]
                for name, shard in zip(names[:num_train_shards], shards):
                    _write_tfrecord(os.path.join(output_dir, name), shard)
            else:
                _write_tfrecord(os.path.join(output_dir, "val-00000-of-00001.tfrecord"), records)
            fileio.write_json(
                os.path.join(output_dir, f"{split}_annotations.json"),
                {"images": images, "annotations": annotations, "categories": CATEGORIES},
                indent=None,
            )
            manifest["objects"][split] = len(annotations)
            manifest[f"{split}_sources_used"] = len(used)
            log(f"{split}: {count} images, {len(annotations)} digits from {len(used)} source scans")
        root = os.path.abspath(output_dir)
        fileio.write_text(
            os.path.join(output_dir, "experiment.yaml"),
            (
                "# --config_file for retinanet_mobilenetv4_digits (written by "
                "experiments.detection.digits)\n"
                "task:\n"
                f"  annotation_file: '{root}/val_annotations.json'\n"
                "  train_data:\n"
                f"    input_path: '{root}/train-*.tfrecord'\n"
                "  validation_data:\n"
                f"    input_path: '{root}/val-*.tfrecord'\n"
            ),
        )
        fileio.write_json(os.path.join(output_dir, "manifest.json"), manifest)
    log(f"wrote {len(names)} files to {output_dir}")
    return manifest


def main(argv=None):
    p = cli.ArgumentParser("python -m experiments.detection.digits", __doc__)
    cli.add_output_flags(p, kind="dir", required=True, help="folder for the set")
    cli.add_number_flag(p, "--seed", 0, "the set's random seed", type=cli.non_negative_int)
    cli.add_number_flag(p, "--num_train", 2000, "training canvases")
    cli.add_number_flag(p, "--num_val", 300, "validation canvases")
    cli.add_number_flag(p, "--image_size", 128, "canvas side (px)")
    cli.add_number_flag(
        p,
        "--val_fraction",
        0.2,
        "share of the source scans kept for validation",
        type=cli.finite_float,
    )
    cli.add_number_flag(p, "--num_train_shards", 4, "TFRecord files of the training split")
    cli.add_number_flag(p, "--max_digits", 4, "digits per canvas, at most")
    make(**vars(p.parse_args(argv)))  # the flags are make()'s arguments by name
    return 0


if __name__ == "__main__":
    cli.run(main)
