"""Appendix B benchmark protocol: about 1000 invocations, their mean, repeated 5 times, median of
the means; pinned to the fastest core, XNNPACK, 1 thread.

    python -m tflite.benchmark MODEL.tflite [MODEL2.tflite ...] [--json [PATH]] [--table PREFIX]
    python -m tflite.benchmark MODEL.tflite --adb --benchmark_binary benchmark_model --delegate gpu

Several models are measured interleaved (repeat r of every model before repeat r+1 of any), so
drift in machine load hits all of them alike. `--table PREFIX` writes PREFIX.md and PREFIX.csv
in the shape of paper Table 6.
"""
import argparse
import csv
import json
import os
import statistics
import sys
import time

import numpy as np

from tflite import ToolError, cpu, exit_on_tool_error, runtime


def mean_latency_ms(interp, num_runs: int) -> float:
    """Mean wall time of `num_runs` back-to-back invoke() calls (inputs set once, as benchmark_model)."""
    start = time.perf_counter()
    for _ in range(num_runs):
        interp.invoke()
    return (time.perf_counter() - start) * 1000.0 / num_runs


def prepare(path: str, *, num_threads: int, xnnpack: bool, warmup_runs: int, seed: int = 0):
    interp = runtime.load_interpreter(path, num_threads=num_threads, xnnpack=xnnpack)
    rng = np.random.default_rng(seed)
    for detail in interp.get_input_details():
        interp.set_tensor(detail["index"], runtime.random_input(detail, rng))
    for _ in range(warmup_runs):
        interp.invoke()
    return interp


def appendix_b(paths: list[str], *, num_runs: int = 1000, repeats: int = 5, num_threads: int = 1,
               xnnpack: bool = True, warmup_runs: int = 20, core: int | str = "fastest",
               log=print) -> dict:
    """Runs the protocol on every model, interleaved; returns the JSON-able result."""
    if num_runs < 1 or repeats < 1:
        raise ToolError("--num_runs and --repeats must be at least 1")
    if core == "none":
        choice = None
        log("core: not pinned (--core none)")
    else:
        choice = (cpu.fastest_core() if core == "fastest"
                  else cpu.CoreChoice(int(core), None, f"cpu{core} requested with --core"))
        cpu.pin_to_core(choice.core)  # before building interpreters: their threads inherit it
        log(f"core: pinned to cpu{choice.core} ({choice.reason})")
    interps = {p: prepare(p, num_threads=num_threads, xnnpack=xnnpack, warmup_runs=warmup_runs)
               for p in paths}
    means = {p: [] for p in paths}
    for r in range(repeats):
        for p, interp in interps.items():
            means[p].append(mean_latency_ms(interp, num_runs))
        log(f"repeat {r + 1}/{repeats}: " + ", ".join(
            f"{os.path.basename(p)} {means[p][-1]:.3f} ms" for p in paths))
    protocol = {"num_runs": num_runs, "repeats": repeats, "warmup_runs": warmup_runs,
                "num_threads": num_threads, "xnnpack": xnnpack, "interleaved": len(paths) > 1,
                "core": None if choice is None else choice.core,
                "core_reason": None if choice is None else choice.reason,
                "statistic": "median over repeats of the mean over num_runs invocations"}
    return {"protocol": protocol,
            "models": [{"model": p, "median_ms": statistics.median(means[p]), "means_ms": means[p]}
                       for p in paths]}


TABLE_COLUMNS = ["Model", "Precision", "Params (M)", "MACs (G)", "Size (MiB)", "CPU latency (ms)"]


def table_rows(result: dict) -> list[list[str]]:
    """Rows in the shape of paper Table 6 (its per-device latency columns become this CPU)."""
    from tflite import analysis  # graph stats need only the runtime
    rows = []
    for m in result["models"]:
        stats = analysis.graph_stats(m["model"])
        rows.append([os.path.splitext(os.path.basename(m["model"]))[0], stats.precision,
                     f"{stats.params / 1e6:.2f}", f"{stats.macs / 1e9:.3f}",
                     f"{stats.size_bytes / 2**20:.2f}", f"{m['median_ms']:.3f}"])
    return rows


def protocol_line(protocol: dict) -> str:
    if protocol.get("delegate"):
        return (f"Protocol (paper Appendix B) on Android device {protocol['device']}: benchmark_model "
                f"--num_runs={protocol['num_runs']} --min_secs=0, median of {protocol['repeats']} "
                f"'Inference (avg)', {protocol['delegate']} delegate, {protocol['num_threads']} thread(s), "
                f"taskset to cpu{protocol['core']} ({protocol['core_reason']}).")
    where = "not pinned" if protocol["core"] is None else f"pinned to cpu{protocol['core']} ({protocol['core_reason']})"
    return (f"Protocol (paper Appendix B): {protocol['num_runs']} invocations per mean, median of "
            f"{protocol['repeats']} means, {protocol['num_threads']} thread(s), "
            f"{'XNNPACK' if protocol['xnnpack'] else 'builtin kernels'}, {where}"
            + (", models interleaved" if protocol.get("interleaved") else "") + ".")


def write_table(result: dict, prefix: str) -> tuple[str, str]:
    rows = table_rows(result)
    md, csv_path = prefix + ".md", prefix + ".csv"
    for path in (md, csv_path):
        _check_writable(path)
    with open(md, "w") as f:
        f.write("| " + " | ".join(TABLE_COLUMNS) + " |\n|" + "---|" * len(TABLE_COLUMNS) + "\n")
        for row in rows:
            f.write("| " + " | ".join(row) + " |\n")
        f.write("\n" + protocol_line(result["protocol"]) + "\n")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TABLE_COLUMNS)
        w.writerows(rows)
    return md, csv_path


def add_protocol_flags(p: argparse.ArgumentParser) -> None:
    """The Appendix B knobs shared by every script that times models."""
    p.add_argument("--num_runs", type=int, default=1000, help="invocations per mean (default 1000)")
    p.add_argument("--repeats", type=int, default=5, help="means per model; the median is reported")
    p.add_argument("--core", default="fastest",
                   help="'fastest' (highest cpuinfo_max_freq), a core index, or 'none' to not pin")


def make_out_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise ToolError(f"cannot write to output directory {path}")
    return path


def _check_writable(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ToolError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ToolError(f"cannot write {path}: permission denied; choose another output path")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tflite.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help=".tflite files")
    add_protocol_flags(p)
    p.add_argument("--warmup_runs", type=int, default=20)
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--no_xnnpack", action="store_true", help="builtin kernels instead of XNNPACK")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="write the result as JSON to PATH, or to stdout when no PATH is given")
    p.add_argument("--table", metavar="PREFIX", help="write PREFIX.md and PREFIX.csv (Table 6 shape)")
    a = p.add_argument_group("Android (--adb); untested on a real device")
    a.add_argument("--adb", action="store_true", help="run on an Android device with benchmark_model")
    a.add_argument("--adb_path", default="adb")
    a.add_argument("--serial", default=None)
    a.add_argument("--delegate", default="cpu", choices=["cpu", "gpu", "hexagon", "nnapi"])
    a.add_argument("--benchmark_binary", default="benchmark_model",
                   help="local path of an Android arm64 benchmark_model build to push")
    a.add_argument("--push", nargs="*", default=[], help="extra files to push (e.g. Hexagon libraries)")
    args = p.parse_args(argv)
    if not args.adb and (args.delegate != "cpu" or args.serial):
        p.error("--delegate and --serial apply to --adb runs only")
    return args


@exit_on_tool_error
def main(argv=None):
    args = parse_args(argv)
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json == "-" else print
    for path in (args.json, args.table and args.table + ".md"):
        if path and path != "-":
            _check_writable(path)
    if args.adb:
        from tflite import adb
        runner = adb.AdbBenchmark(binary=args.benchmark_binary, adb=args.adb_path, serial=args.serial,
                                  delegate=args.delegate, num_runs=args.num_runs, repeats=args.repeats,
                                  num_threads=args.num_threads, extra_files=tuple(args.push), log=log)
        models = []
        for path in args.models:
            log(f"{path}:")
            models.append(runner.run(path))
        result = {"protocol": {"num_runs": args.num_runs, "repeats": args.repeats,
                               "num_threads": args.num_threads, "device": args.serial or "default",
                               "delegate": args.delegate, "core": models[0]["core"],
                               "core_reason": models[0]["core_reason"], "xnnpack": args.delegate == "cpu",
                               "statistic": "median over repeats of benchmark_model's Inference (avg)"},
                  "models": models}
    else:
        for path in args.models:
            runtime.read_model(path)  # fail fast on a missing or corrupt file
        result = appendix_b(args.models, num_runs=args.num_runs, repeats=args.repeats,
                            num_threads=args.num_threads, xnnpack=not args.no_xnnpack,
                            warmup_runs=args.warmup_runs, core=args.core, log=log)
    log("")
    log("| model | median (ms) | means (ms) |\n|---|---|---|")
    for m in result["models"]:
        log(f"| {m['model']} | {m['median_ms']:.3f} | {', '.join(f'{x:.3f}' for x in m['means_ms'])} |")
    log(protocol_line(result["protocol"]))
    if args.table:
        md, csv_path = write_table(result, args.table)
        log(f"wrote {md} and {csv_path}")
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        log(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
