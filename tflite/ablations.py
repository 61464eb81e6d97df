"""The paper's attention ablations timed on this CPU with the Appendix B protocol (all variants
interleaved in one run), INT8 and FP32; writes Markdown tables for docs/tflite.md.

    python -m tflite.ablations --output_dir runs/ablations [--num_runs 1000 --repeats 5]

Block-level models (random weights with stand-in statistics), the attention blocks alone on the
feature map where the paper adds them:
  Table 2 / 17: 3 attention blocks on MNv4-Conv-L's last stage at 384 px (12x12x512; 8 heads,
                key/value dim 64, as MNv4-Hybrid-L's last stage): MHSA vs MQA in the paper's
                Fig. 10 einsum layout ("unoptimised") vs Mobile MQA (Fig. 11, transpose-free).
  Table 3:      MNv4-Hybrid-M's 4 attention blocks of stage 3 at 256 px (16x16x160; 4 heads,
                dim 64) with and without the stride-2 K/V downsampling.
INT8 is our exporter's default (attention matmuls and softmax in float inside the int8 graph).
Writes OUTPUT_DIR/ablations.md and ablations.json (refused if they exist, unless --overwrite); the
converted .tflite files in OUTPUT_DIR are reused by later runs.
"""

import os

import numpy as np

from mobilenetv4 import cli, fileio, tables
from tflite import analysis, benchmark

OUTPUTS = ("ablations.md", "ablations.json")
WEIGHTS = (
    "stand-in (random init, layer scale ~1, kernels preconditioned and BN statistics from 16 "
    "normal-noise feature maps; "
    "tflite.models.stand_in_statistics)"
)

# name: (height/width, channels, heads, dim, kv_strides, blocks, attention_type)
VARIANTS = {
    "mhsa": (12, 512, 8, 64, 1, 3, "mhsa"),
    "mqa_fig10": (12, 512, 8, 64, 1, 3, "mqa"),
    "mobile_mqa": (12, 512, 8, 64, 1, 3, "mobile_mqa"),
    "hm_stage3_kv_stride1": (16, 160, 4, 64, 1, 4, "mobile_mqa"),
    "hm_stage3_kv_stride2": (16, 160, 4, 64, 2, 4, "mobile_mqa"),
}


def attention_stack(size, channels, heads, dim, kv_strides, blocks, attention_type):
    import tf_keras as keras
    from mobilenetv4 import layers as L

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, channels), batch_size=1)
    x = inputs
    for i in range(blocks):
        x = L.MobileAttentionBlock(
            num_heads=heads,
            key_dim=dim,
            kv_strides=kv_strides,
            attention_type=attention_type,
            layer_scale_init_value=1e-5,
            name=f"attention{i}",
        )(x)
    return keras.Model(inputs, x, name=attention_type)


def build(out_dir, log=print):
    from tflite import export, models

    paths = {}
    for name, spec in VARIANTS.items():
        model = attention_stack(*spec)
        features = (
            np.random.default_rng(0).normal(size=(16, *model.input_shape[1:])).astype(np.float32)
        )
        models.stand_in_statistics(model, features)
        for precision in ("int8", "fp32"):
            path = os.path.join(out_dir, f"{name}_{precision}.tflite")
            if not os.path.exists(path):
                log(f"converting {name} {precision.upper()} ...")
                data = export.convert(
                    model, precision, "int8" if precision == "int8" else "float", features
                )
                fileio.write_bytes(path, data)
            paths[(name, precision)] = path
    return paths


def ablation_tables(rows) -> str:
    def ms(name, precision):
        return rows[(name, precision)]["median_ms"]

    def cell(name, precision, base=None):
        r = rows[(name, precision)]
        text = f"{r['median_ms']:.3f}"
        if base:
            text += f" ({100 * (ms(base, precision) - r['median_ms']) / ms(base, precision):+.1f}%)"
        return text

    def info(name, precision):
        r = rows[(name, precision)]
        return f"{r['transposes']} / {r['partitions']}"

    t2 = tables.Table(
        [
            "block",
            "INT8 ms (vs MHSA)",
            "FP32 ms (vs MHSA)",
            "MACs (M)",
            "TRANSPOSE / partitions (INT8)",
        ]
    )
    for name, label in [("mhsa", "3 x MHSA"), ("mobile_mqa", "3 x Mobile MQA")]:
        base = "mhsa" if name != "mhsa" else None
        t2.add(
            [
                label,
                cell(name, "int8", base),
                cell(name, "fp32", base),
                f"{rows[(name, 'fp32')]['macs'] / 1e6:.1f}",
                info(name, "int8"),
            ]
        )
    t17 = tables.Table(
        [
            "block",
            "INT8 ms (vs Fig. 10)",
            "FP32 ms (vs Fig. 10)",
            "TRANSPOSE (FP32)",
            "TRANSPOSE / partitions (INT8)",
        ]
    )
    for name, label in [
        ("mqa_fig10", "MQA, Fig. 10 layout (unoptimised)"),
        ("mobile_mqa", "Mobile MQA, Fig. 11 layout (optimised)"),
    ]:
        base = "mqa_fig10" if name != "mqa_fig10" else None
        t17.add(
            [
                label,
                cell(name, "int8", base),
                cell(name, "fp32", base),
                str(rows[(name, "fp32")]["transposes"]),
                info(name, "int8"),
            ]
        )
    t3 = tables.Table(["down-sampling on KV", "INT8 ms", "FP32 ms", "MACs (M)"])
    for name, label in [
        ("hm_stage3_kv_stride1", "No"),
        ("hm_stage3_kv_stride2", "Yes (stride-2 3x3 DW)"),
    ]:
        t3.add(
            [
                label,
                cell(name, "int8"),
                cell(name, "fp32"),
                f"{rows[(name, 'fp32')]['macs'] / 1e6:.1f}",
            ]
        )
    gain = {
        p: 100
        * (ms("hm_stage3_kv_stride1", p) - ms("hm_stage3_kv_stride2", p))
        / ms("hm_stage3_kv_stride1", p)
        for p in ("int8", "fp32")
    }
    t3.add(["Efficiency gain", f"{gain['int8']:+.1f}%", f"{gain['fp32']:+.1f}%", ""])
    return "\n".join(
        [
            "### Table 2: MHSA vs MQA (3 blocks at 12x12x512, 8 heads, dim 64)",
            "",
            t2.markdown(),
            "### Table 17: einsum layout (3 MQA blocks at 12x12x512)",
            "",
            t17.markdown(),
            "### Table 3: K/V downsampling (4 Mobile MQA blocks at 16x16x160, 4 heads, dim 64)",
            "",
            t3.markdown(),
        ]
    )


def parse_args(argv=None):
    return benchmark.report_tool_parser(
        "python -m tflite.ablations", __doc__, "runs/ablations", OUTPUTS
    ).parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    md_path, json_path = benchmark.report_paths(args, OUTPUTS)
    paths = build(args.output_dir)
    keys = list(paths)
    result = benchmark.appendix_b([paths[k] for k in keys], **cli.protocol_options(args))
    rows = {}
    for key, m in zip(keys, result["models"]):
        st = analysis.graph_stats(paths[key])
        rows[key] = {
            "median_ms": m["median_ms"],
            "means_ms": m["means_ms"],
            "macs": st.macs,
            "transposes": st.transposes,
            "partitions": st.delegate_partitions,
            "undelegated": st.undelegated_ops,
        }
    text = (
        ablation_tables(rows)
        + "\n"
        + benchmark.protocol_line(result["protocol"])
        + f"\n\nWeights: {WEIGHTS}.\n"
    )
    print("\n" + text)
    fileio.write_text(md_path, text)
    fileio.write_json(
        json_path,
        {
            "protocol": result["protocol"],
            "weights": WEIGHTS,
            "rows": {f"{k[0]}/{k[1]}": v for k, v in rows.items()},
        },
    )
    print(f"wrote {md_path} and {json_path}")


if __name__ == "__main__":
    cli.run(main)
