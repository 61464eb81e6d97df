"""A generation killed mid-way resumes to the same shards; the teacher runs under tf.distribute."""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import tensorflow as tf

from experiments.distill import generate as gen
from experiments.distill import shards

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_SHARDS = 4


def _gin(path, source_spec, teacher_file, out):
    with open(path, "w") as f:
        f.write(
            textwrap.dedent(f"""
        generate.datasets = [@d2/DistillDataset()]
        d2/DistillDataset.name = 'd2'
        d2/DistillDataset.source = '{source_spec}'
        d2/DistillDataset.augmentation = 'mixup'
        d2/DistillDataset.replicas = 3
        generate.teacher = '{teacher_file}'
        generate.output_dir = '{out}'
        generate.classes = 10
        generate.image_size = (16, 16)
        generate.num_shards = {NUM_SHARDS}
        generate.batch_size = 8
        generate.strategy = 'mirrored'
        """)
        )


def _sidecars(directory):
    result = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            side = json.load(f)
        result[side["file"]] = side
    return result


def test_killed_generation_resumes_to_same_shards_without_duplicates(
    tmp_path, source_spec, teacher_file
):
    killed, reference = str(tmp_path / "killed"), str(tmp_path / "reference")
    config = str(tmp_path / "gen.gin")
    _gin(config, source_spec, teacher_file, killed)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The killed run labels with MirroredStrategy over 2 logical CPUs (4 examples per replica);
    # the reference run below with the default strategy: same shards either way.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "experiments.distill.generate",
            f"--gin_file={config}",
            "--cpu_devices=2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not glob.glob(os.path.join(killed, "*.json")) and proc.poll() is None:
        assert time.time() < deadline, "generation wrote no shard within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert "teacher on 2 replicas" in err.decode()
    finished_before = len(_sidecars(killed))
    assert 1 <= finished_before < NUM_SHARDS  # really killed mid-way

    # Rerun (in-process, same gin file) and run the same generation uninterrupted.
    import gin

    gin.clear_config()
    gin.parse_config_files_and_bindings([config], ["generate.strategy = 'default'"])
    resumed_sides = gen.generate()
    gin.clear_config()
    assert len(resumed_sides) == NUM_SHARDS - finished_before  # finished shards were not redone
    gen.generate(
        datasets=[gen.DistillDataset("d2", source_spec, "mixup", 3)],
        teacher=teacher_file,
        output_dir=reference,
        classes=10,
        image_size=(16, 16),
        num_shards=NUM_SHARDS,
        batch_size=8,
    )

    assert sorted(os.listdir(killed)) == sorted(os.listdir(reference))  # no .tmp left behind
    got, want = _sidecars(killed), _sidecars(reference)
    assert [s["num_examples"] for s in got.values()] == [s["num_examples"] for s in want.values()]
    examples = {}
    for directory in (killed, reference):
        paths, sides = shards.load_manifest(directory, "d2", verify="full")
        parse = shards.make_parser(shards.label_format(sides[0]))
        examples[directory] = {
            int(ex["id"]): ex
            for ex in tf.data.TFRecordDataset(paths).map(parse).as_numpy_iterator()
        }
    # every (replica, image) once, no duplicates
    assert sorted(examples[killed]) == list(range(24 * 3))
    assert sum(s["num_examples"] for s in got.values()) == 24 * 3  # so no id appears twice
    # a shard's content depends only on (seed, dataset, shard): same images, same soft labels
    for i, ex in examples[killed].items():
        ref = examples[reference][i]
        np.testing.assert_array_equal(ex["image"], ref["image"], err_msg=f"example {i}")
        np.testing.assert_allclose(
            ex["label"], ref["label"], rtol=2e-3, atol=1e-4, err_msg=f"example {i}"
        )
