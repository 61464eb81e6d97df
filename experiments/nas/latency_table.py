r"""Measured-latency cost model: every candidate block benchmarked once, cached, summed.

    python -m experiments.nas.latency_table --space quickstart --stage one_stage \
        --table /tmp/nas_latency.json --num_runs 100 --repeats 3
    python -m experiments.nas.latency_table --space quickstart --table /tmp/nas_latency.json \
        --validate 20 --report /tmp/nas_latency_check.json

A row of the table is one block of the network (the stem, a block row of specs at its input shape,
or the head: head conv + pool + 1x1 1280 + classifier) built alone as a small Keras graph,
converted to TFLite (`tflite.export.convert`; fp32 by default, `--precision int8` with random
calibration as `tflite.roofline_latency`) and timed with the Appendix B protocol
(`tflite.benchmark.appendix_b`: XNNPACK, 1 thread, pinned core, median of `--repeats` means of
`--num_runs` calls). An architecture's latency is the sum of its rows. The table file (JSON,
written atomically after every batch, so a killed run keeps what it measured) records the device
and the input resolution; loading it for another device or resolution is refused.
With `--adb` every row is timed on an Android phone instead, by LiteRT's `benchmark_model` pushed
through adb (`tflite.adb`: fastest core, `--num_runs` per mean, median of `--repeats`; `--delegate`
gpu/hexagon/nnapi), and the table records `android:SERIAL:DELEGATE`:

    python -m experiments.nas.latency_table --space quickstart --table /tmp/pixel6_cpu.json \
        --adb --serial SERIAL --benchmark_binary ./benchmark_model
`--validate N` samples N architectures of the space, times each whole network the same way and
reports the Spearman rank correlation and the mean relative error of the table's sum.
"""

import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time

from experiments.nas import read_json
from mobilenetv4 import cli, fileio, search_space, spec_costs, specs
from mobilenetv4.cli import UserError
from tflite import adb

FORMAT = 1


def host_device():
    """A name for this host's CPU ("host:<cpu model>")."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"host:{model}"


def row_key(layer_name, row, h, w, cin, classes):
    """Table key of one block at its input shape (the head's includes the class count).

    Args:
      layer_name: "stem", "head_conv" or a stage block name (only its kind matters).
      row: the block's spec row.
      h: input height.
      w: input width.
      cin: input channels.
      classes: classifier outputs (head only).
    """
    fields = ",".join(f"{k}={v}" for k, v in sorted(vars(row).items()))
    part = "head" if layer_name == "head_conv" else ("stem" if layer_name == "stem" else "block")
    extra = f"|classes={classes}" if part == "head" else ""
    return f"{part}|{type(row).__name__}({fields})|{h}x{w}x{cin}{extra}"


def architecture_rows(arch, input_size, classes):
    """(key, layer name, row, (h, w, cin)) of every table row of `arch`, in order.

    Args:
      arch: a conv `specs.Architecture`.
      input_size: square input resolution.
      classes: classifier outputs.
    """
    h = w = input_size
    c = 3
    out = []
    for name, row, _ in spec_costs.block_groups(arch):
        out.append((row_key(name, row, h, w, c, classes), name, row, (h, w, c)))
        _, h, w, c = spec_costs.block_ops(row, name, h, w, c)
    return out


class LatencyTableCost:
    """Sum of the table's rows over an architecture (ms)."""

    name = "latency"
    unit = "ms"

    def __init__(self, table):
        self.table = table
        self.entries = table["entries"]
        self.input_size = int(table["input_size"])
        self.classes = int(table["classes"])

    def __call__(self, arch) -> float:
        total = 0.0
        for key, *_ in architecture_rows(arch, self.input_size, self.classes):
            if key not in self.entries:
                raise UserError(
                    f"latency table has no row {key}; measure the space with "
                    "python -m experiments.nas.latency_table"
                )
            total += self.entries[key]
        return total


def load(path, input_size=None, device=None):
    """A latency table, checked against the resolution and device it will be used for.

    Args:
      path: the table's JSON file.
      input_size: the search's resolution (None: any).
      device: the search's device (None: any).
    """
    table = read_json(path, "latency table")
    if not isinstance(table, dict) or "entries" not in table or "device" not in table:
        raise UserError(f"{path} is not a latency table (no device / entries)")
    if input_size is not None and int(table["input_size"]) != int(input_size):
        raise UserError(
            f"latency table {path} was measured at {table['input_size']} px, the search runs at "
            f"{input_size} px; measure a table at {input_size} px"
        )
    if device is not None and table["device"] != device:
        raise UserError(
            f"latency table {path} was measured on {table['device']!r}, not {device!r}; "
            "measure a table on this device"
        )
    return table


def candidate_architectures(space, count, seed=0):
    """`count` architectures sampled uniformly from the space's searched decisions.

    Args:
      space: a SearchSpace.
      count: how many.
      seed: random seed.
    """
    rng = random.Random(seed)
    out = []
    for i in range(count):
        values = {d.name: rng.choice(d.choices) for d in space.decisions}
        out.append(space.decode(values, name=f"sample{i}"))
    return out


def space_rows(space, input_size, classes):
    """Every distinct table row any architecture of the space can contain (enumerated per
    block position over its width, kernel and expansion choices).

    Args:
      space: a SearchSpace.
      input_size: square resolution.
      classes: classifier outputs.
    """
    decisions = {d.name: d for d in space.decisions}

    def options(name):
        return decisions[name].choices if name in decisions else (space.values()[name],)

    rows = {}
    archs = []
    base = space.values()
    # Vary each position's choices with every width the block's input and output can take.
    width_names = [n for n in base if n.endswith("/width")]
    import itertools  # pylint: disable=g-import-not-at-top

    width_combos = list(itertools.product(*(options(n) for n in width_names)))
    for widths in width_combos:
        v = dict(base)
        v.update(zip(width_names, widths))
        block_names = sorted({n.rsplit("/", 1)[0] for n in base if "/block" in n})
        fused = [n for n in base if "/block" not in n and n.endswith("/expand")]
        for fe in itertools.product(*(options(n) for n in fused)):
            v.update(zip(fused, fe))
            for block in block_names:
                for sd in options(f"{block}/start_dw"):
                    for md in options(f"{block}/middle_dw"):
                        for e in options(f"{block}/expand"):
                            trial = {
                                **v,
                                f"{block}/start_dw": sd,
                                f"{block}/middle_dw": md,
                                f"{block}/expand": e,
                            }
                            archs.append(space.decode(trial))
    for arch in archs:
        for key, name, row, shape in architecture_rows(arch, input_size, classes):
            rows.setdefault(key, (name, row, shape))
    return rows


def _graph(name, row, shape, classes):
    """A small Keras model of one table row."""
    import tf_keras as keras  # pylint: disable=g-import-not-at-top

    from mobilenetv4 import builder  # pylint: disable=g-import-not-at-top
    from mobilenetv4 import layers as L  # pylint: disable=g-import-not-at-top

    arch = specs.CONV_MEDIUM
    inputs = keras.Input(shape=shape, batch_size=1)
    common = dict(padding="same", bn_momentum=0.99, bn_epsilon=1e-5, kernel_regularizer=None)
    x = builder._block_layer(  # pylint: disable=protected-access
        row,
        name,
        width=lambda f: f,
        act="relu",
        drop=0.0,
        arch=arch,
        attention_type="mobile_mqa",
        common=common,
    )(inputs)
    if name == "head_conv":
        x = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = L.ConvBN(filters=1280, kernel_size=1, activation="relu", name="head", **common)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, x)


def to_tflite(model, precision):
    """TFLite bytes of a batch-1 float-input model (fp32, or int8 with random calibration)."""
    if precision == "int8":
        from tflite import roofline_latency  # pylint: disable=g-import-not-at-top

        return roofline_latency.convert_int8(model, tuple(model.inputs[0].shape[1:3]), "int8")
    from tflite import export  # pylint: disable=g-import-not-at-top

    return export.convert(model, precision)


def _benchmark(paths, protocol, log, device_runner=None):
    """Median-of-means ms per graph: interleaved on this host (appendix_b), or one graph after
    another on an Android device (`device_runner`: a tflite.adb.AdbBenchmark)."""
    if device_runner is not None:
        return [device_runner.run(path)["median_ms"] for path in paths]
    from tflite import benchmark  # pylint: disable=g-import-not-at-top

    result = benchmark.appendix_b(paths, log=lambda *_: None, **protocol)
    return [m["median_ms"] for m in result["models"]]


def measure(
    output,
    rows,
    *,
    input_size,
    classes,
    device,
    precision="fp32",
    protocol=None,
    batch=16,
    log=print,
    device_runner=None,
):
    """Measures the rows missing from the table at `output` (created if absent); returns it.

    Args:
      output: the table's JSON path (read if it exists; written atomically after each batch).
      rows: key -> (layer name, row, input shape), e.g. from `space_rows`.
      input_size: the architectures' resolution (recorded; a table is for one resolution).
      classes: classifier outputs.
      device: the device name recorded in the table.
      precision: fp32 or int8.
      protocol: appendix_b keyword arguments (num_runs, repeats, warmup_runs, num_threads, core).
      batch: rows timed interleaved per appendix_b call.
      log: progress printer.
      device_runner: a tflite.adb.AdbBenchmark to time the rows on an Android device instead.
    """
    import tf_keras as keras  # pylint: disable=g-import-not-at-top

    protocol = dict(protocol or {})
    if os.path.exists(output):
        table = load(output, input_size=input_size, device=device)
    else:
        table = {
            "format": FORMAT,
            "device": device,
            "input_size": int(input_size),
            "classes": int(classes),
            "precision": precision,
            "protocol": protocol,
            "entries": {},
        }
    missing = [k for k in rows if k not in table["entries"]]
    log(f"{len(rows)} rows, {len(missing)} to measure")
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, len(missing), batch):
            keys = missing[start : start + batch]
            t0 = time.time()
            paths = []
            for i, key in enumerate(keys):
                keras.backend.clear_session()
                name, row, shape = rows[key]
                path = os.path.join(tmp, f"row{start + i}.tflite")
                fileio.write_bytes(path, to_tflite(_graph(name, row, shape, classes), precision))
                paths.append(path)
            for key, ms in zip(keys, _benchmark(paths, protocol, log, device_runner)):
                table["entries"][key] = ms
            fileio.write_json(output, table)
            log(f"measured {start + len(keys)}/{len(missing)} rows ({time.time() - t0:.0f}s)")
    return table


def spearman(a, b):
    """Spearman rank correlation of two equal-length sequences (ties get mean ranks)."""

    def ranks(x):
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0.0] * len(x)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2.0
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else 0.0


def validate(table, archs, *, precision="fp32", protocol=None, log=print, device_runner=None):
    """Times whole architectures and compares with the table's sums.

    Args:
      table: a loaded latency table.
      archs: conv architectures at the table's resolution.
      precision: fp32 or int8 (as the table).
      protocol: appendix_b keyword arguments.
      log: progress printer.
      device_runner: a tflite.adb.AdbBenchmark to time them on an Android device instead.

    Returns:
      dict with per-architecture predicted and measured ms, Spearman and mean relative error.
    """
    import tf_keras as keras  # pylint: disable=g-import-not-at-top

    from mobilenetv4 import builder  # pylint: disable=g-import-not-at-top

    cost = LatencyTableCost(table)
    size = cost.input_size
    paths, predicted = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, arch in enumerate(archs):
            keras.backend.clear_session()
            model = builder.build_model(arch, input_shape=(size, size, 3), classes=cost.classes)
            inputs = keras.Input((size, size, 3), batch_size=1)
            static = keras.Model(inputs, model(inputs, training=False))
            path = os.path.join(tmp, f"arch{i}.tflite")
            fileio.write_bytes(path, to_tflite(static, precision))
            paths.append(path)
            predicted.append(cost(arch))
        measured = _benchmark(paths, dict(protocol or {}), log, device_runner)
    mre = statistics.mean(abs(p - m) / m for p, m in zip(predicted, measured))
    return {
        "samples": len(archs),
        "spearman": spearman(predicted, measured),
        "mean_relative_error": mre,
        "mean_ratio_sum_over_measured": statistics.mean(p / m for p, m in zip(predicted, measured)),
        "predicted_ms": predicted,
        "measured_ms": measured,
        "architectures": [search_space.architecture_to_dict(a) for a in archs],
    }


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        prog="python -m experiments.nas.latency_table",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--space", default="quickstart", help="search space name")
    parser.add_argument("--stage", default="one_stage", help="coarse, fine or one_stage")
    parser.add_argument(
        "--table", required=True, help="the table (JSON): a cache, read and extended in place"
    )
    parser.add_argument("--input_size", type=int, default=None, help="default: the space's")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument(
        "--device",
        default=None,
        help="device name recorded (default: this CPU, or android:SERIAL:DELEGATE with --adb)",
    )
    parser.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    parser.add_argument("--validate", type=int, default=0, help="sampled whole architectures")
    parser.add_argument("--report", default=None, help="JSON file for the --validate result")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --report")
    cli.add_protocol_flags(parser)
    adb.add_flags(parser)
    args = parser.parse_args(argv)
    adb.check_flags(args, parser)
    return args


def main(argv=None):
    args = parse_args(argv)
    space = search_space.get(args.space, args.stage)
    size = args.input_size or space.default_size
    if args.adb:  # every row timed on the phone by benchmark_model (tflite.adb)
        device = args.device or f"android:{args.serial or 'default'}:{args.delegate}"
        protocol, device_runner = adb.device_protocol(args), adb.runner(args)
    else:
        device, protocol, device_runner = (
            args.device or host_device(),
            cli.protocol_options(args),
            None,
        )
    if args.report:
        fileio.check_outputs([args.report], overwrite=args.overwrite, flag="--report")
    rows = space_rows(space, size, args.classes)
    table = measure(
        args.table,
        rows,
        input_size=size,
        classes=args.classes,
        device=device,
        precision=args.precision,
        protocol=protocol,
        device_runner=device_runner,
    )
    if args.validate:
        report = validate(
            table,
            candidate_architectures(space, args.validate, seed=1),
            precision=args.precision,
            protocol=protocol,
            device_runner=device_runner,
        )
        summary = {k: v for k, v in report.items() if k != "architectures"}
        print(json.dumps(summary, indent=2))
        if args.report:
            fileio.write_json(args.report, {**report, "protocol": protocol, "device": device})
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
