"""Measure INT8 single-thread CPU latency of models for the roofline fit (paper Table 16).

Protocol (paper Appendix B style): INT8 TFLite model converted by the exporter
(`tflite.export.convert`; random calibration images: enough for latency, not for accuracy; by
default every op quantized, `--attention-precision float` keeps attention in float), timed with the export issue's benchmark (`tflite.benchmark.appendix_b`:
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
              "rounds", "tflite_kib", "core", "attention_precision")
RUN_TIERS = (300, 100, 30)


def convert_int8(model, resolution: int, attention_precision: str = "int8",
                 calibration_steps: int = 4, seed: int = 0) -> bytes:
    """INT8 TFLite bytes (int8 in/out) via the exporter (`tflite.export.convert`); random
    calibration. attention_precision "int8" quantizes every op; "float" keeps attention's
    BATCH_MATMUL and SOFTMAX in float, as `python -m tflite.export` does by default."""
    from tflite import export
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (calibration_steps, resolution, resolution, 3)).astype(np.float32)
    static = export.with_pixel_input(model, "none", (resolution, resolution))  # batch 1
    return export.convert(static, "int8", io="int8", representative=images,
                          attention_precision=attention_precision)


def tflite_path(spec: zoo.ModelSpec, cache_dir: str, attention_precision: str = "int8") -> str:
    suffix = "" if attention_precision == "int8" else f"_attn-{attention_precision}"
    return os.path.join(cache_dir, f"{spec.name}_{spec.resolution}_int8{suffix}.tflite")


def load_or_convert(spec: zoo.ModelSpec, cache_dir: str, attention_precision: str = "int8") -> str:
    """Path of the model's INT8 .tflite, converting it on first use."""
    path = tflite_path(spec, cache_dir, attention_precision)
    if not os.path.exists(path):
        import tf_keras as keras
        keras.backend.clear_session()
        flatbuffer = convert_int8(spec.build(), spec.resolution, attention_precision)
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
            cache_dir: str = "/tmp/mobilenetv4_roofline_tflite", attention_precision: str = "int8",
            log=print) -> List[dict]:
    """Latency rows (see CSV_FIELDS); timing by tflite.benchmark.appendix_b, one interleaved
    run per group of models that share a runs-per-round count."""
    from tflite import benchmark, runtime
    paths, tier = {}, {}
    attn = {s.label: attention_precision if s.has_attention else "int8" for s in specs}
    for i, spec in enumerate(specs, 1):
        t0 = time.time()
        paths[spec.label] = load_or_convert(spec, cache_dir, attn[spec.label])
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
                round_means_ms=" ".join(f"{x:.4f}" for x in m["means_ms"]), runs_per_round=n,
                rounds=repeats, tflite_kib=round(os.path.getsize(paths[s.label]) / 1024, 1),
                core=result["protocol"]["core"], attention_precision=attn[s.label])
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
    p.add_argument("--attention-precision", choices=("int8", "float"), default="int8",
                   help="int8 (default): every op quantized; float: in models with attention, "
                   "its matmuls and softmax stay float (the exporter's default), so XNNPACK can "
                   "run them")
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
                   cache_dir=args.cache_dir, attention_precision=args.attention_precision,
                   log=lambda m: print(m, flush=True))
    write_csv(rows, args.out)
    print(f"load average at end: {os.getloadavg()}; wrote {args.out}")
    for row in rows:
        print(f"{row['model']:28s} {row['resolution']:4d} {row['latency_ms']:10.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
