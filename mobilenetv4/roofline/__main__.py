"""Roofline analysis CLI (paper Sec. 3, Eq. 1, Appendix F).

    python -m mobilenetv4.roofline --models conv_small,conv_medium,mobilenet_v2_100 \
        [--precision int8] [--latencies docs/roofline/latency_int8_cpu.csv] --out DIR

Writes to DIR: ops_<model>.csv (per-op MACs, bytes, intensity, Eq. 1 time at RP 0/5/50/500),
sweep.csv (ModelTime from RP 0 to 500), summary.csv, fig2_sweep.png, fig3_op_cost.png and
(with --per-model-plots) op_cost_<model>.png (Figs. 3, 7-9), and with --latencies: fit.csv, fit_curve.csv, fig6_fit.png
(Table 16 / Fig. 6). summary.md lists it all.
"""
import argparse
import csv
import os
import sys
import time

import numpy as np

from mobilenetv4.roofline import plots, report, zoo
from mobilenetv4.roofline.fit import fit_ridge_point
from mobilenetv4.roofline.ops import BYTES_PER_VALUE, bytes_per_value
from mobilenetv4.roofline.sweep import FIGURE_RIDGE_POINTS, memory_bound_fraction, sweep

MAX_FIG3_COLUMNS = 6


def analyse(specs, precision, log=print):
    """{label: ops} for each model spec, building one model at a time."""
    import tf_keras as keras
    from mobilenetv4.roofline.analysis import roofline_ops
    out = {}
    for i, spec in enumerate(specs, 1):
        t0 = time.time()
        keras.backend.clear_session()
        out[spec.label] = roofline_ops(spec.build(), precision)
        macs = sum(op.macs for op in out[spec.label])
        log(f"[{i}/{len(specs)}] {spec.label}: {len(out[spec.label])} ops, "
            f"{macs / 1e9:.4f} GMACs ({time.time() - t0:.1f}s)")
    return out


def summary_rows(specs, ops_by, curves, rps, precision):
    bpv = bytes_per_value(precision)
    rows = []
    for s in specs:
        ops = ops_by[s.label]
        at = {rp: curves[s.label][int(np.argmin(np.abs(rps - rp)))] for rp in FIGURE_RIDGE_POINTS}
        macs = sum(o.macs for o in ops)
        wb = sum(o.weight_bytes for o in ops)
        ab = sum(o.activation_bytes for o in ops)
        top1 = zoo.PUBLISHED_TOP1.get(s.name) if s.resolution == zoo.resolve(s.name).resolution \
            else None
        rows.append(dict(
            model=s.label, family=s.family, gmacs=f"{macs / 1e9:.4f}",
            mparams=f"{wb / bpv / 1e6:.3f}", weight_mb=f"{wb / 1e6:.3f}",
            activation_mb=f"{ab / 1e6:.3f}", intensity=f"{macs / (wb + ab):.1f}",
            **{f"gmac_eq_rp{rp:g}": f"{at[rp] / 1e9:.4f}" for rp in FIGURE_RIDGE_POINTS},
            mem_bound_rp50=f"{memory_bound_fraction(ops, 50.0):.2f}",
            mem_bound_rp500=f"{memory_bound_fraction(ops, 500.0):.2f}",
            top1=f"{top1[0]} ({top1[1]})" if top1 else ""))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mobilenetv4.roofline",
                                description="Roofline analysis (Eq. 1) of MobileNetV4 and "
                                "keras-application models; see docs/roofline.md")
    p.add_argument("--models", required=True,
                   help=f"comma-separated name[@resolution], e.g. {zoo.EXAMPLES}")
    p.add_argument("--precision", default="int8", choices=list(BYTES_PER_VALUE),
                   help="bytes per weight/activation: int8 1, fp16 2, fp32 4 (default int8)")
    p.add_argument("--latencies", help="CSV of measured latencies (columns model[,resolution],"
                   "latency_ms) to fit the ridge point to; models in it are added to --models")
    p.add_argument("--rp-max", type=float, default=500.0, help="sweep end (MACs/byte)")
    p.add_argument("--rp-step", type=float, default=0.5, help="sweep step (MACs/byte)")
    p.add_argument("--fig3-models", help="models for the columns of fig3_op_cost.png "
                   f"(default: the first {MAX_FIG3_COLUMNS} of --models)")
    p.add_argument("--per-model-plots", action="store_true",
                   help="also write op_cost_<model>.png for every model")
    p.add_argument("--out", required=True, help="output directory")
    args = p.parse_args(argv)
    if args.rp_max <= 0 or args.rp_step <= 0 or args.rp_step > args.rp_max:
        p.error("--rp-max and --rp-step must be > 0 with step <= max")
    try:
        specs = zoo.parse_list(args.models)
        measured = report.read_latencies(args.latencies) if args.latencies else {}
        labels = {s.label for s in specs}
        for key in measured:
            spec = zoo.resolve(key)
            if spec.label not in labels:
                specs.append(spec)
                labels.add(spec.label)
        fig3 = ([s.label for s in zoo.parse_list(args.fig3_models)] if args.fig3_models
                else [s.label for s in specs][:MAX_FIG3_COLUMNS])
        if set(fig3) - labels:
            raise ValueError(f"--fig3-models {sorted(set(fig3) - labels)} are not in --models")
    except ValueError as e:
        p.error(str(e))
    os.makedirs(args.out, exist_ok=True)
    say = lambda m: print(m, flush=True)  # noqa: E731
    ops_by = analyse(specs, args.precision, say)
    rps = np.arange(0.0, args.rp_max + args.rp_step / 2, args.rp_step)
    curves = {s.label: sweep(ops_by[s.label], rps) for s in specs}
    families = {s.label: s.family for s in specs}

    for s in specs:
        report.write_ops_csv(os.path.join(args.out, f"ops_{s.label.replace('@', '_')}.csv"),
                             ops_by[s.label])
        if args.per_model_plots:
            plots.plot_op_costs(
                os.path.join(args.out, f"op_cost_{s.label.replace('@', '_')}.png"),
                {s.label: ops_by[s.label]})
    report.write_sweep_csv(os.path.join(args.out, "sweep.csv"), rps, curves)
    rows = summary_rows(specs, ops_by, curves, rps, args.precision)
    with open(os.path.join(args.out, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    top1 = {s.label: zoo.PUBLISHED_TOP1[s.name][0] for s in specs
            if s.name in zoo.PUBLISHED_TOP1 and s.resolution == zoo.resolve(s.name).resolution}
    plots.plot_sweep(os.path.join(args.out, "fig2_sweep.png"), rps, curves, families, top1)
    plots.plot_op_costs(os.path.join(args.out, "fig3_op_cost.png"), {m: ops_by[m] for m in fig3})

    md = [f"# Roofline analysis ({args.precision}, {len(specs)} models)", "",
          f"Command: `python -m mobilenetv4.roofline {' '.join(argv or sys.argv[1:])}`", "",
          "Eq. 1 latency is given in G MAC-equivalents (ModelTime x PeakMACs); divide by the "
          "device's PeakMACs in GMAC/s for seconds. `mem_bound_rpX` is the share of Eq. 1 time "
          "spent in memory-bound ops at RP X.", "",
          report.markdown_table(list(rows[0]), [list(r.values()) for r in rows]), "",
          "![Fig. 2](fig2_sweep.png)", "", "![Fig. 3](fig3_op_cost.png)", ""]
    fit_models = [s for s in specs if s.label in measured or s.name in measured]
    if measured and len(fit_models) >= 3:
        lat = [measured.get(s.label, measured.get(s.name)) for s in fit_models]
        macs = [sum(o.macs for o in ops_by[s.label]) for s in fit_models]
        fit = fit_ridge_point(np.stack([curves[s.label] for s in fit_models]), rps, lat, macs)
        names = [s.label for s in fit_models]
        report.write_fit_csv(os.path.join(args.out, "fit.csv"), names, lat, macs, fit)
        plots.plot_fit(os.path.join(args.out, "fig6_fit.png"), fit, names, lat, macs)
        md += ["## Fit to measured latency (Table 16 / Fig. 6)", "",
               report.markdown_table(
                   ["models", "fitted RP (MACs/B)", "r_s-Roofline", "r_s-MAC",
                    "RMS ln error", "eff. PeakMACs (GMAC/s)", "eff. PeakMemBW (GB/s)",
                    "max r_s over sweep (RP range)"],
                   [[len(fit_models), f"{fit.ridge_point:g}", f"{fit.rs_roofline:.3f}",
                     f"{fit.rs_mac:.3f}", f"{fit.log_rmse:.3f}",
                     f"{fit.peak_macs_per_s / 1e9:.2f}", f"{fit.peak_mem_bw / 1e9:.2f}",
                     f"{fit.rs_max:.3f} ({fit.rs_max_range[0]:g}-{fit.rs_max_range[1]:g})"]]),
               "", "![Fig. 6](fig6_fit.png)", ""]
        say(f"fit: RP {fit.ridge_point:g} MACs/byte, r_s-Roofline {fit.rs_roofline:.3f}, "
            f"r_s-MAC {fit.rs_mac:.3f} over {len(fit_models)} models")
    elif measured:
        say("fewer than 3 models have measured latencies; skipping the fit")
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(md))
    say(f"wrote {args.out}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
