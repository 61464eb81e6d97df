"""Figures of the roofline analysis (paper Figs. 2, 3, 6 and 7-9), written as PNG with Agg,
atomically (a temporary file in the same folder, renamed when complete)."""

from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from mobilenetv4 import fileio  # noqa: E402
from mobilenetv4.roofline.ops import RooflineOp  # noqa: E402
from mobilenetv4.roofline.sweep import FIGURE_RIDGE_POINTS, op_times  # noqa: E402

KIND_COLORS = {
    "conv": "tab:blue",
    "dwconv": "tab:orange",
    "dense": "tab:green",
    "attention_matmul": "tab:red",
    "pool": "tab:gray",
}
KIND_LABELS = {
    "conv": "Conv2D",
    "dwconv": "DW-Conv2D",
    "dense": "FC / Dense",
    "attention_matmul": "attention matmul",
    "pool": "pooling",
}
_FAMILY_STYLE = {
    "MobileNetV4-Conv": ("tab:red", "o"),
    "MobileNetV4-Hybrid": ("darkred", "*"),
    "MobileNetV1": ("tab:blue", "s"),
    "MobileNetV2": ("tab:green", "^"),
    "MobileNetV3": ("tab:purple", "D"),
    "EfficientNet": ("tab:orange", "v"),
    "EfficientNetV2": ("goldenrod", "<"),
    "ConvNeXt": ("tab:brown", "P"),
}
GIGA = 1e9


def save(fig, path: str, dpi: int) -> None:
    """Writes `fig` as PNG to `path` atomically and closes it."""
    try:
        with fileio.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)


def family_style(family: str):
    return _FAMILY_STYLE.get(family, ("black", "x"))


def pareto_front(latency: Sequence[float], accuracy: Sequence[float]) -> List[int]:
    """Indices of models that no other model beats on both latency (lower) and accuracy."""
    order = np.argsort(latency)
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(int(i))
            best = accuracy[i]
    return front


def _log_axis_labels(axis):
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))


def plot_sweep(
    path: str,
    ridge_points,
    curves: Dict[str, np.ndarray],
    families: Dict[str, str],
    top1: Dict[str, float],
    panel_rps=FIGURE_RIDGE_POINTS,
) -> None:
    """Fig. 2: roofline latency vs ridge point (top), accuracy vs latency at a few RPs (bottom)."""
    with_acc = [m for m in curves if m in top1]
    panels = panel_rps if len(with_acc) >= 2 else ()
    fig = plt.figure(figsize=(4.0 * max(len(panels), 3), 4.6 + (4.0 if panels else 0)))
    grid = fig.add_gridspec(
        2 if panels else 1, max(len(panels), 1), height_ratios=(1.15, 1) if panels else None
    )
    ax = fig.add_subplot(grid[0, :])
    rps = np.asarray(ridge_points)
    for label, curve in curves.items():
        color, marker = family_style(families[label])
        ax.plot(rps, curve / GIGA, color=color, lw=1.1)
        ax.annotate(
            label.split("@")[0],
            (rps[-1], curve[-1] / GIGA),
            fontsize=6,
            color=color,
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
        )
    for fam in sorted(set(families.values())):
        color, marker = family_style(fam)
        ax.plot([], [], color=color, label=fam)
    ax.set_yscale("log")
    _log_axis_labels(ax.yaxis)
    ax.set_xlim(rps[0], rps[-1] * 1.12)
    ax.set_xlabel("ridge point (MACs/byte)")
    ax.set_ylabel("ModelTime x PeakMACs\n(G MAC-equivalents)")
    ax.set_title("Eq. 1 roofline latency vs ridge point (RP 0 = MAC count)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    for k, rp in enumerate(panels):
        ax = fig.add_subplot(grid[1, k])
        j = int(np.argmin(np.abs(rps - rp)))
        lat = np.array([curves[m][j] / GIGA for m in with_acc])
        acc = np.array([top1[m] for m in with_acc])
        for fam in sorted({families[m] for m in with_acc}):
            idx = sorted(
                (i for i, m in enumerate(with_acc) if families[m] == fam), key=lambda i: lat[i]
            )
            color, marker = family_style(fam)
            ax.plot(lat[idx], acc[idx], marker=marker, color=color, lw=1, ms=5, label=fam)
        front = pareto_front(lat, acc)
        ax.plot(lat[front], acc[front], "k--", lw=0.8, alpha=0.6, label="Pareto front")
        ax.set_xscale("log")
        _log_axis_labels(ax.xaxis)
        ax.set_title(f"RP = {rp:g} MACs/byte", fontsize=10)
        ax.set_xlabel("roofline latency (G MAC-eq.)")
        ax.grid(True, which="both", alpha=0.3)
        if k == 0:
            ax.set_ylabel("published ImageNet top-1 (%)")
            ax.legend(fontsize=6)
    fig.tight_layout()
    save(fig, path, dpi=110)


def plot_op_costs(
    path: str,
    models: Dict[str, List[RooflineOp]],
    ridge_points=FIGURE_RIDGE_POINTS,
    peak_macs: float = GIGA,
) -> None:
    """Fig. 3 / Figs. 7-9: per-op Eq. 1 time through each network (columns) at each RP (rows)."""
    names = list(models)
    fig, axes = plt.subplots(
        len(ridge_points),
        len(names),
        squeeze=False,
        figsize=(4.2 * len(names), 1.9 * len(ridge_points)),
    )
    for c, name in enumerate(names):
        ops = models[name]
        colors = [KIND_COLORS.get(op.kind, "black") for op in ops]
        for r, rp in enumerate(ridge_points):
            ax = axes[r, c]
            t = op_times(ops, rp, peak_macs)
            ax.bar(np.arange(len(ops)), t, width=1.0, color=colors)
            ax.text(
                0.99,
                0.95,
                f"RP {rp:g}: total {t.sum():.3g}",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=7,
            )
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"RP {rp:g}\nG MAC-eq.", fontsize=7)
            if r == len(ridge_points) - 1:
                ax.set_xlabel("op index (input -> output)", fontsize=7)
    kinds = sorted({op.kind for ops in models.values() for op in ops}, key=list(KIND_COLORS).index)
    handles = [plt.Rectangle((0, 0), 1, 1, color=KIND_COLORS[k]) for k in kinds]
    fig.legend(
        handles,
        [KIND_LABELS[k] for k in kinds],
        loc="lower center",
        ncol=len(kinds),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, path, dpi=110)


def plot_fit(path: str, fit, labels: Sequence[str], measured_s, macs) -> None:
    """Fig. 6 / Table 16: measured latency against the fitted roofline and against MACs."""
    measured_ms = np.asarray(measured_s) * 1e3
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, x, xlabel, rs in (
        (
            axes[0],
            fit.predicted_s * 1e3,
            f"roofline prediction at RP {fit.ridge_point:g} (ms)",
            fit.rs_roofline,
        ),
        (axes[1], np.asarray(macs) / GIGA, "GMACs", fit.rs_mac),
    ):
        ax.scatter(x, measured_ms, s=14)
        for xi, yi, lab in zip(x, measured_ms, labels):
            ax.annotate(lab, (xi, yi), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("measured latency (ms)")
        ax.set_title(f"Spearman r_s = {rs:.3f}")
        ax.grid(True, which="both", alpha=0.3)
    lo, hi = measured_ms.min(), measured_ms.max()
    axes[0].plot([lo, hi], [lo, hi], "k:", lw=0.8)
    ax = axes[2]
    ax.plot(fit.ridge_points, fit.log_rmse_curve, color="tab:blue")
    ax.set_xlabel("ridge point (MACs/byte)")
    ax.set_ylabel("RMS of ln(measured / predicted)", color="tab:blue")
    ax.axvline(fit.ridge_point, color="k", ls="--", lw=0.8)
    ax2 = ax.twinx()
    ax2.plot(fit.ridge_points, fit.rs_curve, color="tab:red")
    ax2.set_ylabel("Spearman r_s (roofline)", color="tab:red")
    ax.set_title(f"fit: RP {fit.ridge_point:g}, r_s {fit.rs_roofline:.3f} (MACs: {fit.rs_mac:.3f})")
    fig.tight_layout()
    save(fig, path, dpi=120)
