"""Ridge-point sweeps of Eq. 1 over a range of hardware (paper Sec. 3, Appendix F)."""

from typing import Sequence

import numpy as np

from mobilenetv4.cli import UserError
from mobilenetv4.roofline.ops import RooflineOp, check_peak, check_ridge_point

# The paper's range: 0 (MACs only, CPU-like) to 500 MACs/byte (accelerator-like).
DEFAULT_RIDGE_POINTS = np.arange(0.0, 500.0 + 1e-9, 1.0)
# The orders of magnitude broken out in Fig. 3 and Figs. 7-9.
FIGURE_RIDGE_POINTS = (0.0, 5.0, 50.0, 500.0)


def _arrays(ops: Sequence[RooflineOp]):
    macs = np.array([op.macs for op in ops], dtype=np.float64)
    nbytes = np.array([op.bytes for op in ops], dtype=np.float64)
    return macs, nbytes


def op_times(ops: Sequence[RooflineOp], ridge_point: float, peak_macs: float = 1.0) -> np.ndarray:
    """Per-op max(MACTime, MemTime) at one ridge point (MAC-equivalents when peak_macs=1)."""
    check_ridge_point(ridge_point)
    check_peak(peak_macs, "peak_macs")
    macs, nbytes = _arrays(ops)
    return np.maximum(macs, nbytes * ridge_point) / peak_macs


def sweep(
    ops: Sequence[RooflineOp], ridge_points=DEFAULT_RIDGE_POINTS, peak_macs: float = 1.0
) -> np.ndarray:
    """ModelTime (Eq. 1) at each ridge point; shape [len(ridge_points)]."""
    rps = np.asarray(ridge_points, dtype=np.float64)
    if rps.ndim != 1 or not np.all(np.isfinite(rps)) or np.any(rps < 0):
        raise UserError("ridge_points must be a 1-D sequence of finite values >= 0 MACs/byte")
    check_peak(peak_macs, "peak_macs")
    macs, nbytes = _arrays(ops)
    return np.maximum(macs[None, :], nbytes[None, :] * rps[:, None]).sum(axis=1) / peak_macs


def memory_bound_fraction(ops: Sequence[RooflineOp], ridge_point: float) -> float:
    """Share of ModelTime spent in ops whose intensity is below the ridge point."""
    check_ridge_point(ridge_point)
    macs, nbytes = _arrays(ops)
    times = np.maximum(macs, nbytes * ridge_point)
    total = times.sum()
    return float(times[nbytes * ridge_point > macs].sum() / total) if total else 0.0
