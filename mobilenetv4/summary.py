"""Per-block table of a built model, in the layout of the paper's Tables 11-15.

    python -m mobilenetv4.summary conv_small
    python -m mobilenetv4.summary hybrid_medium --input_size 256 192 --format markdown
    python -m mobilenetv4.summary hybrid_medium@256x192 --output hm.csv   # or .md

Columns: input shape, block kind, DW K1 (start DW, or "-"), DW K2 (middle DW, or the kernel of a
Conv2D / FusedIB), expanded dim, output dim, stride, then the parameters (trainable, BN gamma and
beta included) and MACs (convs, dense layers, attention matmuls) that the built layers have.
The model is a name of the package's grammar, `NAME[@H[xW]]`; without a size it is built at its
`Architecture.default_size`. `--output FILE` also writes the rows as CSV (.csv) or Markdown (.md);
an existing file is refused unless --overwrite.
"""

import collections

import numpy as np
import tf_keras as keras

from mobilenetv4 import cli, costs, fileio, layers as L, model_names, registry, tables

COLUMNS = ("input", "block", "dw_k1", "dw_k2", "expanded", "output", "stride", "params", "macs")


def _shape(shape):
    return "x".join("?" if d is None else str(d) for d in shape[1:])


def _kernel(k):
    return f"{k}x{k}" if k else "-"


def _describe(layer):
    """(block kind, DW K1, DW K2, expanded dim, stride, note) of one top-level layer."""
    if isinstance(layer, L.UniversalInvertedBottleneck):
        return (
            layer.kind,
            _kernel(layer.start_dw_kernel_size),
            _kernel(layer.middle_dw_kernel_size),
            layer.expanded_filters,
            layer.strides,
            "",
        )
    if isinstance(layer, L.FusedIB):
        return (
            "FusedIB",
            "-",
            _kernel(layer.kernel_size),
            layer.expanded_filters,
            layer.strides,
            "",
        )
    if isinstance(layer, L.MobileAttentionBlock):
        note = f"{layer.num_heads} heads x {layer.key_dim}"
        if layer.kv_strides > 1:
            note += f", K/V stride {layer.kv_strides}"
        return (layer.kind, "-", "-", "-", 1, note)
    if isinstance(layer, L.ConvBN):
        return ("Conv2D", "-", _kernel(layer.kernel_size), "-", layer.strides, "")
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
        return ("AvgPool", "-", "global", "-", 1, "")
    if isinstance(layer, keras.layers.Dense):
        return ("FC", "-", "-", "-", 1, "")
    return None


def block_rows(model, input_shape=None):
    """One dict per block (keys COLUMNS + "name", "note"), in network order.

    Shapes come from the functional graph, so a model built with a flexible input size shows "?"
    there; `input_shape` is then needed for the MAC count.
    """
    macs = collections.Counter()
    for cost in costs.layer_costs(model, input_shape):
        macs[cost.block] += cost.macs
    rows = []
    for layer in model.layers:
        described = _describe(layer)
        if described is None:
            continue
        kind, k1, k2, expanded, stride, note = described
        rows.append(
            dict(
                name=layer.name,
                input=_shape(layer.input_shape),
                block=kind,
                dw_k1=k1,
                dw_k2=k2,
                expanded=expanded,
                output=layer.output_shape[-1],
                stride=stride,
                params=int(sum(np.prod(w.shape) for w in layer.trainable_weights)),
                macs=macs[layer.name],
                note=note,
            )
        )
    return rows


HEADERS = [
    "Input",
    "Block",
    "DW K1",
    "DW K2",
    "Expanded",
    "Output",
    "Stride",
    "Params",
    "MACs",
    "Note",
]


def summary_table(rows):
    """The rows (and a Total row) as a `tables.Table` with the paper's column names."""
    table = tables.Table(HEADERS)
    for r in rows:
        table.add(
            [
                r["input"],
                r["block"],
                r["dw_k1"],
                r["dw_k2"],
                str(r["expanded"]),
                str(r["output"]),
                str(r["stride"]),
                f"{r['params']:,}",
                f"{r['macs']:,}",
                r["note"],
            ]
        )
    table.add(
        [
            "",
            "Total",
            "",
            "",
            "",
            "",
            "",
            f"{sum(r['params'] for r in rows):,}",
            f"{sum(r['macs'] for r in rows):,}",
            "",
        ]
    )
    return table


def format_table(rows, fmt="text"):
    return summary_table(rows).render(fmt).rstrip("\n")


def rows_table(rows):
    """The raw rows (plain integers) for --output .csv."""
    fields = ("name",) + COLUMNS + ("note",)
    return tables.Table(fields, [[str(r[k]) for k in fields] for r in rows])


def parse_args(argv=None):
    parser = cli.ArgumentParser("python -m mobilenetv4.summary", __doc__)
    parser.add_argument(
        "model", help="NAME[@H[xW]], NAME one of: " + ", ".join(registry.list_models())
    )
    parser.add_argument(
        "--input_size",
        type=cli.positive_int,
        nargs=2,
        metavar=("H", "W"),
        help="input resolution (default: the model's training resolution)",
    )
    parser.add_argument("--width_multiplier", type=cli.positive_float, default=None)
    parser.add_argument("--classes", type=cli.positive_int, default=1000)
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    cli.add_output_flags(
        parser, help="also write the rows to FILE: .csv (plain numbers) or .md (the printed table)"
    )
    parser.add_alias("--csv", "--output")
    args = parser.parse_args(argv)
    if args.output and not args.output.endswith((".csv", ".md")):
        parser.error(f"argument --output: name a .csv or .md file, got {args.output}")
    return args


def main(argv=None):
    from mobilenetv4.roofline import zoo  # pylint: disable=g-import-not-at-top

    args = parse_args(argv)
    ref = model_names.parse(args.model)
    if ref.source != "mobilenetv4":
        raise cli.UserError(
            f"{args.model}: the summary describes this package's MobileNetV4 models; "
            f"choose one of {', '.join(registry.list_models())}"
        )
    if args.input_size and ref.size and tuple(args.input_size) != ref.size:
        raise cli.UserError(
            f"{args.model} names the size {ref.size[0]}x{ref.size[1]} but --input_size "
            f"is {args.input_size[0]}x{args.input_size[1]}; give the size once"
        )
    size = tuple(args.input_size) if args.input_size else ref.resolution()
    fileio.check_outputs([args.output], overwrite=args.overwrite)
    arch = registry.get_architecture(ref.name)
    zoo.check_input_memory(*size, ref.name)
    try:
        model = registry.create_model(
            ref.name,
            input_shape=size + (3,),
            classes=args.classes,
            width_multiplier=args.width_multiplier,
        )
    except (ValueError, TypeError) as error:
        raise cli.UserError(str(error)) from None
    zoo.check_model_memory(model, ref.name)
    rows = block_rows(model)
    print(f"MobileNetV4 {ref.name} at {size[0]}x{size[1]} (paper {arch.paper_table})")
    print(format_table(rows, args.format))
    total_params = costs.count_params(model)
    print(
        f"\nTrainable parameters: {total_params:,}   "
        f"MACs (conv, dense, attention matmuls): {sum(r['macs'] for r in rows) / 1e9:.4f} G"
    )
    if args.output:
        if args.output.endswith(".md"):
            fileio.write_text(args.output, summary_table(rows).markdown())
        else:
            rows_table(rows).write(args.output, "csv")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    cli.run(main)
