"""The digits detection set: deterministic, exact boxes, disjoint splits, Model Garden format."""

import json
import os

import numpy as np
import pytest

from mobilenetv4.cli import UserError


def _examples(path):
    import tensorflow as tf

    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def test_same_seed_same_bytes_and_disjoint_sources(tmp_path, tiny_digits):
    from experiments.detection import digits

    again = str(tmp_path / "again")
    digits.make(again, seed=0, num_train=24, num_val=8, num_train_shards=2, log=lambda *_: None)
    for name in digits.output_files(2):
        if name in ("experiment.yaml",):  # holds the absolute folder
            continue
        with (
            open(os.path.join(tiny_digits, name), "rb") as a,
            open(os.path.join(again, name), "rb") as b,
        ):
            assert a.read() == b.read(), name
    manifest = json.load(open(os.path.join(tiny_digits, "manifest.json")))
    train, val = set(manifest["train_sources"]), set(manifest["val_sources"])
    assert not train & val and len(train | val) == digits.NUM_SOURCES
    other = str(tmp_path / "other")
    digits.make(other, seed=1, num_train=4, num_val=2, num_train_shards=1, log=lambda *_: None)
    assert (
        json.load(open(os.path.join(other, "manifest.json")))["val_sources"]
        != manifest["val_sources"]
    )


def test_canvas_sources_stay_in_their_split_and_boxes_are_the_ink_extent():
    from sklearn.datasets import load_digits

    from experiments.detection import digits

    scans = load_digits().images
    labels = load_digits().target
    train_pool, val_pool = digits.split_sources(0, 0.2)
    rng = np.random.default_rng(3)
    for _ in range(20):
        image, boxes, classes, sources = digits.make_canvas(rng, scans, labels, val_pool, 128)
        assert set(sources) <= set(val_pool.tolist()) and not set(sources) & set(
            train_pool.tolist()
        )
        for (y0, x0, y1, x1), c, s in zip(boxes, classes, sources):
            assert c == labels[s] + 1
            assert 0 <= y0 < y1 <= 128 and 0 <= x0 < x1 <= 128
            # The box is the scan's ink extent (nonzero pixels) times a whole enlargement factor.
            rows = np.flatnonzero(scans[s].max(axis=1) > 0)
            cols = np.flatnonzero(scans[s].max(axis=0) > 0)
            h, w = rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]
            assert (y1 - y0) % h == 0 and (y1 - y0) // h in (2, 3, 4, 5)
            assert (x1 - x0) == (y1 - y0) // h * w
            assert (
                255 - image[y0:y1, x0:x1].min(axis=2).astype(int)
            ).max() > 120  # dark ink inside


def test_tfrecords_and_coco_json_agree(tiny_digits):
    val = _examples(os.path.join(tiny_digits, "val-00000-of-00001.tfrecord"))
    coco = json.load(open(os.path.join(tiny_digits, "val_annotations.json")))
    assert len(val) == len(coco["images"]) == 8
    assert [c["id"] for c in coco["categories"]] == list(range(1, 11))
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for ex in val:
        f = ex.features.feature
        image_id = int(f["image/source_id"].bytes_list.value[0])
        anns = by_image[image_id]
        size = f["image/height"].int64_list.value[0]
        xmin = np.array(f["image/object/bbox/xmin"].float_list.value) * size
        ymin = np.array(f["image/object/bbox/ymin"].float_list.value) * size
        assert sorted(f["image/object/class/label"].int64_list.value) == sorted(
            a["category_id"] for a in anns
        )
        np.testing.assert_allclose(sorted(xmin), sorted(a["bbox"][0] for a in anns), atol=1e-4)
        np.testing.assert_allclose(sorted(ymin), sorted(a["bbox"][1] for a in anns), atol=1e-4)


def test_existing_outputs_are_refused_and_kept(tiny_digits):
    from experiments.detection import digits

    before = open(os.path.join(tiny_digits, "val_annotations.json"), "rb").read()
    with pytest.raises(UserError, match="already exists"):
        digits.make(tiny_digits, seed=5, num_train=2, num_val=2, num_train_shards=2)
    assert open(os.path.join(tiny_digits, "val_annotations.json"), "rb").read() == before


def test_cli_bad_flag_is_one_line_exit_2(capsys, tmp_path):
    from experiments.detection import digits

    with pytest.raises(SystemExit) as e:
        digits.main(["--output_dir", str(tmp_path / "d"), "--num_train", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
