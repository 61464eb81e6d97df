"""Soft-label statistics of generated shards, against a direct computation."""

import numpy as np
import tensorflow as tf

from experiments.distill import label_stats
from experiments.distill import shards


def test_stats_match_direct_computation(generated, source_spec):
    labels = label_stats.source_labels(source_spec, 10)
    assert labels.tolist() == [i % 10 for i in range(24)]  # as conftest wrote them
    paths, sides = shards.load_manifest(generated, "d1")
    parse = shards.make_parser(shards.label_format(sides[0]))
    examples = list(tf.data.TFRecordDataset(paths).map(parse).as_numpy_iterator())
    probs = np.array([e["label"] for e in examples], np.float64)
    truth = np.array([labels[e["id"] % 24] for e in examples])

    stats = label_stats.dataset_stats(generated, "d1", labels)
    assert stats["num_examples"] == 48
    np.testing.assert_allclose(stats["agreement"], (probs.argmax(1) == truth).mean())
    np.testing.assert_allclose(stats["mean_top_prob"], probs.max(1).mean())
    plogp = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)  # 0 log 0 = 0
    np.testing.assert_allclose(stats["mean_entropy"], -plogp.sum(1).mean(), rtol=1e-6)
    # a teacher that always agreed would score 1: relabel the source with the teacher's argmax
    by_source = {e["id"] % 24: p.argmax() for e, p in zip(examples, probs) if e["id"] < 24}
    own = np.array([by_source[i] for i in range(24)])
    assert label_stats.dataset_stats(generated, "d1", own)["agreement"] >= 0.5
    text = label_stats.table(generated, ["d1", "d2"], labels)
    assert text.count("\n") == 3 and "| d2 | 48 |" in text
