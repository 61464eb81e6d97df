r"""How informative the stored soft labels are: agreement with the true label, confidence, entropy.

    python -m experiments.distill.label_stats --shards=DIR --labels=tfrecord:LABELLED \
        [--datasets=d1,d2,d3] [--output=stats.md [--overwrite]]

For each dataset: examples, mean top probability, mean entropy (nats) and, where `labels` is the
dataset's source, how often the teacher's top class is the true label of the stored image's
source image (id mod number of source images; for extreme Mixup that is the image that keeps at
least half of the pixels). D3's source is selected and replicated, so it has no agreement here.
"""

from absl import flags
import numpy as np
import tensorflow as tf

from experiments import common_flags
from experiments import data as data_lib
from experiments.distill import shards
from mobilenetv4 import fileio
from mobilenetv4.cli import UserError


def source_labels(spec, classes):
    """True labels of a dataset spec of experiments.data, in its fixed order."""
    source = data_lib.make_source(spec, "train", num_classes=classes)
    return np.array([label for _, _, label in source.read(None, None).as_numpy_iterator()])


def dataset_stats(directory, name, labels=None):
    """Dict of num_examples, mean_top_prob, mean_entropy and (given labels) agreement."""
    paths, sides = shards.load_manifest(directory, name)
    parse = shards.make_parser(shards.label_format(sides[0]))
    ids, probs = [], []
    for ex in tf.data.TFRecordDataset(paths).map(parse).as_numpy_iterator():
        ids.append(ex["id"])
        probs.append(ex["label"])
    ids, probs = np.array(ids), np.array(probs, np.float64)
    if not len(ids):
        raise shards.ShardError(
            f"the shards of {name!r} in {directory} hold no examples; regenerate them"
        )
    stats = {
        "num_examples": len(ids),
        "mean_top_prob": float(probs.max(1).mean()),
        "mean_entropy": float(-(probs * np.log(np.maximum(probs, 1e-12))).sum(1).mean()),
    }
    if labels is not None:
        labels = np.asarray(labels)
        stats["agreement"] = float((probs.argmax(1) == labels[ids % len(labels)]).mean())
    return stats


def table(directory, names, labels=None, labelled_names=("d1", "d2")):
    """Markdown table of dataset_stats; agreement only for `labelled_names`."""
    rows = [
        "| dataset | examples | teacher top-1 = true label | mean top probability | "
        "mean entropy (nats) |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        s = dataset_stats(directory, name, labels if name in labelled_names else None)
        agree = f"{s['agreement']:.3f}" if "agreement" in s else "-"
        rows.append(
            f"| {name} | {s['num_examples']} | {agree} | {s['mean_top_prob']:.3f} | "
            f"{s['mean_entropy']:.3f} |"
        )
    return "\n".join(rows)


SHARDS = flags.DEFINE_string("shards", None, "directory generate wrote")
LABELS = flags.DEFINE_string("labels", None, "dataset spec of D1/D2's source, for agreement")
DATASETS = flags.DEFINE_list("datasets", ["d1", "d2", "d3"], "datasets to report, comma-separated")
OUTPUT = flags.DEFINE_string("output", None, "also write the table to this Markdown file")
OVERWRITE = flags.DEFINE_bool("overwrite", False, "replace an existing --output file")


def main(argv):
    del argv  # common_flags.run refuses positional arguments
    if not SHARDS.value:
        raise UserError("pass --shards=DIR (the directory generate wrote)")
    if not DATASETS.value:
        raise UserError("pass --datasets=d1,d2,... (at least one dataset name)")
    if OUTPUT.value:
        fileio.check_outputs([OUTPUT.value], overwrite=OVERWRITE.value)
    try:
        labels = None
        if LABELS.value:
            _, sides = shards.load_manifest(SHARDS.value, DATASETS.value[0])
            labels = source_labels(LABELS.value, shards.label_format(sides[0]).classes)
        text = table(SHARDS.value, DATASETS.value, labels)
    except (data_lib.DataError, tf.errors.OpError) as e:
        if isinstance(e, UserError):
            raise
        message = " ".join(str(getattr(e, "message", e)).split()) or type(e).__name__
        raise UserError(f"cannot read the data: {message}") from None
    print(text)
    if OUTPUT.value:
        fileio.write_text(OUTPUT.value, text + "\n")
    return 0


if __name__ == "__main__":
    common_flags.run(main)
