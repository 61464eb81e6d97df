"""CSV and Markdown outputs of the roofline analysis, and reading measured latencies."""
import csv
import os
from typing import Dict, List, Sequence

import numpy as np

from mobilenetv4.roofline.ops import RooflineOp
from mobilenetv4.roofline.sweep import FIGURE_RIDGE_POINTS, op_times

# Accepted latency columns, with the factor that turns them into seconds.
LATENCY_COLUMNS = {"latency_ms": 1e-3, "mean_ms": 1e-3, "avg_ms": 1e-3, "median_ms": 1e-3,
                   "latency_us": 1e-6, "mean_us": 1e-6, "avg_us": 1e-6, "latency_s": 1.0}
MODEL_COLUMNS = ("model", "name")


def read_latencies(path: str) -> Dict[str, float]:
    """Measured latency in seconds by model spec (`name@res` when the CSV has `resolution`)."""
    if not os.path.exists(path):
        raise ValueError(f"latency CSV {path!r} not found; write one with "
                         "python -m mobilenetv4.roofline.measure --models ... --out FILE")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0]) if rows else []
    model_col = next((c for c in MODEL_COLUMNS if c in fields), None)
    lat_col = next((c for c in LATENCY_COLUMNS if c in fields), None)
    if model_col is None or lat_col is None:
        raise ValueError(f"latency CSV {path!r} has columns {fields}; it needs a model column "
                         f"({' or '.join(MODEL_COLUMNS)}) and a latency column (one of "
                         f"{', '.join(LATENCY_COLUMNS)})")
    out = {}
    for i, row in enumerate(rows, 2):
        try:
            seconds = float(row[lat_col]) * LATENCY_COLUMNS[lat_col]
        except ValueError:
            raise ValueError(f"{path}:{i}: latency {row[lat_col]!r} is not a number") from None
        if seconds <= 0:
            raise ValueError(f"{path}:{i}: latency must be > 0, got {row[lat_col]}")
        res = (row.get("resolution") or "").strip()
        out[f"{row[model_col].strip()}@{res}" if res else row[model_col].strip()] = seconds
    return out


def _write(path: str, header: Sequence[str], rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_ops_csv(path: str, ops: List[RooflineOp], ridge_points=FIGURE_RIDGE_POINTS) -> None:
    """Per-op table: MACs, bytes, intensity and Eq. 1 time (MAC-equivalents) at each RP."""
    times = [op_times(ops, rp) for rp in ridge_points]
    header = ["index", "block", "name", "kind", "macs", "weight_bytes", "activation_bytes",
              "bytes", "intensity_macs_per_byte"] + [f"time_rp{rp:g}" for rp in ridge_points]
    rows = [[i, op.block, op.name, op.kind, op.macs, op.weight_bytes, op.activation_bytes,
             op.bytes, f"{op.intensity:.4g}"] + [f"{t[i]:.6g}" for t in times]
            for i, op in enumerate(ops)]
    _write(path, header, rows)


def write_sweep_csv(path: str, ridge_points, curves: Dict[str, np.ndarray]) -> None:
    labels = list(curves)
    rows = [[f"{rp:g}"] + [f"{curves[m][j]:.6g}" for m in labels]
            for j, rp in enumerate(ridge_points)]
    _write(path, ["ridge_point"] + labels, rows)


def write_fit_csv(path: str, labels, measured_s, macs, fit) -> None:
    rows = [[lab, f"{m * 1e3:.4f}", f"{p * 1e3:.4f}", int(mac)]
            for lab, m, p, mac in zip(labels, measured_s, fit.predicted_s, macs)]
    _write(path, ["model", "measured_ms", "roofline_ms", "macs"], rows)
    curve = os.path.splitext(path)[0] + "_curve.csv"
    _write(curve, ["ridge_point", "log_rmse", "rs_roofline"],
           [[f"{rp:g}", f"{e:.5f}", f"{r:.5f}"] for rp, e, r in
            zip(fit.ridge_points, fit.log_rmse_curve, fit.rs_curve)])


def markdown_table(header: Sequence[str], rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
