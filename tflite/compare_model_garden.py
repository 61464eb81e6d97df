"""Our MobileNetV4 vs Model Garden's, exported the same way, timed with the Appendix B protocol
interleaved in one run; prints the table with ratios and writes it as Markdown/CSV/JSON.

    python -m tflite.compare_model_garden --output_dir runs/compare_mg [--models conv_small,hybrid_medium]
        [--num_runs 1000 --repeats 5]

Both sides get random weights with the same stand-in statistics (`models.stand_in_statistics`:
layer scale 1, BN statistics from the same calibration images), the same pixel-input wrapper,
the same converter settings and the same calibration images. Rows:
  ours/<m>            our exporter's default INT8 (attention matmuls and softmax kept in float)
  model_garden/<m>    Model Garden's backbone through the same exporter
  model_garden/<m> (full int8 attention), ours/<m> (full int8 attention): every op quantized, the
                      standard converter recipe (Model Garden's hybrid then runs its attention on
                      the builtin kernels, in 9 XNNPACK partitions)
  ours/<m> (int8 matmuls): `--attention_precision int8_matmul`, integer attention matmuls that
                      XNNPACK still runs (K/V re-quantized to zero point 0), softmax in float
  ours/hybrid_medium without attention
                      hybrid_medium with its 8 Mobile MQA blocks removed (everything else equal):
                      splits the hybrid's cost into its convolutional part and its attention blocks
Every model runs at its `Architecture.default_size` (Model Garden's at the same size as ours).
Writes OUTPUT_DIR/comparison.md and comparison.json (refused if they exist, unless --overwrite);
the converted .tflite files in OUTPUT_DIR are reused by later runs.
"""

import dataclasses
import os
import statistics

import numpy as np

from mobilenetv4 import cli, fileio, tables
from tflite import analysis, benchmark

OUTPUTS = ("comparison.md", "comparison.json")

NO_ATTENTION = "no_attention:"  # source prefix of the decomposition row
# (label, source, model, attention precision)
VARIANTS = {
    "conv_small": [("ours", "", "float"), ("model_garden", "model_garden:", "float")],
    "conv_medium": [("ours", "", "float")],
    "hybrid_medium": [
        ("ours", "", "float"),
        ("model_garden", "model_garden:", "float"),
        ("ours", "", "int8"),
        ("model_garden", "model_garden:", "int8"),
        ("ours", "", "int8_matmul"),
        ("ours", NO_ATTENTION, "float"),
    ],
}


def input_size(name: str) -> int:
    """The side of the (square) input `name` is compared at: its Architecture.default_size."""
    from mobilenetv4 import model_names

    return model_names.default_resolution(name)[0]


def paired_ratio(a: dict, b: dict) -> float:
    return statistics.median(x / y for x, y in zip(a["means_ms"], b["means_ms"]))


def without_attention(name, input_shape):
    """Our `name` with every Mobile MQA block removed: the hybrid's convolutional part alone."""
    import mobilenetv4
    from mobilenetv4 import builder, specs

    arch = mobilenetv4.get_architecture(name)
    stages = tuple(
        tuple(b for b in stage if not isinstance(b, specs.MobileMQA)) for stage in arch.stages
    )
    return builder.build_model(
        dataclasses.replace(arch, name=f"{name}_without_attention", stages=stages),
        input_shape=input_shape,
    )


def build_variant(source_prefix, name, size, attention, path, num_calibration, log):
    from tflite import export, models

    if os.path.exists(path):  # a converted model from an earlier run (never code: a flatbuffer)
        log(f"reusing {path}")
        return
    rng = np.random.default_rng(0)  # identical calibration images for every variant
    images = rng.uniform(0, 255, size=(num_calibration, size, size, 3)).astype(np.float32)
    shape = (size, size, 3)
    float_model = (
        without_attention(name, shape)
        if source_prefix == NO_ATTENTION
        else models.build(source_prefix + name, shape)
    )
    model = export.with_pixel_input(float_model, "imagenet", (size, size))
    models.stand_in_statistics(model, images)
    log(f"converting {source_prefix}{name} INT8 (attention {attention}) at {size}x{size} ...")
    data = export.convert(model, "int8", "uint8", images, attention_precision=attention)
    fileio.write_bytes(path, data)


def parse_args(argv=None):
    p = benchmark.report_tool_parser(
        "python -m tflite.compare_model_garden", __doc__, "runs/compare_model_garden", OUTPUTS
    )
    p.add_argument(
        "--models",
        action=benchmark.CommaList,
        default=list(VARIANTS),
        help=f"comma-separated, from {','.join(VARIANTS)} (default: all)",
    )
    p.add_argument(
        "--num_calibration",
        type=cli.positive_int,
        default=32,
        help="calibration images, the same for every model (default 32)",
    )
    args = p.parse_args(argv)
    unknown = [m for m in args.models if m not in VARIANTS]
    if unknown:
        p.error(
            f"argument --models: {', '.join(unknown)} not compared here; choose from "
            f"{', '.join(VARIANTS)}"
        )
    return args


def main(argv=None):
    args = parse_args(argv)
    md_path, json_path = benchmark.report_paths(args, OUTPUTS)
    rows = []
    for name in args.models:
        size = input_size(name)
        for label, prefix, attention in VARIANTS[name]:
            suffix, note = {
                "int8": ("_fullint8attn", " (full int8 attention)"),
                "int8_matmul": ("_int8matmul", " (int8 matmuls)"),
            }.get(attention, ("", ""))
            if prefix == NO_ATTENTION:
                suffix, note = "_noattn", " without attention"
            path = os.path.join(args.output_dir, f"{label}_{name}_int8{suffix}.tflite")
            build_variant(prefix, name, size, attention, path, args.num_calibration, print)
            side = "ours_without_attention" if prefix == NO_ATTENTION else label
            rows.append(
                {
                    "label": f"{label}/{name}{note}",
                    "name": name,
                    "side": side,
                    "attention": attention,
                    "path": path,
                    "input": size,
                }
            )
    result = benchmark.appendix_b(
        [r["path"] for r in rows],
        num_runs=args.num_runs,
        repeats=args.repeats,
        num_threads=args.num_threads,
        warmup_runs=args.warmup_runs,
        core=args.core,
    )
    for r, m in zip(rows, result["models"]):
        r.update(median_ms=m["median_ms"], means_ms=m["means_ms"])
        st = analysis.graph_stats(r["path"])
        r.update(
            transposes=st.transposes,
            partitions=st.delegate_partitions,
            undelegated=st.undelegated_ops,
            size_mib=st.size_bytes / 2**20,
            macs=st.macs,
        )

    def find(side, name, attention="float"):
        return next(
            (
                r
                for r in rows
                if r["side"] == side and r["name"] == name and r["attention"] == attention
            ),
            None,
        )

    ratios = []
    for name in args.models:
        ours, mg = find("ours", name), find("model_garden", name)
        if ours and mg:
            ratios.append((f"ours/{name} / model_garden/{name} (both default export)", ours, mg))
        mg_full = find("model_garden", name, "int8")
        if ours and mg_full:
            ratios.append(
                (f"ours/{name} / model_garden/{name} (full int8 attention)", ours, mg_full)
            )
        ours_full = find("ours", name, "int8")
        if ours_full and mg_full:
            ratios.append(
                (f"ours/{name} / model_garden/{name}, both full int8 attention", ours_full, mg_full)
            )
    hm, cm = find("ours", "hybrid_medium"), find("ours", "conv_medium")
    if hm and cm:
        ratios.append(("ours/hybrid_medium / ours/conv_medium", hm, cm))
    hm_mm = find("ours", "hybrid_medium", "int8_matmul")
    if hm_mm and hm:
        ratios.append(("ours/hybrid_medium (int8 matmuls) / ours/hybrid_medium", hm_mm, hm))
    hm_conv = find("ours_without_attention", "hybrid_medium")
    if hm_conv and cm:
        ratios.append(("ours/hybrid_medium without attention / ours/conv_medium", hm_conv, cm))
    if hm_conv and hm:
        ratios.append(("ours/hybrid_medium / ours/hybrid_medium without attention", hm, hm_conv))

    models_table = tables.Table(
        [
            "model (INT8, uint8 io)",
            "input",
            "MACs (M)",
            "median (ms)",
            "means (ms)",
            "TRANSPOSE",
            "XNNPACK partitions",
            "ops outside XNNPACK",
        ]
    )
    for r in rows:
        models_table.add(
            [
                r["label"],
                str(r["input"]),
                f"{r['macs'] / 1e6:.1f}",
                f"{r['median_ms']:.3f}",
                ", ".join(f"{x:.2f}" for x in r["means_ms"]),
                str(r["transposes"]),
                str(r["partitions"]),
                ", ".join(f"{k} x{v}" for k, v in r["undelegated"].items()) or "none",
            ]
        )
    # Ratio of the medians, and the median of per-repeat ratios: A and B of one repeat ran back to
    # back, so their ratio cancels most of the load drift of a shared machine.
    ratio_table = tables.Table(
        ["ratio", "of medians", "median of per-repeat ratios"],
        [
            [label, f"{a['median_ms'] / b['median_ms']:.3f}", f"{paired_ratio(a, b):.3f}"]
            for label, a, b in ratios
        ],
    )
    text = (
        "\n".join(
            [
                models_table.markdown(),
                ratio_table.markdown(),
                benchmark.protocol_line(result["protocol"]),
            ]
        )
        + "\n"
    )
    print("\n" + text)
    fileio.write_text(md_path, text)
    fileio.write_json(
        json_path,
        {
            "protocol": result["protocol"],
            "rows": rows,
            "ratios": {
                label: {
                    "of_medians": a["median_ms"] / b["median_ms"],
                    "median_of_paired": paired_ratio(a, b),
                }
                for label, a, b in ratios
            },
        },
    )
    print(f"wrote {md_path} and {json_path}")
    return rows


if __name__ == "__main__":
    cli.run(main)
