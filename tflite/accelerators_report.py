"""The accelerator tables of docs/tflite.md: every model exported FP32 and FP16 and run on LiteRT's
GPU accelerator, and exported INT8, compiled ahead of time with the OpenVINO NPU plugin and run
through its dispatch library; each against the CPU (XNNPACK) run of the same model on the same real
held-out images (sklearn digits).

    python -m tflite.accelerators_report --output_dir /tmp/accel [--models conv_small,hybrid_medium]
        [--input_size 128] [--images 32] [--parts gpu,npu]

Weights: random init made trained-like with `tflite.models.stand_in_statistics` (layer scale ~1,
kernels preconditioned and BatchNorm statistics re-estimated on the calibration images), so the
figures do not come from degenerate or noise-amplifying networks. Writes OUTPUT_DIR/accelerators.md and .json (and the .tflite files it measured).
"""

import os
import time

from mobilenetv4 import cli, fileio, tables
from tflite import accelerators, analysis, runtime

PARTS = ("gpu", "npu")


def export_variants(name, size, precisions, out_dir, images, log):
    """{precision: path} of `name` at `size` with stand-in statistics (one Keras model for all)."""
    from tflite import export, models

    keras_model = models.build(name, (size, size, 3))
    model = export.with_pixel_input(keras_model, "imagenet", (size, size))
    models.stand_in_statistics(model, images.calibration)
    paths = {"keras_logits": model.predict(images.heldout, batch_size=16, verbose=0)}
    for precision in precisions:
        path = os.path.join(out_dir, f"{name}_{size}_{precision}.tflite")
        t0 = time.time()
        data = export.convert(model, precision, representative=images.calibration)
        fileio.write_bytes(path, data)
        log(f"  {precision}: {path} ({len(data) / 2**20:.1f} MiB, {time.time() - t0:.0f} s)")
        paths[precision] = path
    return paths


def checked(log, **kwargs) -> dict:
    """One isolated accelerator check; a failure is retried once, then recorded in the row."""
    from mobilenetv4.cli import UserError

    for attempt in (1, 2):
        try:
            c = accelerators.isolated("check", **kwargs)
            log("  " + accelerators.Check(**c).line())
            return c
        except UserError as e:
            log(f"  attempt {attempt}: {e}")
            error = str(e)
    return {"error": error}


def measure(name, size, parts, out_dir, n_images, log) -> dict:
    from tflite import calibration, npu

    images = calibration.load("sklearn_digits", (size, size), 64, n_images, log=lambda *_: None)
    precisions = (["fp32", "fp16"] if "gpu" in parts else []) + (["int8"] if "npu" in parts else [])
    paths = export_variants(name, size, precisions, out_dir, images, log)
    keras_logits = paths.pop("keras_logits")
    row = {"model": name, "input_size": size, "images": int(len(images.heldout))}
    for precision, path in paths.items():  # context: the CPU run's own distance from float Keras
        cpu = runtime.run(runtime.load_interpreter(path), images.heldout)
        row[f"cpu_{precision}_vs_keras_sqnr_db"] = analysis.sqnr_db(keras_logits, cpu)
    for precision in ("fp32", "fp16"):
        if precision in paths:
            row[f"gpu_{precision}"] = checked(
                log, path=paths[precision], accelerator="gpu", images=images.heldout
            )
    if "int8" in paths:
        report = npu.compile_model(
            paths["int8"], npu.parse_target("intel_openvino"), overwrite=True, log=lambda *_: None
        )
        log("  " + npu.format_report(report).splitlines()[0])
        c = checked(
            log,
            path=report["compiled_model"],
            accelerator="npu",
            images=images.heldout,
            reference=paths["int8"],
        )
        row["npu_int8"] = {
            **c,
            **{k: report[k] for k in ("ops", "ops_on_npu", "partitions", "cpu_ops")},
        }
    return row


def table(rows: list[dict]) -> tables.Table:
    def gpu(r, p):
        c = r.get(f"gpu_{p}")
        if not c or "error" in c:
            return ["-" if not c else "error", "-"]
        full = "yes" if c["fully_accelerated"] else "NO"
        return [full, f"{c['max_rel_diff']:.1e}" if p == "fp32" else f"{c['sqnr_db']:.1f}"]

    out = []
    for r in rows:
        n = r.get("npu_int8")
        n = n if n and "error" not in n else None
        out.append(
            [
                r["model"],
                *gpu(r, "fp32"),
                *gpu(r, "fp16"),
                f"{r['gpu_fp16']['top1_agreement'] * 100:.0f}%"
                if "top1_agreement" in r.get("gpu_fp16", {})
                else "-",
                f"{r['cpu_fp16_vs_keras_sqnr_db']:.1f}" if r.get("gpu_fp16") else "-",
                f"{r['cpu_int8_vs_keras_sqnr_db']:.1f}" if n else "-",
                f"{n['ops_on_npu']}/{n['ops']}" if n else "-",
                f"{n['sqnr_db']:.1f}" if n else "-",
                f"{n['top1_agreement'] * 100:.0f}%" if n else "-",
            ]
        )
    return tables.Table(
        [
            "model",
            "GPU FP32 all ops",
            "GPU FP32 max rel. diff",
            "GPU FP16 all ops",
            "GPU FP16 SQNR (dB)",
            "GPU FP16 top-1 agr.",
            "CPU FP16 vs Keras (dB)",
            "CPU INT8 vs Keras (dB)",
            "NPU INT8 ops on NPU",
            "NPU SQNR (dB)",
            "NPU top-1 agr.",
        ],
        out,
    )


def main(argv=None):
    import mobilenetv4

    p = cli.ArgumentParser("python -m tflite.accelerators_report", __doc__)
    cli.add_output_flags(p, kind="dir", required=True, help="folder for the models and the tables")
    p.add_argument("--models", type=cli.comma_list, default=mobilenetv4.list_models())
    p.add_argument(
        "--input_size", type=cli.positive_int, default=128, help="square side (default 128)"
    )
    p.add_argument(
        "--images", type=cli.positive_int, default=32, help="held-out images (default 32)"
    )
    p.add_argument(
        "--parts", type=cli.comma_list, default=list(PARTS), help="gpu,npu (default both)"
    )
    args = p.parse_args(argv)
    for part in args.parts:
        if part not in PARTS:
            raise cli.UserError(f"--parts: unknown part {part!r}; choose from {', '.join(PARTS)}")
    unknown = sorted(set(args.models) - set(mobilenetv4.list_models()))
    if unknown:
        raise cli.UserError(f"--models: unknown model(s) {', '.join(unknown)}")
    if "gpu" in args.parts and accelerators.vulkan_missing():
        raise cli.UserError(f"the GPU part needs Vulkan: {accelerators.vulkan_missing()}")
    fileio.check_writable_dir(args.output_dir)
    md, js = (os.path.join(args.output_dir, f"accelerators.{s}") for s in ("md", "json"))
    fileio.check_outputs([md, js], overwrite=args.overwrite)
    rows = []
    for name in args.models:
        print(f"{name} @ {args.input_size}:", flush=True)
        t0 = time.time()
        rows.append(measure(name, args.input_size, args.parts, args.output_dir, args.images, print))
        print(f"  ({time.time() - t0:.0f} s)", flush=True)
        fileio.write_json(js, {"rows": rows, "input_size": args.input_size})  # progress so far
    text = table(rows).markdown()
    fileio.write_text(md, text)
    print(text)
    return rows


if __name__ == "__main__":
    cli.run(main)
