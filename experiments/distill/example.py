r"""Offline distillation end to end on the quickstart digits, in minutes on 2 CPU cores.

    python -m experiments.distill.example [--work_dir=/tmp/mnv4_distill_quickstart]

1. splits scikit-learn's digits training split into a labelled part (1,077 images) and an
   "extra" part (360 images, labels never used), written as TFRecords; the digits' held-out
   split (360 images) measures everything;
2. trains the teacher (MobileNetV4-Conv-S at 64 px: it upsamples the 32x32 images inside, see
   distill_teacher_quickstart.gin) on the labelled part;
3. generates D1 (crop + RandAugment l2m2) and D2 (crop + extreme Mixup) from the labelled part
   and D3 from the extra part (relevance-selected, class-balanced, crop + RandAugment l2m1;
   the paper's l2m9 / l2m5 wreck 8x8 digits);
4. trains the student (MobileNetV4-Conv-S at width 0.5) twice with the same step budget: on
   the labels alone (the quickstart recipe), and on the D1:D2:D3 = 1:1:2 soft-label mixture;
5. prints and writes work_dir/results.md: held-out top-1 of teacher, baseline and distilled
   student, the time of each step (kept in timings.json, so a resumed run still shows the
   steps an earlier run did) and how often the teacher's top class on D1/D2 is the true label.

Each step is the public command (python -m experiments.train / experiments.distill.generate)
with the gin files gin_configs/distill_*_quickstart.gin, run as a subprocess; generation reads
the teacher from its run directory (build.json + final.weights.h5). Steps whose output exists are
skipped, so a rerun resumes. Every file is written atomically (mobilenetv4.fileio) and the run
holds a lock on work_dir, so a second live example in the same directory exits 2.
"""

import json
import os
import subprocess
import sys
import time

from absl import flags

from experiments import common_flags
from mobilenetv4 import fileio
from mobilenetv4.cli import UserError

WORK_DIR = flags.DEFINE_string(
    "work_dir", "/tmp/mnv4_distill_quickstart", "where splits, models, shards and results go"
)
EPOCHS = flags.DEFINE_integer("epochs", None, "override the student/baseline epochs", lower_bound=1)
TEACHER_EPOCHS = flags.DEFINE_integer(
    "teacher_epochs", None, "override the teacher epochs (gin file: 40)", lower_bound=1
)

_DEFAULT_DIR = "/tmp/mnv4_distill_quickstart"
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_GIN = os.path.join(_ROOT, "gin_configs")


def write_splits(work_dir, extra_size=360, seed=0):
    """labelled.tfrecord / extra.tfrecord from the digits' training split, stratified."""
    import numpy as np
    import tensorflow as tf
    from sklearn.model_selection import train_test_split
    from experiments import data as data_lib

    source = data_lib.sklearn_digits_source("train")
    examples = list(source.read(None, None).as_numpy_iterator())
    labels = np.array([label for _, _, label in examples])
    labelled, extra = train_test_split(
        np.arange(len(examples)), test_size=extra_size, stratify=labels, random_state=seed
    )
    for name, idx in (("labelled", labelled), ("extra", extra)):
        with (
            fileio.atomic_path(os.path.join(work_dir, f"{name}.tfrecord")) as tmp,
            tf.io.TFRecordWriter(tmp) as writer,
        ):
            for i in sorted(idx):
                _, encoded, label = examples[i]
                feature = {
                    "image/encoded": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[encoded])
                    ),
                    "image/class/label": tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[label])
                    ),
                }
                writer.write(
                    tf.train.Example(
                        features=tf.train.Features(feature=feature)
                    ).SerializeToString()
                )
    return len(labelled), len(extra)


def _paths(work_dir):
    """Gin bindings that move every path of the quickstart gin files into work_dir."""
    if work_dir == _DEFAULT_DIR:
        return []
    return [
        f"{k} = '{v}'"
        for k, v in {
            "generate.output_dir": f"{work_dir}/shards",
            "generate.teacher": f"{work_dir}/teacher",
            "d3/Selection.model": f"{work_dir}/teacher",
            "d1/DistillDataset.source": f"tfrecord:{work_dir}/labelled.tfrecord",
            "d2/DistillDataset.source": f"tfrecord:{work_dir}/labelled.tfrecord",
            "d3/DistillDataset.source": f"tfrecord:{work_dir}/extra.tfrecord",
            "DistillationData.directory": f"{work_dir}/shards",
        }.items()
    ]


def _run(module, gin_file, params, extra_args=()):
    cmd = [
        sys.executable,
        "-m",
        module,
        f"--gin_file={os.path.join(_GIN, gin_file)}",
        *[f"--gin_param={p}" for p in params],
        *extra_args,
    ]
    print("+", " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the progress lines readable
    code = subprocess.run(cmd, check=False, cwd=_ROOT, env=env).returncode
    if code:
        raise _StepFailed(module, code)


class _StepFailed(Exception):
    def __init__(self, module, code):
        super().__init__(f"{module} exited with code {code}")
        self.module, self.code = module, code


def _read_json(path):
    """A JSON file this example wrote (or an earlier run of it); UserError when unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(
            f"cannot read {path}: {' '.join(str(e).split())}; delete it (and rerun "
            "the step that writes it)"
        ) from None


def _metrics(model_dir):
    return _read_json(os.path.join(model_dir, "metrics.json"))


def main(argv):
    del argv  # common_flags.run refuses positional arguments
    work = os.path.abspath(WORK_DIR.value)
    with fileio.RunLock(work, what="work_dir"):
        try:
            return _main(work)
        except _StepFailed as e:
            if e.code == 2:  # the step printed its one-line error above
                raise UserError(
                    f"{e.module} refused its input (exit 2); see the error line above"
                ) from None
            print(f"error: step {e.module} failed with exit code {e.code}", file=sys.stderr)
            return 1


def _main(work):
    paths = _paths(work)
    labelled = f"tfrecord:{work}/labelled.tfrecord"
    epochs = [f"train.epochs = {EPOCHS.value}"] if EPOCHS.value else []
    timings_path = f"{work}/timings.json"
    timings = _read_json(timings_path) if os.path.exists(timings_path) else {}

    def step(name, done, fn):
        if os.path.exists(done):
            print(f"== {name}: already done ({done})", flush=True)
            return
        print(f"== {name}", flush=True)
        start = time.time()
        fn()
        timings[name] = time.time() - start
        fileio.write_json(timings_path, timings)

    step(
        "splits",
        f"{work}/extra.tfrecord",
        lambda: print("labelled / extra images: %d / %d" % write_splits(work)),
    )
    # Teacher: the baseline recipe with a bigger model at a higher resolution, more epochs and no
    # label smoothing, so that it is clearly stronger than the student can get on the labels.
    step(
        "teacher",
        f"{work}/teacher/metrics.json",
        lambda: _run(
            "experiments.train",
            "distill_teacher_quickstart.gin",
            [f"input_pipeline.dataset = '{labelled}'"]
            + ([f"train.epochs = {TEACHER_EPOCHS.value}"] if TEACHER_EPOCHS.value else []),
            [f"--model_dir={work}/teacher"],
        ),
    )
    step(
        "generate D1, D2, D3",
        f"{work}/shards/d3-00003-of-00004.json",
        lambda: _run(
            "experiments.distill.generate",
            "distill_generate_quickstart.gin",
            [p for p in paths if not p.startswith("DistillationData")],
        ),
    )
    step(
        "student on labels alone",
        f"{work}/baseline/metrics.json",
        lambda: _run(
            "experiments.train",
            "distill_baseline_quickstart.gin",
            [f"input_pipeline.dataset = '{labelled}'"] + epochs,
            [f"--model_dir={work}/baseline"],
        ),
    )
    step(
        "student distilled",
        f"{work}/student/metrics.json",
        lambda: _run(
            "experiments.train",
            "distill_student_quickstart.gin",
            [p for p in paths if not p.startswith(("generate.", "d1/", "d2/", "d3/"))] + epochs,
            [f"--model_dir={work}/student"],
        ),
    )

    from experiments.distill import label_stats

    rows = [
        (name, _metrics(f"{work}/{d}"))
        for name, d in (
            ("teacher conv_small at 64 px, labels", "teacher"),
            ("student conv_small_050, labels", "baseline"),
            ("student conv_small_050, distilled", "student"),
        )
    ]
    table = ["| model | steps | held-out top-1 | train wall time (s) |", "|---|---|---|---|"]
    table += [
        f"| {name} | {m['step']} | {m['eval_top1']:.4f} | {m['wall_time_s']:.0f} |"
        for name, m in rows
    ]
    table += ["", "| step | seconds (when it ran) |", "|---|---|"]
    table += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    table += [
        f"| all steps | {sum(timings.values()):.0f} |",
        "",
        "Soft labels:",
        "",
        label_stats.table(
            f"{work}/shards", ("d1", "d2", "d3"), label_stats.source_labels(labelled, 10)
        ),
    ]
    text = "\n".join(table)
    print(text)
    fileio.write_text(f"{work}/results.md", text + "\n")
    baseline, student = rows[1][1]["eval_top1"], rows[2][1]["eval_top1"]
    print(
        f"distilled student {student:.4f} vs labels-only {baseline:.4f} "
        f"({'at least as good' if student >= baseline else 'WORSE'})"
    )
    return 0


if __name__ == "__main__":
    common_flags.run(main)
