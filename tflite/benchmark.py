"""Appendix B benchmark protocol: about 1000 invocations, their mean, repeated 5 times, median of
the means; pinned to the fastest core, XNNPACK, 1 thread.

    python -m tflite.benchmark MODEL.tflite [MODEL2.tflite ...] [--json] [--output t6.md,t6.csv,r.json]
    python -m tflite.benchmark MODEL.tflite --adb --benchmark_binary benchmark_model --delegate gpu

Several models are measured interleaved (repeat r of every model before repeat r+1 of any), so
drift in machine load hits all of them alike. `--output` writes the result in the format each file's
suffix names: .json (protocol and every mean), .md / .csv (the shape of paper Table 6); `--json`
prints the JSON result to stdout. Existing outputs are refused unless `--overwrite`.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from mobilenetv4 import cli, fileio, tables
from mobilenetv4.cli import UserError
from tflite import adb, cpu, runtime


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


def appendix_b(
    paths: list[str],
    *,
    num_runs: int = 1000,
    repeats: int = 5,
    num_threads: int = 1,
    xnnpack: bool = True,
    warmup_runs: int = 20,
    core: int | str = "fastest",
    log=print,
    prepare=prepare,
) -> dict:
    """Runs the protocol on every model, interleaved; returns the JSON-able result. `prepare` loads
    one model and warms it up (an object with `invoke()`: an interpreter, or an accelerator's
    `tflite.accelerators.Runner`)."""
    if num_runs < 1 or repeats < 1 or num_threads < 1:
        raise UserError("--num_runs, --repeats and --num_threads must be at least 1")
    if core == "none":
        choice = None
        log("core: not pinned (--core none)")
    else:
        choice = (
            cpu.fastest_core()
            if core == "fastest"
            else cpu.CoreChoice(int(core), None, f"cpu{core} requested with --core")
        )
        cpu.pin_to_core(choice.core)  # before building interpreters: their threads inherit it
        log(f"core: pinned to cpu{choice.core} ({choice.reason})")
    interps = {
        p: prepare(p, num_threads=num_threads, xnnpack=xnnpack, warmup_runs=warmup_runs)
        for p in paths
    }
    means = {p: [] for p in paths}
    for r in range(repeats):
        for p, interp in interps.items():
            means[p].append(mean_latency_ms(interp, num_runs))
        log(
            f"repeat {r + 1}/{repeats}: "
            + ", ".join(f"{os.path.basename(p)} {means[p][-1]:.3f} ms" for p in paths)
        )
    protocol = {
        "num_runs": num_runs,
        "repeats": repeats,
        "warmup_runs": warmup_runs,
        "num_threads": num_threads,
        "xnnpack": xnnpack,
        "interleaved": len(paths) > 1,
        "core": None if choice is None else choice.core,
        "core_reason": None if choice is None else choice.reason,
        "statistic": "median over repeats of the mean over num_runs invocations",
    }
    return {
        "protocol": protocol,
        "models": [
            {"model": p, "median_ms": statistics.median(means[p]), "means_ms": means[p]}
            for p in paths
        ],
    }


TABLE_COLUMNS = ["Model", "Precision", "Params (M)", "MACs (G)", "Size (MiB)", "CPU latency (ms)"]
OUTPUT_FORMATS = {".json": "json", ".md": "markdown", ".csv": "csv"}


def table_rows(result: dict) -> list[list[str]]:
    """Rows in the shape of paper Table 6 (its per-device latency columns become this CPU)."""
    from tflite import analysis  # graph stats need only the runtime

    rows = []
    for m in result["models"]:
        stats = analysis.graph_stats(m["model"])
        rows.append(
            [
                os.path.splitext(os.path.basename(m["model"]))[0],
                stats.precision,
                f"{stats.params / 1e6:.2f}",
                f"{stats.macs / 1e9:.3f}",
                f"{stats.size_bytes / 2**20:.2f}",
                f"{m['median_ms']:.3f}",
            ]
        )
    return rows


def protocol_line(protocol: dict) -> str:
    if protocol.get("delegate"):
        return (
            f"Protocol (paper Appendix B) on Android device {protocol['device']}: benchmark_model "
            f"--num_runs={protocol['num_runs']} --min_secs=0, median of {protocol['repeats']} "
            f"'Inference (avg)', {protocol['delegate']} delegate, {protocol['num_threads']} thread(s), "
            f"taskset to cpu{protocol['core']} ({protocol['core_reason']})."
        )
    where = (
        "not pinned"
        if protocol["core"] is None
        else f"pinned to cpu{protocol['core']} ({protocol['core_reason']})"
    )
    return (
        f"Protocol (paper Appendix B): {protocol['num_runs']} invocations per mean, median of "
        f"{protocol['repeats']} means, {protocol['num_threads']} thread(s), "
        f"{'XNNPACK' if protocol['xnnpack'] else 'builtin kernels'}, {where}"
        + (", models interleaved" if protocol.get("interleaved") else "")
        + "."
    )


def table6(result: dict) -> tables.Table:
    return tables.Table(TABLE_COLUMNS, table_rows(result))


def write_outputs(result: dict, outputs: list[str]) -> None:
    """Each output in the format its suffix names: .json the result, .md / .csv the Table 6 table
    (Markdown with the protocol line under it)."""
    table = None
    for path in outputs:
        fmt = output_format(path)
        if fmt == "json":
            fileio.write_json(path, result)
            continue
        table = table or table6(result)
        text = table.render(fmt)
        if fmt == "markdown":
            text += "\n" + protocol_line(result["protocol"]) + "\n"
        fileio.write_text(path, text)


def output_format(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in OUTPUT_FORMATS:
        raise UserError(
            f"--output {path}: unknown format {suffix or '(no suffix)'!r}; name a "
            ".json (result), .md or .csv (Table 6) file"
        )
    return OUTPUT_FORMATS[suffix]


def median_table(result: dict) -> tables.Table:
    return tables.Table(
        ["model", "median (ms)", "means (ms)"],
        [
            [m["model"], f"{m['median_ms']:.3f}", ", ".join(f"{x:.3f}" for x in m["means_ms"])]
            for m in result["models"]
        ],
    )


def report_tool_parser(prog: str, doc: str, default_dir: str, reports: tuple[str, ...]):
    """The command line shared by the tools that convert models into a folder, time them with the
    protocol and write reports there (compare_model_garden, ablations): --output_dir (old
    spelling --out_dir), --overwrite and the protocol flags."""
    p = cli.ArgumentParser(prog, doc)
    cli.add_output_flags(
        p,
        kind="dir",
        default=default_dir,
        help=f"folder for the .tflite files and {' / '.join(reports)} (default {default_dir})",
    )
    p.add_alias("--out_dir", "--output_dir")
    cli.add_protocol_flags(p)
    return p


def report_paths(args, reports: tuple[str, ...]) -> list[str]:
    """OUTPUT_DIR/<report> for each report, after checking the folder is writable and that no
    report exists unless --overwrite (before any work)."""
    fileio.check_writable_dir(args.output_dir)
    paths = [os.path.join(args.output_dir, name) for name in reports]
    fileio.check_outputs(paths, overwrite=args.overwrite)
    return paths


def parse_args(argv=None):
    p = cli.ArgumentParser("python -m tflite.benchmark", __doc__)
    p.add_argument("models", nargs="+", help=".tflite files")
    cli.add_protocol_flags(p)
    p.add_argument("--no_xnnpack", action="store_true", help="builtin kernels instead of XNNPACK")
    p.add_argument(
        "--output",
        type=cli.comma_list,
        default=[],
        metavar="FILE[,FILE]",
        help="write the result: .json (protocol and every mean), .md / .csv (Table 6 "
        "shape); comma-separated for several",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (refused otherwise)"
    )
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="print the result as JSON to stdout (--json PATH is deprecated: use "
        "--output PATH.json)",
    )
    p.add_argument("--table", metavar="PREFIX", help=argparse.SUPPRESS)  # deprecated
    adb.add_flags(p)
    accelerator = p.add_argument_group("accelerators (LiteRT's CompiledModel on this machine)")
    accelerator.add_argument(
        "--accelerator",
        default=None,
        help="cpu, gpu or npu: run through LiteRT's CompiledModel on that accelerator, report "
        "whether every op is on it, the first-run compile time and the SQNR against the CPU "
        "(XNNPACK) run (tflite.accelerators); with --adb: cpu, gpu, npu, hexagon or nnapi, "
        "passed to benchmark_model",
    )
    accelerator.add_argument(
        "--check_images",
        default="sklearn_digits",
        help="real images for the --accelerator check (a tflite.calibration source; default "
        "sklearn_digits, offline), or 'none' to skip it",
    )
    args = p.parse_args(argv)
    if args.accelerator is not None:
        from tflite import accelerators

        accelerators.check_accelerator_flag(args, p)
    adb.check_flags(args, p)
    args.json_file = None  # the deprecated --json PATH: JSON whatever the suffix
    if args.json not in (None, "-"):
        print(
            "warning: --json PATH is deprecated and will be removed in the next release; use "
            "--output PATH.json",
            file=sys.stderr,
        )
        args.json_file, args.json = args.json, None
    if args.table:
        print(
            f"warning: --table is deprecated and will be removed in the next release; use "
            f"--output {args.table}.md,{args.table}.csv",
            file=sys.stderr,
        )
        args.output = [*args.output, args.table + ".md", args.table + ".csv"]
    for path in args.output:
        output_format(path)
    return args


def main(argv=None):
    args = parse_args(argv)
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json == "-" else print
    outputs = [*args.output, *([args.json_file] if args.json_file else [])]
    fileio.check_outputs(outputs, inputs=args.models, overwrite=args.overwrite)
    if args.adb:
        protocol = adb.device_protocol(args)
        runner = adb.runner(args, log)
        models = []
        for path in args.models:
            log(f"{path}:")
            models.append(runner.run(path))
        result = {
            "protocol": {
                **protocol,
                "device": args.serial or "default",
                "delegate": args.delegate,
                "core": models[0]["core"],
                "core_reason": models[0]["core_reason"],
                "xnnpack": args.delegate == "cpu",
                "statistic": "median over repeats of benchmark_model's Inference (avg)",
            },
            "models": models,
        }
    elif args.accelerator:
        from tflite import accelerators

        result = accelerators.benchmark_cli(args, log)
    else:
        for path in args.models:
            runtime.read_model(path)  # fail fast on a missing or corrupt file
        result = appendix_b(
            args.models, xnnpack=not args.no_xnnpack, log=log, **cli.protocol_options(args)
        )
    log("")
    log(median_table(result).markdown() + protocol_line(result["protocol"]))
    if args.output:
        write_outputs(result, args.output)
    if args.json_file:
        fileio.write_json(args.json_file, result)
    if outputs:
        log(f"wrote {', '.join(outputs)}")
    if args.json == "-":
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    cli.run(main)
