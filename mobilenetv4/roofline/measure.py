"""Measure INT8 single-thread CPU latency of models for the roofline fit (paper Table 16).

Protocol (paper Appendix B style): full-INT8 TFLite model (random calibration images: enough for
latency, not for accuracy), ai_edge_litert Interpreter with num_threads=1 (XNNPACK as shipped),
warm-up, then `repeats` rounds; in each round every model runs `runs` invocations back to back and
its mean is recorded; rounds interleave the models so that load from other processes falls on all
of them alike. Reported latency = median over rounds of the per-round mean. Models slower than
`max_secs / runs` per call get fewer runs per round (the CSV says how many).

    python -m mobilenetv4.roofline.measure --models conv_small,mobilenet_v2_100 \
        --out docs/roofline/latency_int8_cpu.csv
"""
import argparse
import csv
import os
import statistics
import sys
import time
from typing import List

import numpy as np

from mobilenetv4.roofline import zoo

CSV_FIELDS = ("model", "family", "resolution", "latency_ms", "round_means_ms", "runs_per_round",
              "rounds", "tflite_kib")


def convert_int8(model, resolution: int, calibration_steps: int = 4, seed: int = 0) -> bytes:
    """Full-integer TFLite flatbuffer (int8 in/out) from a tf_keras model; random calibration."""
    import tensorflow as tf
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, resolution, resolution, 3], tf.float32))
    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(calibration_steps):
            yield [rng.uniform(-1, 1, (1, resolution, resolution, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def make_interpreter(flatbuffer: bytes):
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=flatbuffer, num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    rng = np.random.default_rng(0)
    info = np.iinfo(inp["dtype"]) if np.issubdtype(inp["dtype"], np.integer) else None
    data = (rng.integers(info.min, info.max + 1, inp["shape"]).astype(inp["dtype"]) if info
            else rng.standard_normal(inp["shape"]).astype(inp["dtype"]))
    interp.set_tensor(inp["index"], data)
    return interp


def mean_latency_s(interp, runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        interp.invoke()
    return (time.perf_counter() - start) / runs


def load_or_convert(spec: zoo.ModelSpec, cache_dir: str) -> bytes:
    path = os.path.join(cache_dir, f"{spec.name}_{spec.resolution}_int8.tflite")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return f.read()
    import tf_keras as keras
    keras.backend.clear_session()
    flatbuffer = convert_int8(spec.build(), spec.resolution)
    os.makedirs(cache_dir, exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return flatbuffer


def measure(specs: List[zoo.ModelSpec], runs: int = 1000, repeats: int = 5, warmup: int = 20,
            max_secs: float = 20.0, cache_dir: str = "/tmp/mobilenetv4_roofline_tflite",
            log=print) -> List[dict]:
    """Latency rows (see CSV_FIELDS) for each spec, measured interleaved as described above."""
    interps, sizes, runs_for = {}, {}, {}
    for i, spec in enumerate(specs, 1):
        t0 = time.time()
        flatbuffer = load_or_convert(spec, cache_dir)
        interps[spec.label] = make_interpreter(flatbuffer)
        sizes[spec.label] = len(flatbuffer) / 1024
        for _ in range(warmup):
            interps[spec.label].invoke()
        probe = mean_latency_s(interps[spec.label], 5)
        runs_for[spec.label] = max(20, min(runs, int(max_secs / probe)))
        log(f"[{i}/{len(specs)}] {spec.label}: ready in {time.time() - t0:.0f}s, "
            f"~{probe * 1e3:.2f} ms/call, {runs_for[spec.label]} runs per round")
    means = {s.label: [] for s in specs}
    for r in range(repeats):
        for spec in specs:
            means[spec.label].append(mean_latency_s(interps[spec.label], runs_for[spec.label]))
        log(f"round {r + 1}/{repeats}: " + ", ".join(
            f"{s.name} {means[s.label][-1] * 1e3:.2f}" for s in specs) + " ms")
    return [dict(model=s.name, family=s.family, resolution=s.resolution,
                 latency_ms=round(statistics.median(means[s.label]) * 1e3, 4),
                 round_means_ms=" ".join(f"{m * 1e3:.3f}" for m in means[s.label]),
                 runs_per_round=runs_for[s.label], rounds=repeats,
                 tflite_kib=round(sizes[s.label], 1)) for s in specs]


def write_csv(rows, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mobilenetv4.roofline.measure",
                                description=__doc__.split("\n")[0])
    p.add_argument("--models", required=True, help="comma-separated specs, e.g. conv_small,"
                   "mobilenet_v2_100@224")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--runs", type=int, default=1000, help="invocations per round (default 1000)")
    p.add_argument("--repeats", type=int, default=5, help="rounds; latency = median of means")
    p.add_argument("--max-secs", type=float, default=20.0,
                   help="cap on one model's time per round; slow models get fewer runs")
    p.add_argument("--cache-dir", default="/tmp/mobilenetv4_roofline_tflite",
                   help="where converted .tflite files are kept between runs")
    args = p.parse_args(argv)
    try:
        specs = zoo.parse_list(args.models)
    except ValueError as e:
        p.error(str(e))
    if args.runs < 1 or args.repeats < 1:
        p.error("--runs and --repeats must be >= 1")
    rows = measure(specs, args.runs, args.repeats, max_secs=args.max_secs,
                   cache_dir=args.cache_dir, log=lambda m: print(m, flush=True))
    write_csv(rows, args.out)
    print(f"load average at end: {os.getloadavg()}; wrote {args.out}")
    for row in rows:
        print(f"{row['model']:28s} {row['resolution']:4d} {row['latency_ms']:10.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
