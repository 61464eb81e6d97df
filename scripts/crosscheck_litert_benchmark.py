"""Cross-checks `python -m tflite.benchmark` against LiteRT's own benchmark client
(`ai_edge_litert/tools/benchmark_litert_model.py`): the same model, the same thread count, runs
alternated (A B A B ...) so that load on this shared machine hits both alike.

    python scripts/crosscheck_litert_benchmark.py MODEL.tflite [--rounds 5] [--num_runs 200]
        [--accelerator cpu|gpu]

Per round: tflite.benchmark with one repeat of --num_runs invocations (its mean; CPU through the
interpreter + XNNPACK, or --accelerator gpu through CompiledModel reading each output) and LiteRT's
tool with --num_runs (its 'avg' and 'median'). Neither is pinned to a core (--core none). Prints
each round and the medians over rounds, and their ratio.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from mobilenetv4 import cli


def ours(model, num_runs, warmup, threads, accelerator):
    cmd = [sys.executable, "-m", "tflite.benchmark", model, "--num_runs", str(num_runs)]
    cmd += ["--repeats", "1", "--warmup_runs", str(warmup), "--num_threads", str(threads)]
    cmd += ["--core", "none", "--json"]
    if accelerator != "cpu":
        cmd += ["--accelerator", accelerator, "--check_images", "none"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["models"][0]["median_ms"]


def litert(model, num_runs, warmup, threads, accelerator):
    with tempfile.TemporaryDirectory() as work:
        result = os.path.join(work, "r.json")
        cmd = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model"]
        cmd += [f"--model={model}", f"--num_runs={num_runs}", f"--warmup_runs={warmup}"]
        cmd += [f"--num_threads={threads}", f"--result_json={result}"]
        if accelerator == "gpu":
            cmd += ["--use_gpu"]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        with open(result) as f:
            latency = json.load(f)["latency"]
    return latency["avg_ms"], latency["median_ms"]


def main(argv=None):
    p = cli.ArgumentParser("python scripts/crosscheck_litert_benchmark.py", __doc__)
    p.add_argument("model")
    p.add_argument("--rounds", type=cli.positive_int, default=5)
    p.add_argument("--num_runs", type=cli.positive_int, default=200)
    p.add_argument("--warmup_runs", type=cli.non_negative_int, default=20)
    p.add_argument("--num_threads", type=cli.positive_int, default=1)
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    a = p.parse_args(argv)
    rows = []
    for r in range(a.rounds):
        args = (a.model, a.num_runs, a.warmup_runs, a.num_threads, a.accelerator)
        first, second = (ours, litert) if r % 2 == 0 else (litert, ours)
        got = {first.__name__: first(*args), second.__name__: second(*args)}
        rows.append((got["ours"], *got["litert"]))
        print(
            f"round {r + 1}: tflite.benchmark mean {rows[-1][0]:.3f} ms | benchmark_litert_model "
            f"avg {rows[-1][1]:.3f} ms, median {rows[-1][2]:.3f} ms",
            flush=True,
        )
    med = [statistics.median(col) for col in zip(*rows)]
    print(
        f"medians over {a.rounds} rounds ({a.accelerator}, {a.num_threads} thread(s), "
        f"{a.num_runs} runs): tflite.benchmark {med[0]:.3f} ms; benchmark_litert_model avg "
        f"{med[1]:.3f} ms, median {med[2]:.3f} ms; ratio ours/theirs(avg) {med[0] / med[1]:.3f}"
    )


if __name__ == "__main__":
    cli.run(main)
