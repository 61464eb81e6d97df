"""Measure INT8 single-thread CPU latency of models for the roofline fit (paper Table 16).

Protocol (paper Appendix B style): full-INT8 TFLite model (random calibration images: enough for
latency, not for accuracy), timed with the export issue's benchmark (`tflite.benchmark.appendix_b`:
ai_edge_litert, XNNPACK, 1 thread, pinned to the fastest core, `runs` invocations per mean, median
of `repeats` means, models interleaved so that load from other processes falls on all alike).
Models slower than `max_secs / runs` per call get fewer runs per round (300, 100 or 30; the CSV
says how many); each such group is interleaved within itself.

    python -m mobilenetv4.roofline.measure --models conv_small,mobilenet_v2_100 \
        --out docs/roofline/latency_int8_cpu.csv
"""
import argparse
import csv
import os
import sys
import time
from typing import List

import numpy as np

from mobilenetv4.roofline import zoo

CSV_FIELDS = ("model", "family", "resolution", "latency_ms", "round_means_ms", "runs_per_round",
              "rounds", "tflite_kib", "core")
RUN_TIERS = (300, 100, 30)


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


def load_or_convert(spec: zoo.ModelSpec, cache_dir: str) -> str:
    """Path of the model's INT8 .tflite, converting it on first use."""
    path = os.path.join(cache_dir, f"{spec.name}_{spec.resolution}_int8.tflite")
    if not os.path.exists(path):
        import tf_keras as keras
        keras.backend.clear_session()
        flatbuffer = convert_int8(spec.build(), spec.resolution)
        os.makedirs(cache_dir, exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            f.write(flatbuffer)
        os.replace(path + ".tmp", path)
    return path


def runs_tier(probe_s: float, runs: int, max_secs: float) -> int:
    """Largest of runs, 300, 100, 30 (not above runs) whose round fits in max_secs."""
    tiers = sorted({runs} | {t for t in RUN_TIERS if t < runs}, reverse=True)
    return next((t for t in tiers if t * probe_s <= max_secs), tiers[-1])


def measure(specs: List[zoo.ModelSpec], runs: int = 1000, repeats: int = 5, max_secs: float = 20.0,
            cache_dir: str = "/tmp/mobilenetv4_roofline_tflite", log=print) -> List[dict]:
    """Latency rows (see CSV_FIELDS); timing by tflite.benchmark.appendix_b, one interleaved
    run per group of models that share a runs-per-round count."""
    from tflite import benchmark, runtime
    paths, tier = {}, {}
    for i, spec in enumerate(specs, 1):
        t0 = time.time()
        paths[spec.label] = load_or_convert(spec, cache_dir)
        interp = benchmark.prepare(paths[spec.label], num_threads=1, xnnpack=True, warmup_runs=3)
        probe_s = benchmark.mean_latency_ms(interp, 5) / 1e3
        tier[spec.label] = runs_tier(probe_s, runs, max_secs)
        log(f"[{i}/{len(specs)}] {spec.label}: ready in {time.time() - t0:.0f}s, "
            f"~{probe_s * 1e3:.2f} ms/call -> {tier[spec.label]} runs per round")
    rows = {}
    for n in sorted(set(tier.values()), reverse=True):
        group = [s for s in specs if tier[s.label] == n]
        log(f"timing {len(group)} model(s) interleaved, {n} runs x {repeats} rounds")
        result = benchmark.appendix_b([paths[s.label] for s in group], num_runs=n, repeats=repeats,
                                      log=log)
        for s, m in zip(group, result["models"]):
            rows[s.label] = dict(
                model=s.name, family=s.family, resolution=s.resolution,
                latency_ms=round(m["median_ms"], 4),
                round_means_ms=" ".join(f"{x:.3f}" for x in m["means_ms"]), runs_per_round=n,
                rounds=repeats, tflite_kib=round(os.path.getsize(paths[s.label]) / 1024, 1),
                core=result["protocol"]["core"])
    return [rows[s.label] for s in specs]


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
