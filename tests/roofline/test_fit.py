"""The ridge-point fit recovers a known roofline; Spearman figures behave as Table 16 reads."""

import numpy as np
import pytest

from mobilenetv4.roofline import RooflineOp, fit_ridge_point, sweep


def _model(macs, nbytes):
    return [
        RooflineOp(
            "b",
            "op",
            "conv",
            macs=macs,
            weight_bytes=nbytes // 2,
            activation_bytes=nbytes - nbytes // 2,
        )
    ]


def _zoo():
    # Several "models" whose MAC order differs from their byte order: a memory-heavy model
    # with few MACs (like a wide FC head) and a compute-heavy one with few bytes.
    shapes = [(1e6, 1e5), (2e6, 2e4), (3e6, 2e6), (4e6, 5e4), (6e6, 3e5), (8e6, 1e6)]
    return [_model(int(m), int(b)) + _model(int(m) // 3, int(b) // 4) for m, b in shapes]


def test_fit_recovers_known_ridge_point_and_peak():
    models = _zoo()
    rps = np.arange(0, 500.5, 0.5)
    sweeps = np.stack([sweep(ops, rps) for ops in models])
    true_rp, peak = 40.0, 2e9  # 2 GMAC/s, 50 MB/s
    measured = sweeps[:, int(true_rp / 0.5)] / peak
    macs = [sum(o.macs for o in ops) for ops in models]
    fit = fit_ridge_point(sweeps, rps, measured, macs)
    assert fit.ridge_point == pytest.approx(true_rp)
    assert fit.peak_macs_per_s == pytest.approx(peak)
    assert fit.peak_mem_bw == pytest.approx(peak / true_rp)
    assert fit.log_rmse == pytest.approx(0.0, abs=1e-9)
    assert fit.rs_roofline == pytest.approx(1.0)
    assert fit.rs_mac < 0.9  # MAC count misorders the memory-bound models
    assert fit.rs_max_range[0] <= true_rp <= fit.rs_max_range[1]
    assert np.allclose(fit.predicted_s, measured)


def test_fit_on_mac_bound_device_picks_low_ridge_point():
    models = _zoo()
    rps = np.arange(0, 501, 1.0)
    sweeps = np.stack([sweep(ops, rps) for ops in models])
    macs = np.array([sum(o.macs for o in ops) for ops in models], dtype=float)
    fit = fit_ridge_point(sweeps, rps, macs / 1e9 * 1.05, macs)
    assert fit.ridge_point < 2.0  # where every op is still compute bound
    assert fit.rs_mac == pytest.approx(1.0)


def test_fit_errors_are_clear():
    rps = np.arange(3.0)
    with pytest.raises(ValueError, match="at least 3 models"):
        fit_ridge_point(np.ones((2, 3)), rps, [1.0, 2.0], [1, 2])
    with pytest.raises(ValueError, match="expected \\(models=3, ridge points=3\\)"):
        fit_ridge_point(np.ones((3, 4)), rps, [1.0, 2.0, 3.0], [1, 2, 3])
    with pytest.raises(ValueError, match="must all be > 0"):
        fit_ridge_point(np.ones((3, 3)), rps, [1.0, 0.0, 3.0], [1, 2, 3])
    for measured, rp in (
        ([1.0, float("nan"), 3.0], rps),
        ([1.0, float("inf"), 3.0], rps),
        ([1.0, 2.0, 3.0], [0.0, 1.0, float("nan")]),
    ):
        with pytest.raises(ValueError, match="finite numbers"):
            fit_ridge_point(np.ones((3, 3)), rp, measured, [1, 2, 3])
