r"""The architecture a search found, in the layout of the paper's Tables 11-15, with its costs.

    python -m experiments.nas.analyze /tmp/nas_quickstart
    python -m experiments.nas.analyze /tmp/nas_quickstart --output /tmp/nas_found.json
    python -m experiments.nas.analyze /tmp/nas_quickstart --format markdown --output found.py

DIR is a search's model dir (or its architecture.json). Prints one row per block (input, block
kind, DW K1, DW K2, expanded dim, output dim, stride, params, MACs: `mobilenetv4.summary`'s table of
the built classifier), then the parameters, the MACs and the cost under each cost model: MACs, the
roofline (Eq. 1, MAC-equivalents) at ridge points 0 (CPU-like) and 400 (EdgeTPU/DSP-like, paper
Table 16) and at the search's own ridge point, and the measured latency table's sum when the
search used one (or `--latency_table FILE`), next to the search's targets.

`--output FILE.json` writes the architecture as a JSON spec (the `architecture` of
`mobilenetv4.search_space.architecture_to_dict`, with the costs) that
`mobilenetv4.create_model(architecture=FILE)` builds and `experiments.train` trains with one binding
(`nas_model.architecture = 'FILE'`, gin_configs/nas_train_found.gin); `--output FILE.py` writes it as
Python (`ARCHITECTURE = Architecture(...)`). Exit codes: 0 done; 2 a user error (a missing or
unfinished search dir, a malformed architecture.json, an existing output without --overwrite).
"""

import os

from experiments.nas import cost_models, read_json
from mobilenetv4 import build_record, cli, fileio, search_space, spec_costs
from mobilenetv4.cli import UserError

ARCHITECTURE_FILE = (
    "architecture.json"  # what experiments.nas.search writes (tunas.ARCHITECTURE_FILE)
)
RIDGE_POINTS = (0.0, 400.0)  # paper Table 16: MAC-bound CPUs and memory-bound EdgeTPU/DSPs


def find_result(path):
    """(architecture.json path, its summary dict) of a search dir or file; UserError otherwise."""
    if os.path.isdir(path):
        found = os.path.join(path, ARCHITECTURE_FILE)
        if not os.path.exists(found):
            stages = sorted(
                f[:-5]
                for f in os.listdir(path)
                if f in ("coarse.json", "fine.json", "one_stage.json")
            )
            done = f" (finished stages: {', '.join(stages)})" if stages else ""
            raise UserError(
                f"{path} holds no {ARCHITECTURE_FILE}: not a finished search{done}; rerun "
                "python -m experiments.nas.search with its --model_dir to finish it"
            )
        path = found
    elif not os.path.exists(path):
        raise UserError(f"{path} does not exist; give a search's --model_dir")
    summary = read_json(path, "architecture")
    if not isinstance(summary, dict) or not isinstance(summary.get("architecture"), dict):
        raise UserError(f"{path} is not a search's architecture.json (no architecture object)")
    return path, summary


def _input_and_classes(path, summary):
    """(input size, classes) the search ran at: its summary, else the dir's build.json."""
    size, classes = summary.get("input_size"), summary.get("classes")
    if size is None or classes is None:
        record = build_record.read_run(os.path.dirname(os.path.abspath(path))) or {}
        size = size or (record.get("input_size") or [None])[0]
        classes = classes or (record.get("build") or {}).get("classes")
    if not size or not classes:
        raise UserError(f"{path} does not say its input size and classes (and no build.json does)")
    return int(size), int(classes)


def cost_models_of(summary, input_size, classes, latency_table=None):
    """[(label, cost model)]: MACs, the roofline at 0, 400 and the search's ridge point(s), and the
    latency table (the search's, or `latency_table`)."""
    models = [("MACs", cost_models.MacsCost(input_size, classes))]
    used = summary.get("cost_models", {})
    ridge_points = list(RIDGE_POINTS)
    settings = used.get("roofline", {})
    if "ridge_point" in settings and float(settings["ridge_point"]) not in ridge_points:
        ridge_points.append(float(settings["ridge_point"]))
    for rp in ridge_points:
        roofline = cost_models.RooflineCost(
            rp,
            settings.get("peak_macs", 1.0),
            settings.get("precision", "int8"),
            input_size,
            classes,
        )
        models.append((f"roofline RP {rp:g} ({roofline.unit}, {roofline.precision})", roofline))
    table = latency_table or used.get("latency", {}).get("table")
    if table:
        from experiments.nas import latency_table as table_lib  # pylint: disable=g-import-not-at-top

        device = used.get("latency", {}).get("device") if not latency_table else None
        cost = table_lib.LatencyTableCost(table_lib.load(table, input_size, device))
        models.append((f"latency table {table} (ms)", cost))
    return models


def analyze(path, latency_table=None):
    """{architecture, input_size, classes, params, macs, costs, targets, rows} of a search."""
    path, summary = find_result(path)
    arch = search_space.architecture_from_dict(summary["architecture"])  # UserError if malformed
    input_size, classes = _input_and_classes(path, summary)
    costs = {
        label: model(arch)
        for label, model in cost_models_of(summary, input_size, classes, latency_table)
    }
    return {
        "source": os.path.abspath(path),
        "architecture": search_space.architecture_to_dict(arch),
        "input_size": input_size,
        "classes": classes,
        "params": spec_costs.count_params(arch, classes),
        "macs": spec_costs.total_macs(arch, input_size, classes),
        "costs": costs,
        "targets": summary.get("costs", {}),
        "reward_split": summary.get("reward_split"),
    }


def block_rows(result):
    """mobilenetv4.summary's per-block rows of the built classifier (Tables 11-15 layout)."""
    from mobilenetv4 import builder, summary  # pylint: disable=g-import-not-at-top  (TensorFlow)

    arch = search_space.architecture_from_dict(result["architecture"])
    size = result["input_size"]
    model = builder.build_model(arch, input_shape=(size, size, 3), classes=result["classes"])
    return summary.block_rows(model)


def report(result, rows, fmt="text"):
    """The printed report: the block table, then parameters, MACs and costs."""
    from mobilenetv4 import summary  # pylint: disable=g-import-not-at-top

    size = result["input_size"]
    title = f"{result['architecture']['name']}: found by the search in {result['source']}"
    lines = [
        f"{title} ({size}x{size}, {result['classes']} classes)",
        summary.format_table(rows, fmt),
        f"parameters: {result['params']:,}",
        f"MACs: {result['macs']:,}",
    ]
    lines += [f"cost, {label}: {value:,.6g}" for label, value in result["costs"].items()]
    for name, t in result["targets"].items():
        lines.append(f"search target {name}: {t['target']:.6g} (found: {t['ratio']:.3f}x target)")
    split = result.get("reward_split")
    if split:
        lines.append(f"rewards came from the {split['split']} split ({split['examples']} examples)")
    return "\n".join(lines)


def python_spec(result):
    """The architecture as a Python module defining ARCHITECTURE (a specs.Architecture)."""
    arch = search_space.architecture_from_dict(result["architecture"])
    return (
        f'"""Found by experiments.nas.search ({result["source"]}): {result["macs"]:,} MACs and '
        f'{result["params"]:,} parameters at {result["input_size"]} px, {result["classes"]} '
        'classes.\n\n    mobilenetv4.create_model(architecture=ARCHITECTURE, '
        f'input_shape=({result["input_size"]}, {result["input_size"]}, 3), '
        f'classes={result["classes"]})\n"""\n\n'
        "from mobilenetv4.specs import UIB, Architecture, Conv2D, FusedIB  # noqa: F401\n\n"
        f"ARCHITECTURE = {arch!r}\n"
    )


def parse_args(argv=None):
    parser = cli.ArgumentParser("python -m experiments.nas.analyze", __doc__)
    parser.add_argument("model_dir", help="a search's --model_dir (or its architecture.json)")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    parser.add_argument(
        "--latency_table",
        default=None,
        help="also sum this latency table (experiments.nas.latency_table)",
    )
    cli.add_output_flags(
        parser, help="write the architecture to FILE: .json (a spec with its costs) or .py (Python)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.output and os.path.splitext(args.output)[1] not in (".json", ".py"):
        raise UserError(f"--output names a .json or .py file, got {args.output}")
    fileio.check_outputs([args.output], inputs=[args.model_dir], overwrite=args.overwrite)
    result = analyze(args.model_dir, args.latency_table)
    rows = block_rows(result)
    print(report(result, rows, args.format))
    if args.output:
        if args.output.endswith(".py"):
            fileio.write_text(args.output, python_spec(result))
        else:
            fileio.write_json(args.output, {**result, "rows": rows})
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    cli.run(main)
