"""Shard round trip, format, corruption and D3 selection."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import CLASSES, SIZE, specs
from experiments.distill import generate as gen
from experiments.distill import relevance
from experiments.distill import shards


def _read(directory, name):
  paths, sides = shards.load_manifest(directory, name, verify="full")
  parse = shards.make_parser(shards.label_format(sides[0]), SIZE)
  return list(tf.data.TFRecordDataset(paths).map(parse).as_numpy_iterator()), sides


@pytest.mark.parametrize("name", ["d1", "d2"])
def test_stored_probabilities_equal_teacher_on_stored_jpeg(generated, teacher_file, name):
  teacher = keras.models.load_model(teacher_file)
  examples, sides = _read(generated, name)
  assert len(examples) == 24 * 2 == sum(s["num_examples"] for s in sides)
  images = np.stack([e["image"] for e in examples]).astype(np.float32) / 255.0
  expected = tf.nn.softmax(teacher(images)).numpy()
  stored = np.stack([e["label"] for e in examples])
  assert expected.max(axis=1).mean() > 0.5  # peaked labels, so the comparison means something
  # float16 keeps 11 significant bits: relative error 2^-11, plus renormalisation.
  np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=1e-4)
  # every (replica, source image) pair once: ids 0..47, no duplicates
  assert sorted(e["id"] for e in examples) == list(range(48))


def test_augmentations_differ_between_replicas(generated):
  examples, _ = _read(generated, "d1")
  by_id = {e["id"]: e["image"] for e in examples}
  # replica 0 and replica 1 of the same source image got different crops/augmentations
  assert sum(not np.array_equal(by_id[s], by_id[24 + s]) for s in range(24)) >= 20


def test_top_k_storage_keeps_top_classes_and_remainder(tmp_path, source_npy, teacher_file):
  gen.generate(datasets=specs(source_npy, replicas=1)[:1], teacher=teacher_file,
               output_dir=str(tmp_path), classes=CLASSES, image_size=SIZE, num_shards=1,
               batch_size=8, top_k=3, prob_dtype="float32")
  examples, sides = _read(str(tmp_path), "d1")
  teacher = keras.models.load_model(teacher_file)
  images = np.stack([e["image"] for e in examples]).astype(np.float32) / 255.0
  expected = tf.nn.softmax(teacher(images)).numpy()
  for label, probs in zip((e["label"] for e in examples), expected):
    top = np.argsort(-probs)[:3]
    np.testing.assert_allclose(label[top], probs[top], rtol=1e-5)
    rest = np.setdiff1d(np.arange(CLASSES), top)
    np.testing.assert_allclose(label[rest], (1 - probs[top].sum()) / 7, rtol=1e-4, atol=1e-6)
  assert sides[0]["label_format"] == {"classes": CLASSES, "top_k": 3, "prob_dtype": "float32"}


def test_label_bytes_per_example():
  assert shards.LabelFormat(1000).label_bytes() == 2000
  assert shards.LabelFormat(1000, top_k=10, prob_dtype="float32").label_bytes() == 80
  with pytest.raises(ValueError, match="top_k"):
    shards.LabelFormat(10, top_k=10)


def _copy(src, dst):
  os.makedirs(dst)
  for f in os.listdir(src):
    with open(os.path.join(src, f), "rb") as a, open(os.path.join(dst, f), "wb") as b:
      b.write(a.read())


def test_corrupt_shard_error_names_the_file(generated, tmp_path):
  work = str(tmp_path / "copy")
  _copy(generated, work)
  bad = os.path.join(work, shards.shard_name("d1", 1, 3))
  data = bytearray(open(bad, "rb").read())
  data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, CRC differs
  open(bad, "wb").write(bytes(data))
  with pytest.raises(shards.ShardError, match=f"corrupt shard {bad}.*CRC32"):
    shards.load_manifest(work, "d1", verify="full")
  open(bad, "wb").write(bytes(data[:1000]))  # truncated: caught by the cheap size check
  with pytest.raises(shards.ShardError, match=f"corrupt shard {bad}.*1000 bytes"):
    shards.load_manifest(work, "d1")
  os.remove(bad)
  with pytest.raises(shards.ShardError, match=f"shard {bad} is missing"):
    shards.load_manifest(work, "d1")
  with pytest.raises(shards.ShardError, match="no finished shards of dataset 'd9'"):
    shards.load_manifest(work, "d9")


def test_select_balanced_thresholds_caps_and_replicates():
  scores = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.2, 0.75, 0.05],
                     [0.4, 0.35, 0.25], [0.25, 0.25, 0.5], [0.1, 0.2, 0.28]])
  idx, cls = relevance.select_balanced(scores, threshold=0.3, per_class=2)
  assert sorted(zip(cls, idx)) == [(0, 0), (0, 1), (1, 3), (1, 3), (2, 5), (2, 5)]
  with pytest.raises(ValueError, match="no candidate"):
    relevance.select_balanced(scores, threshold=0.95, per_class=2)
