"""CSV and Markdown outputs of the roofline analysis (through `mobilenetv4.tables`, written
atomically), and reading measured latencies."""

import csv
import math
import os
from typing import Dict, List, Sequence

import numpy as np

from mobilenetv4.cli import UserError
from mobilenetv4.roofline.ops import RooflineOp
from mobilenetv4.roofline.sweep import FIGURE_RIDGE_POINTS, op_times
from mobilenetv4.tables import Table

# Accepted latency columns, with the factor that turns them into seconds.
LATENCY_COLUMNS = {
    "latency_ms": 1e-3,
    "mean_ms": 1e-3,
    "avg_ms": 1e-3,
    "median_ms": 1e-3,
    "latency_us": 1e-6,
    "mean_us": 1e-6,
    "avg_us": 1e-6,
    "latency_s": 1.0,
}
MODEL_COLUMNS = ("model", "name")
MEASURE_COMMAND = "python -m tflite.roofline_latency --models ... --output FILE"


def read_latencies(path: str) -> Dict[str, float]:
    """Measured latency in seconds by model spec (`name@res` when the CSV has `resolution`).
    Raises UserError naming the file and line of anything unusable (missing, not a CSV, no
    model or latency column, a latency that is not a finite number > 0)."""
    if not os.path.isfile(path):
        raise UserError(f"latency CSV {path!r} not found; write one with {MEASURE_COMMAND}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"latency CSV {path!r} is not a readable CSV file: {e}") from None
    fields = list(rows[0]) if rows else []
    model_col = next((c for c in MODEL_COLUMNS if c in fields), None)
    lat_col = next((c for c in LATENCY_COLUMNS if c in fields), None)
    if model_col is None or lat_col is None:
        raise UserError(
            f"latency CSV {path!r} has columns {fields}; it needs a model column "
            f"({' or '.join(MODEL_COLUMNS)}) and a latency column (one of "
            f"{', '.join(LATENCY_COLUMNS)})"
        )
    out = {}
    for i, row in enumerate(rows, 2):
        text = (row.get(lat_col) or "").strip()
        try:
            seconds = float(text) * LATENCY_COLUMNS[lat_col]
        except ValueError:
            raise UserError(f"{path}:{i}: latency {text!r} is not a number") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise UserError(f"{path}:{i}: latency must be a finite number > 0, got {text}")
        model = (row.get(model_col) or "").strip()
        if not model:
            raise UserError(f"{path}:{i}: the {model_col} column is empty")
        res = (row.get("resolution") or "").strip()
        out[f"{model}@{res}" if res else model] = seconds
    return out


def ops_table(ops: List[RooflineOp], ridge_points=FIGURE_RIDGE_POINTS) -> Table:
    """Per-op table: MACs, bytes, intensity and Eq. 1 time (MAC-equivalents) at each RP."""
    times = [op_times(ops, rp) for rp in ridge_points]
    header = [
        "index",
        "block",
        "name",
        "kind",
        "macs",
        "weight_bytes",
        "activation_bytes",
        "bytes",
        "intensity_macs_per_byte",
    ] + [f"time_rp{rp:g}" for rp in ridge_points]
    return Table(
        header,
        [
            [
                str(i),
                op.block,
                op.name,
                op.kind,
                str(op.macs),
                str(op.weight_bytes),
                str(op.activation_bytes),
                str(op.bytes),
                f"{op.intensity:.4g}",
            ]
            + [f"{t[i]:.6g}" for t in times]
            for i, op in enumerate(ops)
        ],
    )


def write_ops_csv(path: str, ops: List[RooflineOp], ridge_points=FIGURE_RIDGE_POINTS) -> None:
    ops_table(ops, ridge_points).write(path, "csv")


def write_sweep_csv(path: str, ridge_points, curves: Dict[str, np.ndarray]) -> None:
    labels = list(curves)
    Table(
        ["ridge_point"] + labels,
        [
            [f"{rp:g}"] + [f"{curves[m][j]:.6g}" for m in labels]
            for j, rp in enumerate(ridge_points)
        ],
    ).write(path, "csv")


def fit_curve_path(path: str) -> str:
    return os.path.splitext(path)[0] + "_curve.csv"


def write_fit_csv(path: str, labels, measured_s, macs, fit) -> None:
    Table(
        ["model", "measured_ms", "roofline_ms", "macs"],
        [
            [lab, f"{m * 1e3:.4f}", f"{p * 1e3:.4f}", str(int(mac))]
            for lab, m, p, mac in zip(labels, measured_s, fit.predicted_s, macs)
        ],
    ).write(path, "csv")
    Table(
        ["ridge_point", "log_rmse", "rs_roofline"],
        [
            [f"{rp:g}", f"{e:.5f}", f"{r:.5f}"]
            for rp, e, r in zip(fit.ridge_points, fit.log_rmse_curve, fit.rs_curve)
        ],
    ).write(fit_curve_path(path), "csv")


def markdown_table(header: Sequence[str], rows) -> str:
    return Table(header, [[str(c) for c in row] for row in rows]).markdown().rstrip("\n")
