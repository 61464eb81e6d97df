"""A reward split carved from the training split, so that a search never sees the data its
result is finally evaluated on (TuNAS carves its validation set from ImageNet's training set).

    search.data = @reward_split
    reward_split.data = @input_pipeline
    reward_split.fraction = 0.25

`reward_split(data)` returns a copy of `data` (a `TrainingData` with in-memory sources, e.g.
sklearn_digits) whose training split is `data`'s training split minus a stratified `fraction`
of it, and whose eval split is that carved part: the search trains the shared weights on the
first and takes its rewards from the second; `data`'s own eval split is left untouched for the
final evaluation of the found network (which trains on the whole training split).
"""

import copy

import gin
import numpy as np

from experiments import data as data_lib
from mobilenetv4.cli import UserError


def _arrays(source):
    keys, encoded, labels = [], [], []
    for k, e, l in source.read(None, 0).as_numpy_iterator():
        keys.append(k.decode() if isinstance(k, bytes) else str(k))
        encoded.append(e)
        labels.append(int(l))
    return np.asarray(keys), np.asarray(encoded, dtype=object), np.asarray(labels, np.int64)


@gin.configurable
def reward_split(data=gin.REQUIRED, fraction=0.25, seed=1):
    """`data` with its eval split replaced by a stratified `fraction` carved from its training
    split (and that part removed from training).

    Args:
      data: a TrainingData (or a callable returning one, e.g. @input_pipeline).
      fraction: share of the training split used for rewards, in (0, 1).
      seed: split seed.
    """
    from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top

    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise UserError(f"reward_split.fraction must be in (0, 1), got {fraction!r}")
    if callable(data):
        data = data()
    source = data.train_source
    keys, encoded, labels = _arrays(source)
    train_idx, reward_idx = train_test_split(
        np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed
    )
    out = copy.copy(data)
    n = source.num_classes
    out.train_source = data_lib._in_memory_source(  # pylint: disable=protected-access
        f"{source.name}-minus-reward", keys[train_idx], encoded[train_idx], labels[train_idx], n
    )
    out.eval_source = data_lib._in_memory_source(  # pylint: disable=protected-access
        f"{source.name}-reward", keys[reward_idx], encoded[reward_idx], labels[reward_idx], n
    )
    for s in (out.train_source, out.eval_source):
        s.spec = getattr(source, "spec", source.name)
        s.label_offset = getattr(source, "label_offset", 0)
    out.num_train_examples = len(train_idx)
    out.num_eval_examples = len(reward_idx)
    return out
