"""Roofline analysis CLI (paper Sec. 3, Eq. 1, Appendix F).

    python -m mobilenetv4.roofline --models conv_small,conv_medium,mobilenet_v2_100 \
        [--precision int8] [--latencies docs/roofline/latency_int8_cpu.csv] --output_dir DIR

Models are the package's model names (NAME[@H[xW]], keras:NAME, model_garden:NAME; a keras family
name such as mobilenet_v2_100 may drop `keras:`); without a size a model runs at its default
(a MobileNetV4 at its Architecture.default_size).
Writes to DIR: ops_<model>.csv (per-op MACs, bytes, intensity, Eq. 1 time at RP 0/5/50/500),
sweep.csv (ModelTime from RP 0 to --rp_max), summary.csv, fig2_sweep.png, fig3_op_cost.png and
(with --per_model_plots) op_cost_<model>.png (Figs. 3, 7-9), and with --latencies (written by
`python -m tflite.roofline_latency`): fit.csv, fit_curve.csv, fig6_fit.png (Table 16 / Fig. 6).
summary.md lists it all. Existing files are refused unless --overwrite.
"""

import os
import sys
import time

import numpy as np

from mobilenetv4 import cli, fileio
from mobilenetv4.cli import UserError
from mobilenetv4.roofline import plots, report, zoo
from mobilenetv4.roofline.fit import fit_ridge_point
from mobilenetv4.roofline.ops import BYTES_PER_VALUE, bytes_per_value
from mobilenetv4.roofline.sweep import FIGURE_RIDGE_POINTS, memory_bound_fraction, sweep
from mobilenetv4.tables import Table

MAX_FIG3_COLUMNS = 6
MAX_SWEEP_POINTS = 100_001


def analyse(specs, precision, log=print):
    """{label: ops} for each model spec, building one model at a time."""
    import tf_keras as keras
    from mobilenetv4.roofline.analysis import roofline_ops

    out = {}
    for i, spec in enumerate(specs, 1):
        t0 = time.time()
        keras.backend.clear_session()
        model = spec.build()
        zoo.check_model_memory(model, spec.label)
        out[spec.label] = roofline_ops(model, precision)
        macs = sum(op.macs for op in out[spec.label])
        log(
            f"[{i}/{len(specs)}] {spec.label}: {len(out[spec.label])} ops, "
            f"{macs / 1e9:.4f} GMACs ({time.time() - t0:.1f}s)"
        )
    return out


def published_top1(spec):
    """(top-1, source) when `spec` is a published model at its default resolution, else None."""
    if spec.source == "model_garden" or spec.display_name not in zoo.PUBLISHED_TOP1:
        return None
    if spec.resolution != zoo.resolve(spec.display_name).resolution:
        return None
    return zoo.PUBLISHED_TOP1[spec.display_name]


def summary_rows(specs, ops_by, curves, rps, precision):
    bpv = bytes_per_value(precision)
    rows = []
    for s in specs:
        ops = ops_by[s.label]
        at = {rp: curves[s.label][int(np.argmin(np.abs(rps - rp)))] for rp in FIGURE_RIDGE_POINTS}
        macs = sum(o.macs for o in ops)
        wb = sum(o.weight_bytes for o in ops)
        ab = sum(o.activation_bytes for o in ops)
        top1 = published_top1(s)
        rows.append(
            dict(
                model=s.label,
                family=s.family,
                gmacs=f"{macs / 1e9:.4f}",
                mparams=f"{wb / bpv / 1e6:.3f}",
                weight_mb=f"{wb / 1e6:.3f}",
                activation_mb=f"{ab / 1e6:.3f}",
                intensity=f"{macs / (wb + ab):.1f}",
                **{f"gmac_eq_rp{rp:g}": f"{at[rp] / 1e9:.4f}" for rp in FIGURE_RIDGE_POINTS},
                mem_bound_rp50=f"{memory_bound_fraction(ops, 50.0):.2f}",
                mem_bound_rp500=f"{memory_bound_fraction(ops, 500.0):.2f}",
                top1=f"{top1[0]} ({top1[1]})" if top1 else "",
            )
        )
    return rows


def parse_args(argv=None):
    p = cli.ArgumentParser("python -m mobilenetv4.roofline", __doc__)
    cli.add_models_flag(p, f"comma-separated model names, e.g. {zoo.EXAMPLES}")
    p.add_argument(
        "--precision",
        default="int8",
        choices=list(BYTES_PER_VALUE),
        help="bytes per weight/activation: int8 1, fp16 2, fp32 4 (default int8)",
    )
    p.add_argument(
        "--latencies",
        help="CSV of measured latencies (columns model[,resolution],"
        "latency_ms) to fit the ridge point to; models in it are added to --models",
    )
    cli.add_number_flag(p, "--rp_max", 500.0, "sweep end, MACs/byte", type=cli.positive_float)
    cli.add_number_flag(p, "--rp_step", 0.5, "sweep step, MACs/byte", type=cli.positive_float)
    p.add_argument(
        "--fig3_models",
        type=cli.comma_list,
        help="models for the columns of fig3_op_cost.png "
        f"(default: the first {MAX_FIG3_COLUMNS} of --models)",
    )
    p.add_argument(
        "--per_model_plots",
        action="store_true",
        help="also write op_cost_<model>.png for every model",
    )
    cli.add_output_flags(p, kind="dir", required=True, help="output directory")
    for old, new in (
        ("--rp-max", "--rp_max"),
        ("--rp-step", "--rp_step"),
        ("--fig3-models", "--fig3_models"),
        ("--per-model-plots", "--per_model_plots"),
        ("--out", "--output_dir"),
    ):
        p.add_alias(old, new)
    args = p.parse_args(argv)
    if args.rp_step > args.rp_max:
        p.error("--rp_step must not exceed --rp_max")
    if args.rp_max / args.rp_step + 1 > MAX_SWEEP_POINTS:
        p.error(
            f"--rp_max / --rp_step gives {args.rp_max / args.rp_step + 1:.0f} ridge points; "
            f"at most {MAX_SWEEP_POINTS} (choose a larger --rp_step)"
        )
    return args


def planned_outputs(out_dir, specs, per_model_plots, fit):
    names = [f"ops_{s.file_label.replace('@', '_')}.csv" for s in specs]
    if per_model_plots:
        names += [f"op_cost_{s.file_label.replace('@', '_')}.png" for s in specs]
    names += ["sweep.csv", "summary.csv", "fig2_sweep.png", "fig3_op_cost.png", "summary.md"]
    if fit:
        names += ["fit.csv", report.fit_curve_path("fit.csv"), "fig6_fit.png"]
    return [os.path.join(out_dir, n) for n in names]


def main(argv=None) -> int:
    args = parse_args(argv)
    specs = zoo.parse_list(args.models)
    measured = {}  # label -> seconds
    labels = {s.label for s in specs}
    for key, seconds in (report.read_latencies(args.latencies) if args.latencies else {}).items():
        spec = zoo.resolve(key)
        measured[spec.label] = seconds
        if spec.label not in labels:
            specs.append(spec)
            labels.add(spec.label)
    fig3 = (
        [s.label for s in zoo.parse_list(args.fig3_models)]
        if args.fig3_models
        else [s.label for s in specs][:MAX_FIG3_COLUMNS]
    )
    if set(fig3) - labels:
        raise UserError(f"--fig3_models {sorted(set(fig3) - labels)} are not in --models")
    fit_models = [s for s in specs if s.label in measured]
    do_fit = bool(measured) and len(fit_models) >= 3
    fileio.check_writable_dir(args.output_dir)
    fileio.check_outputs(
        planned_outputs(args.output_dir, specs, args.per_model_plots, do_fit),
        inputs=[args.latencies],
        overwrite=args.overwrite,
        flag="--output_dir",
    )
    out = args.output_dir
    say = lambda m: print(m, flush=True)  # noqa: E731
    ops_by = analyse(specs, args.precision, say)
    rps = np.arange(0.0, args.rp_max + args.rp_step / 2, args.rp_step)
    curves = {s.label: sweep(ops_by[s.label], rps) for s in specs}
    families = {s.label: s.family for s in specs}

    for s in specs:
        report.write_ops_csv(
            os.path.join(out, f"ops_{s.file_label.replace('@', '_')}.csv"), ops_by[s.label]
        )
        if args.per_model_plots:
            plots.plot_op_costs(
                os.path.join(out, f"op_cost_{s.file_label.replace('@', '_')}.png"),
                {s.label: ops_by[s.label]},
            )
    report.write_sweep_csv(os.path.join(out, "sweep.csv"), rps, curves)
    rows = summary_rows(specs, ops_by, curves, rps, args.precision)
    summary = Table(list(rows[0]), [list(r.values()) for r in rows])
    summary.write(os.path.join(out, "summary.csv"), "csv")
    top1 = {s.label: published_top1(s)[0] for s in specs if published_top1(s)}
    plots.plot_sweep(os.path.join(out, "fig2_sweep.png"), rps, curves, families, top1)
    plots.plot_op_costs(os.path.join(out, "fig3_op_cost.png"), {m: ops_by[m] for m in fig3})

    md = [
        f"# Roofline analysis ({args.precision}, {len(specs)} models)",
        "",
        f"Command: `python -m mobilenetv4.roofline {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        "Eq. 1 latency is given in G MAC-equivalents (ModelTime x PeakMACs); divide by the "
        "device's PeakMACs in GMAC/s for seconds. `mem_bound_rpX` is the share of Eq. 1 time "
        "spent in memory-bound ops at RP X.",
        "",
        summary.markdown(),
        "![Fig. 2](fig2_sweep.png)",
        "",
        "![Fig. 3](fig3_op_cost.png)",
        "",
    ]
    if do_fit:
        lat = [measured[s.label] for s in fit_models]
        macs = [sum(o.macs for o in ops_by[s.label]) for s in fit_models]
        fit = fit_ridge_point(np.stack([curves[s.label] for s in fit_models]), rps, lat, macs)
        names = [s.label for s in fit_models]
        report.write_fit_csv(os.path.join(out, "fit.csv"), names, lat, macs, fit)
        plots.plot_fit(os.path.join(out, "fig6_fit.png"), fit, names, lat, macs)
        md += [
            "## Fit to measured latency (Table 16 / Fig. 6)",
            "",
            Table(
                [
                    "models",
                    "fitted RP (MACs/B)",
                    "r_s-Roofline",
                    "r_s-MAC",
                    "RMS ln error",
                    "eff. PeakMACs (GMAC/s)",
                    "eff. PeakMemBW (GB/s)",
                    "max r_s over sweep (RP range)",
                ],
                [
                    [
                        str(len(fit_models)),
                        f"{fit.ridge_point:g}",
                        f"{fit.rs_roofline:.3f}",
                        f"{fit.rs_mac:.3f}",
                        f"{fit.log_rmse:.3f}",
                        f"{fit.peak_macs_per_s / 1e9:.2f}",
                        f"{fit.peak_mem_bw / 1e9:.2f}",
                        f"{fit.rs_max:.3f} ({fit.rs_max_range[0]:g}-{fit.rs_max_range[1]:g})",
                    ]
                ],
            ).markdown(),
            "![Fig. 6](fig6_fit.png)",
            "",
        ]
        say(
            f"fit: RP {fit.ridge_point:g} MACs/byte, r_s-Roofline {fit.rs_roofline:.3f}, "
            f"r_s-MAC {fit.rs_mac:.3f} over {len(fit_models)} models"
        )
    elif measured:
        say("fewer than 3 models have measured latencies; skipping the fit")
    fileio.write_text(os.path.join(out, "summary.md"), "\n".join(md))
    say(f"wrote {out}/summary.md")
    return 0


if __name__ == "__main__":
    cli.run(main)
