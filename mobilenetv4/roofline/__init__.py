"""Roofline analysis of tf_keras models (MobileNetV4 paper Sec. 3, Eq. 1, Appendix F).

    from mobilenetv4.roofline import roofline_ops, sweep, model_time
    ops = roofline_ops(model, "int8")       # per-layer MACs, weight and activation bytes
    model_time(ops, ridge_point=50.0)       # Eq. 1 in MAC-equivalents (divide by PeakMACs)

`roofline_ops` (which needs tf_keras) is imported on first use, so the model resolver
(`mobilenetv4.roofline.zoo`) and the formulas load without TensorFlow.
"""

from mobilenetv4.roofline.fit import RooflineFit, fit_ridge_point, spearman
from mobilenetv4.roofline.ops import (
    BYTES_PER_VALUE,
    RooflineOp,
    bytes_per_value,
    make_op,
    model_time,
    op_time,
    ridge_point,
)
from mobilenetv4.roofline.sweep import (
    DEFAULT_RIDGE_POINTS,
    FIGURE_RIDGE_POINTS,
    memory_bound_fraction,
    op_times,
    sweep,
)

__all__ = [
    "BYTES_PER_VALUE",
    "DEFAULT_RIDGE_POINTS",
    "FIGURE_RIDGE_POINTS",
    "RooflineFit",
    "RooflineOp",
    "bytes_per_value",
    "fit_ridge_point",
    "make_op",
    "memory_bound_fraction",
    "model_time",
    "op_time",
    "op_times",
    "ridge_point",
    "roofline_ops",
    "spearman",
    "sweep",
]


def __getattr__(name):
    if name == "roofline_ops":
        from mobilenetv4.roofline.analysis import roofline_ops

        return roofline_ops
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
