"""Fit a roofline to measured latencies (paper Appendix F, Table 16 and Fig. 6).

For each candidate ridge point RP, Eq. 1 predicts latency = T(RP) / PeakMACs, where T is the
sweep in MAC-equivalents. One device constant (PeakMACs) is then free; we choose it and RP by
least squares on log latency, which weighs a 2x error on a small model like one on a large model.
For that RP we report Spearman's rank correlation of the prediction with the measurement
(r_s-Roofline) next to that of plain MAC counts (r_s-MAC), as Table 16 does.
"""

import dataclasses
from typing import Sequence

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class RooflineFit:
    ridge_point: float  # MACs/byte that best predicts the measurement
    peak_macs_per_s: float  # effective PeakMACs at that RP
    peak_mem_bw: float  # effective PeakMemBW in bytes/s (PeakMACs / RP; inf at RP 0)
    rs_roofline: float  # Spearman r_s(measured, roofline prediction at ridge_point)
    rs_mac: float  # Spearman r_s(measured, total MACs)
    log_rmse: float  # RMS of ln(measured / predicted) at ridge_point
    rs_max: float  # best r_s reachable at any swept RP
    rs_max_range: tuple  # (lowest, highest) RP that reaches rs_max
    ridge_points: np.ndarray  # the swept RPs
    log_rmse_curve: np.ndarray  # log_rmse at each swept RP
    rs_curve: np.ndarray  # r_s-Roofline at each swept RP
    predicted_s: np.ndarray  # prediction in seconds per model at ridge_point


def spearman(a, b) -> float:
    return float(stats.spearmanr(a, b).statistic)


def fit_ridge_point(
    sweeps: np.ndarray,
    ridge_points: Sequence[float],
    measured_s: Sequence[float],
    macs: Sequence[float],
) -> RooflineFit:
    """Fit RP and PeakMACs to measured latencies.

    sweeps: [models, ridge points] ModelTime in MAC-equivalents (Eq. 1 with PeakMACs = 1).
    measured_s: measured latency per model in seconds. macs: total MACs per model.
    """
    sweeps = np.asarray(sweeps, dtype=np.float64)
    rps = np.asarray(ridge_points, dtype=np.float64)
    measured = np.asarray(measured_s, dtype=np.float64)
    if sweeps.shape != (len(measured), len(rps)):
        raise ValueError(
            f"sweeps has shape {sweeps.shape}; expected (models={len(measured)}, "
            f"ridge points={len(rps)})"
        )
    if len(measured) < 3:
        raise ValueError(
            f"need measured latencies of at least 3 models to fit, got {len(measured)}"
        )
    if not (
        np.all(np.isfinite(measured)) and np.all(np.isfinite(sweeps)) and np.all(np.isfinite(rps))
    ):
        raise ValueError(
            "latencies, roofline predictions and ridge points must all be finite "
            "numbers (no NaN or inf)"
        )
    if np.any(measured <= 0) or np.any(sweeps <= 0):
        raise ValueError("latencies and roofline predictions must all be > 0")
    # ln(measured) = ln(T) - ln(PeakMACs): the best ln(PeakMACs) is the mean offset.
    offsets = np.log(sweeps) - np.log(measured)[:, None]
    log_peak = offsets.mean(axis=0)
    log_rmse = np.sqrt(((offsets - log_peak) ** 2).mean(axis=0))
    best = int(np.argmin(log_rmse))
    rs_curve = np.array([spearman(measured, sweeps[:, j]) for j in range(len(rps))])
    rs_max = float(np.nanmax(rs_curve))
    at_max = rps[np.isclose(rs_curve, rs_max)]
    peak = float(np.exp(log_peak[best]))
    rp = float(rps[best])
    return RooflineFit(
        ridge_point=rp,
        peak_macs_per_s=peak,
        peak_mem_bw=peak / rp if rp > 0 else float("inf"),
        rs_roofline=float(rs_curve[best]),
        rs_mac=spearman(measured, macs),
        log_rmse=float(log_rmse[best]),
        rs_max=rs_max,
        rs_max_range=(float(at_max.min()), float(at_max.max())),
        ridge_points=rps,
        log_rmse_curve=log_rmse,
        rs_curve=rs_curve,
        predicted_s=sweeps[:, best] / peak,
    )
