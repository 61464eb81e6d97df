"""Our MobileNetV4's default INT8 export vs Model Garden's MobileNetV4 converted the way a Model
Garden user converts it, timed with the Appendix B protocol interleaved in one run; prints the table
with ratios and writes it as Markdown/CSV/JSON.

    python -m tflite.compare_model_garden --output_dir runs/compare_mg [--models conv_small,hybrid_medium]
        [--num_runs 1000 --repeats 5]

Weights: neither side has trained weights, so both get stand-in weights
(`models.stand_in_statistics`: random init, layer scale ~1, kernels preconditioned and BN statistics
re-estimated on the same calibration images) unless a row says "raw random init". Rows:
  ours/<m>            `python -m tflite.export --model <m> --int8 --calibration random`'s graph: pixels
                      in (normalisation folded into the stem), int8 io, attention matmuls and softmax
                      in float
  model_garden/<m> (standard export)
                      Model Garden's backbone + classifier converted the standard way: a plain graph
                      on normalised input (no pixel input), TFLITE_BUILTINS_INT8, int8 io, every op
                      quantized. The ratio ours / this is what a Model Garden user would see
  model_garden/<m> (standard export, raw random init)
                      the same from Model Garden's own random initialisation, as an earlier
                      independent comparison did: its K/V ranges come out symmetric (zero point 0),
                      so XNNPACK runs its int8 attention matmuls, which no trained-like model gets
  model_garden/<m> (our recipe): the plain graph with attention matmuls and softmax in float
  ours/<m> (full int8 attention), ours/<m> (int8 matmuls): `--attention_precision int8` /
                      `int8_matmul`
  ours/hybrid_medium without attention
                      hybrid_medium with its 8 Mobile MQA blocks removed (everything else equal):
                      splits the hybrid's cost into its convolutional part and its attention blocks
Every model runs at its `Architecture.default_size` (Model Garden's at the same size as ours), on
the same calibration images (uniform pixels; normalised for the plain graphs).
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


@dataclasses.dataclass(frozen=True)
class Variant:
    side: str  # "ours", "model_garden" or "ours_without_attention"
    attention: str = "float"  # tflite.export.ATTENTION_PRECISIONS
    recipe: str = "export"  # "export": our pixel-input export; "plain": normalised input
    stand_in: bool = True  # False: the model's own random initialisation

    @property
    def source_prefix(self):
        return {
            "ours": "",
            "model_garden": "model_garden:",
            "ours_without_attention": NO_ATTENTION,
        }[self.side]

    @property
    def note(self):
        if self.side == "ours_without_attention":
            return " without attention"
        if self.side == "model_garden" and self.attention == "int8":
            return " (standard export" + ("" if self.stand_in else ", raw random init") + ")"
        if self.side == "model_garden":
            return " (our recipe)"
        return {"int8": " (full int8 attention)", "int8_matmul": " (int8 matmuls)"}.get(
            self.attention, ""
        )

    @property
    def file_suffix(self):
        recipe = "plain" if self.recipe == "plain" else "pixels"
        return f"{recipe}_attn-{self.attention}_{'standin' if self.stand_in else 'randominit'}"


OURS = Variant("ours")
MG_STANDARD = Variant("model_garden", "int8", "plain")
VARIANTS = {
    "conv_small": [OURS, MG_STANDARD],
    "conv_medium": [OURS, MG_STANDARD],
    "hybrid_medium": [
        OURS,
        MG_STANDARD,
        Variant("model_garden", "int8", "plain", stand_in=False),
        Variant("model_garden", "float", "plain"),
        Variant("ours", "int8"),
        Variant("ours", "int8_matmul"),
        Variant("ours_without_attention"),
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


def build_variant(variant, name, size, path, num_calibration, log):
    from mobilenetv4 import preprocessing
    from tflite import export, models

    if os.path.exists(path):  # a converted model from an earlier run (never code: a flatbuffer)
        log(f"reusing {path}")
        return
    rng = np.random.default_rng(0)  # identical calibration images for every variant
    images = rng.uniform(0, 255, size=(num_calibration, size, size, 3)).astype(np.float32)
    shape = (size, size, 3)
    float_model = (
        without_attention(name, shape)
        if variant.side == "ours_without_attention"
        else models.build(variant.source_prefix + name, shape)
    )
    if variant.recipe == "plain":  # normalised input, as a Model Garden user feeds it
        images = preprocessing.normalize(images).numpy()
        model = export.with_pixel_input(float_model, "none", (size, size))
        io = "int8"
    else:
        border = export.default_stem_border("int8", "int8")  # what the default export uses
        model = export.with_pixel_input(float_model, "imagenet", (size, size), stem_border=border)
        offset = export.input_offset(float_model, "imagenet", border)
        images, io = export.pin_pixel_range(images, offset), "int8"
    if variant.stand_in:
        models.stand_in_statistics(model, images)
    log(
        f"converting {variant.source_prefix}{name} INT8 ({variant.recipe}, attention "
        f"{variant.attention}, {'stand-in' if variant.stand_in else 'raw random init'}) "
        f"at {size}x{size} ..."
    )
    data = export.convert(model, "int8", io, images, attention_precision=variant.attention)
    fileio.write_bytes(path, data)


def parse_args(argv=None):
    p = benchmark.report_tool_parser(
        "python -m tflite.compare_model_garden", __doc__, "runs/compare_model_garden", OUTPUTS
    )
    cli.add_models_flag(
        p, "comma-separated variant names, a subset of the default", default=VARIANTS
    )
    cli.add_number_flag(p, "--num_calibration", 32, "calibration images, the same for every model")
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
        for variant in VARIANTS[name]:
            label = "ours" if variant.side == "ours_without_attention" else variant.side
            file_name = f"{variant.side}_{name}_int8_{variant.file_suffix}.tflite"
            path = os.path.join(args.output_dir, file_name)
            build_variant(variant, name, size, path, args.num_calibration, print)
            rows.append(
                {
                    "label": f"{label}/{name}{variant.note}",
                    "name": name,
                    "side": variant.side,
                    "attention": variant.attention,
                    "recipe": variant.recipe,
                    "weights": "stand-in" if variant.stand_in else "random init",
                    "path": path,
                    "input": size,
                }
            )
    result = benchmark.appendix_b([r["path"] for r in rows], **cli.protocol_options(args))
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

    def find(side, name, attention="float", recipe=None, weights="stand-in"):
        return next(
            (
                r
                for r in rows
                if r["side"] == side
                and r["name"] == name
                and r["attention"] == attention
                and (recipe is None or r["recipe"] == recipe)
                and r["weights"] == weights
            ),
            None,
        )

    ratios = []
    for name in args.models:
        ours, mg = find("ours", name), find("model_garden", name, "int8")
        if ours and mg:
            ratios.append(
                (
                    f"ours/{name} / model_garden/{name} (standard export): what a Model Garden user "
                    "sees",
                    ours,
                    mg,
                )
            )
        mg_raw = find("model_garden", name, "int8", weights="random init")
        if ours and mg_raw:
            ratios.append(
                (
                    f"ours/{name} / model_garden/{name} (standard export, raw random init)",
                    ours,
                    mg_raw,
                )
            )
        mg_ours = find("model_garden", name, "float")
        if ours and mg_ours:
            ratios.append((f"ours/{name} / model_garden/{name} (our recipe)", ours, mg_ours))
        ours_full = find("ours", name, "int8")
        if ours_full and mg:
            ratios.append(
                (f"ours/{name} / model_garden/{name}, both full int8 attention", ours_full, mg)
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
            "model (INT8, int8 io)",
            "weights",
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
                r["weights"],
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
