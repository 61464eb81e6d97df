"""D3's class-balanced selection of extra data (paper Section 8, after Noisy Student).

A relevance model scores each candidate image; a candidate counts for its most probable class when
that probability exceeds the threshold (0.3 in the paper). Each class keeps its top `per_class`
candidates by score; classes with fewer are filled up by replicating their images in turn.
"""

import math

import numpy as np

from mobilenetv4.cli import UserError


def check_selection(threshold, per_class):
    """UserError unless 0 <= threshold <= 1 (a probability) and per_class is an integer >= 1."""
    if not (
        isinstance(threshold, (int, float))
        and not isinstance(threshold, bool)
        and math.isfinite(threshold)
        and 0 <= threshold <= 1
    ):
        raise UserError(f"selection threshold must be a probability in [0, 1], got {threshold!r}")
    if not (
        isinstance(per_class, (int, np.integer))
        and not isinstance(per_class, bool)
        and per_class >= 1
    ):
        raise UserError(f"per_class must be an integer of at least 1, got {per_class!r}")


def select_balanced(scores, threshold=0.3, per_class=130_000, seed=0):
    """Returns (indices, classes): candidate indices, per_class for every class that has any.

    scores: [N, classes] relevance-model probabilities. Output order is shuffled with `seed` so
    that shards of the selection mix classes. Classes with no candidate above the threshold are
    absent (nothing to replicate); `selection_report` shows which.
    """
    check_selection(threshold, per_class)
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise UserError(f"relevance scores must be [N, classes], got shape {scores.shape}")
    best = scores.argmax(axis=1)
    confidence = scores.max(axis=1)
    keep = confidence > threshold
    indices, classes = [], []
    for c in range(scores.shape[1]):
        members = np.flatnonzero(keep & (best == c))
        if not len(members):
            continue
        members = members[np.argsort(-confidence[members], kind="stable")][:per_class]
        chosen = np.resize(members, per_class)  # cycles through rare classes to replicate them
        indices.append(chosen)
        classes.append(np.full(per_class, c))
    if not indices:
        raise UserError(
            f"no candidate has a relevance score above {threshold}; lower the "
            "threshold or check the relevance model"
        )
    indices, classes = np.concatenate(indices), np.concatenate(classes)
    order = np.random.default_rng(seed).permutation(len(indices))
    return indices[order], classes[order]


def selection_report(scores, classes, threshold, per_class):
    """Counts for the log: unique candidates per class before replication, empty classes."""
    scores = np.asarray(scores)
    keep = scores.max(axis=1) > threshold
    unique = np.bincount(scores.argmax(axis=1)[keep], minlength=scores.shape[1])
    return {
        "candidates": len(scores),
        "above_threshold": int(keep.sum()),
        "classes_kept": int((unique > 0).sum()),
        "empty_classes": np.flatnonzero(unique == 0).tolist(),
        "replicated_classes": int(((unique > 0) & (unique < per_class)).sum()),
        "selected": int(len(classes)),
    }
