"""Measure INT8 CPU latency of models for the roofline fit (paper Table 16): the measuring half of
the roofline analysis (`python -m mobilenetv4.roofline` computes the costs; this tool measures).

    python -m tflite.roofline_latency --models conv_small,mobilenet_v2_100 \
        --output docs/roofline/latency_int8_cpu.csv [--attention_precision int8]

Protocol (paper Appendix B style): each model (the package's model names: NAME[@H[xW]],
keras:NAME, model_garden:NAME; no size = the model's default) is converted by the exporter
(`tflite.export.convert`, int8 in/out, random calibration images: enough for latency, not for
accuracy) with stand-in weights (`tflite.models.stand_in_statistics`: random init, layer scale ~1,
BN statistics re-estimated on the calibration images; the CSV's `weights` column says so) and timed with `tflite.benchmark.appendix_b`: ai_edge_litert, XNNPACK, `--num_threads`
threads, pinned to `--core`, `--num_runs` invocations per mean, median of `--repeats` means, models
interleaved so that load from other processes falls on all alike. Models without attention are
quantized op for op; in models with attention `--attention_precision` chooses as in
`tflite.export`: float (default: matmuls and softmax stay float so XNNPACK runs them), int8_matmul,
or int8 (every op quantized, the standard recipe). Models slower than `--max_secs / --num_runs` per
call get fewer runs per round (300, 100 or 30; the CSV says how many); each such group is
interleaved within itself. Converted files are kept in `--cache_dir`.
"""

import os
import sys
import time
from typing import List

import numpy as np

from mobilenetv4 import cli, fileio, tables

CSV_FIELDS = (
    "model",
    "family",
    "resolution",
    "latency_ms",
    "round_means_ms",
    "runs_per_round",
    "rounds",
    "tflite_kib",
    "core",
    "attention_precision",
    "weights",
)
RUN_TIERS = (300, 100, 30)
WEIGHTS = "stand-in"  # every model is timed with stand-in weights (`convert_int8`)
DEFAULT_CACHE_DIR = "/tmp/mobilenetv4_roofline_tflite"


def convert_int8(
    model, resolution, attention_precision: str = "float", calibration_steps: int = 8, seed: int = 0
) -> bytes:
    """INT8 TFLite bytes (int8 in/out) via the exporter (`tflite.export.convert`) of `model` with
    stand-in weights (`tflite.models.stand_in_statistics` on the calibration images: the latency
    of a trained-like network, not of degenerate random init); random calibration. `resolution` is
    (H, W) or one int for a square input."""
    from tflite import export, models

    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (calibration_steps, h, w, 3)).astype(np.float32)
    static = export.with_pixel_input(model, "none", (h, w))  # batch 1
    models.stand_in_statistics(static, images)
    return export.convert(
        static, "int8", io="int8", representative=images, attention_precision=attention_precision
    )


def attention_precision_for(spec, attention_precision: str) -> str:
    """Models without attention are always quantized op for op ("int8")."""
    return attention_precision if spec.has_attention else "int8"


def tflite_path(spec, cache_dir: str, attention_precision: str = "int8") -> str:
    suffix = "" if attention_precision == "int8" else f"_attn-{attention_precision}"
    # "_standin": files converted before stand-in weights were the default are not reused
    name = f"{spec.file_label.replace('@', '_')}_int8{suffix}_standin.tflite"
    return os.path.join(cache_dir, name)


def load_or_convert(spec, cache_dir: str, attention_precision: str = "int8") -> str:
    """Path of the model's INT8 .tflite, converting it (written atomically) on first use."""
    path = tflite_path(spec, cache_dir, attention_precision)
    if not os.path.exists(path):
        import tf_keras as keras

        keras.backend.clear_session()
        flatbuffer = convert_int8(spec.build(), spec.resolution, attention_precision)
        fileio.check_writable_dir(cache_dir, flag="--cache_dir")
        fileio.write_bytes(path, flatbuffer)
    return path


def runs_tier(probe_s: float, runs: int, max_secs: float) -> int:
    """Largest of runs, 300, 100, 30 (not above runs) whose round fits in max_secs."""
    tiers = sorted({runs} | {t for t in RUN_TIERS if t < runs}, reverse=True)
    return next((t for t in tiers if t * probe_s <= max_secs), tiers[-1])


def measure(
    specs: List,
    num_runs: int = 1000,
    repeats: int = 5,
    max_secs: float = 20.0,
    cache_dir: str = DEFAULT_CACHE_DIR,
    attention_precision: str = "float",
    num_threads: int = 1,
    warmup_runs: int = 20,
    core="fastest",
    log=print,
) -> List[dict]:
    """Latency rows (see CSV_FIELDS) of `specs` (`tflite.models.resolve` results); timing by
    tflite.benchmark.appendix_b, one interleaved run per group of models that share a
    runs-per-round count."""
    from tflite import benchmark

    paths, tier = {}, {}
    attn = {s.label: attention_precision_for(s, attention_precision) for s in specs}
    for i, spec in enumerate(specs, 1):
        t0 = time.time()
        paths[spec.label] = load_or_convert(spec, cache_dir, attn[spec.label])
        interp = benchmark.prepare(
            paths[spec.label], num_threads=num_threads, xnnpack=True, warmup_runs=3
        )
        probe_s = benchmark.mean_latency_ms(interp, 5) / 1e3
        tier[spec.label] = runs_tier(probe_s, num_runs, max_secs)
        log(
            f"[{i}/{len(specs)}] {spec.label}: ready in {time.time() - t0:.0f}s, "
            f"~{probe_s * 1e3:.2f} ms/call -> {tier[spec.label]} runs per round"
        )
    rows = {}
    for n in sorted(set(tier.values()), reverse=True):
        group = [s for s in specs if tier[s.label] == n]
        log(f"timing {len(group)} model(s) interleaved, {n} runs x {repeats} rounds")
        result = benchmark.appendix_b(
            [paths[s.label] for s in group],
            num_runs=n,
            repeats=repeats,
            num_threads=num_threads,
            warmup_runs=warmup_runs,
            core=core,
            log=log,
        )
        for s, m in zip(group, result["models"]):
            rows[s.label] = dict(
                model=s.display_name,
                family=s.family,
                resolution=s.size_text,
                latency_ms=f"{m['median_ms']:.4f}",
                round_means_ms=" ".join(f"{x:.4f}" for x in m["means_ms"]),
                runs_per_round=n,
                rounds=repeats,
                tflite_kib=f"{os.path.getsize(paths[s.label]) / 1024:.1f}",
                core="" if result["protocol"]["core"] is None else result["protocol"]["core"],
                attention_precision=attn[s.label],
                weights=WEIGHTS,
            )
    return [rows[s.label] for s in specs]


def latency_table(rows) -> tables.Table:
    return tables.Table(CSV_FIELDS, [[row[k] for k in CSV_FIELDS] for row in rows])


def write_csv(rows, path: str) -> None:
    latency_table(rows).write(path, "csv")


def parse_args(argv=None):
    from tflite.export import ATTENTION_PRECISIONS

    p = cli.ArgumentParser("python -m tflite.roofline_latency", __doc__)
    cli.add_models_flag(p, "comma-separated model names, e.g. conv_small,mobilenet_v2_100@224")
    cli.add_output_flags(p, required=True, help="CSV file to write")
    cli.add_protocol_flags(p)
    cli.add_number_flag(
        p,
        "--max_secs",
        20.0,
        "cap on one model's time per round; slow models get fewer runs",
        type=cli.positive_float,
    )
    p.add_argument(
        "--attention_precision",
        choices=ATTENTION_PRECISIONS,
        default="float",
        help="models with attention: float (default; matmuls and softmax stay float, "
        "as tflite.export does), int8_matmul, or int8 (every op quantized)",
    )
    p.add_argument(
        "--cache_dir",
        default=DEFAULT_CACHE_DIR,
        help="where converted .tflite files are kept between runs",
    )
    for old, new in (
        ("--out", "--output"),
        ("--runs", "--num_runs"),
        ("--max-secs", "--max_secs"),
        ("--attention-precision", "--attention_precision"),
        ("--cache-dir", "--cache_dir"),
    ):
        p.add_alias(old, new)
    return p.parse_args(argv)


def main(argv=None) -> int:
    from tflite import models

    args = parse_args(argv)
    old = os.environ.pop("MOBILENETV4_DEPRECATED_COMMAND", None)  # set by the old module's alias
    if old:
        print(
            f"warning: {old} is deprecated and will be removed in the next release; use "
            "python -m tflite.roofline_latency",
            file=sys.stderr,
            flush=True,
        )
    specs = models.parse_list(args.models)
    fileio.check_outputs([args.output], overwrite=args.overwrite)
    fileio.check_writable_dir(args.cache_dir, flag="--cache_dir")
    rows = measure(
        specs,
        max_secs=args.max_secs,
        cache_dir=args.cache_dir,
        attention_precision=args.attention_precision,
        log=lambda m: print(m, flush=True),
        **cli.protocol_options(args),
    )
    write_csv(rows, args.output)
    print(f"load average at end: {os.getloadavg()}; wrote {args.output}")
    print(
        tables.Table(
            ["model", "resolution", "latency (ms)"],
            [[r["model"], r["resolution"], r["latency_ms"]] for r in rows],
        ).text(),
        end="",
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
