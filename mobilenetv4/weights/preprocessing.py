"""timm's evaluation preprocessing in TensorFlow: resize, centre crop, normalise.

timm (transforms_imagenet_eval) resizes the shorter side to floor(size / crop_pct) with the tag's
interpolation, centre-crops size x size, scales pixels to [0, 1] and normalises with mean/std.
torchvision resizes with PIL; TF's antialiased bicubic resize is the closest match (not bit-exact).

Why this is not `mobilenetv4.preprocessing.eval_crop` (the trainer's): both keep the central
crop_pct of the shorter side, but the trainer crops first and resizes bilinearly (Model Garden's
order), while timm resizes first (bicubic, antialiased) and crops. A timm checkpoint's published
accuracy is measured with timm's transform, so imported weights get it here. The normalisation is
the shared one: a tag's mean/std are the package's "imagenet" or "inception" constants
(`mobilenetv4.preprocessing`), applied by `mobilenetv4.preprocessing.normalize`.
"""

from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf

from mobilenetv4.preprocessing import normalize
from mobilenetv4.weights.pretrained import PretrainedCfg

_METHODS = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest", "area": "area"}


def make_preprocess(cfg: PretrainedCfg, test: bool = False) -> Callable[[tf.Tensor], tf.Tensor]:
    """A function mapping images (H, W, 3) or (N, H, W, 3), uint8 or float in [0, 255], to the
    normalised float32 crops the checkpoint expects. `test=True` uses the tag's larger test size."""
    size, crop_pct = cfg.eval_size_and_crop(test)
    scale_size = math.floor(size / crop_pct)
    if cfg.interpolation not in _METHODS:
        raise ValueError(
            f"unknown interpolation {cfg.interpolation!r}; use one of {sorted(_METHODS)}."
        )
    method = _METHODS[cfg.interpolation]
    name = cfg.normalization
    mean = tf.constant(cfg.mean, tf.float32) * 255.0
    std = tf.constant(cfg.std, tf.float32) * 255.0

    def preprocess(images):
        images = tf.convert_to_tensor(images)
        if images.shape.rank not in (3, 4) or images.shape[-1] != 3:
            raise ValueError(
                f"expected RGB images shaped (H, W, 3) or (N, H, W, 3), got {images.shape}."
            )
        x = tf.cast(images, tf.float32)
        h = tf.shape(x)[-3]
        w = tf.shape(x)[-2]
        # Shorter side to scale_size; the longer side truncates as torchvision does.
        short = tf.minimum(h, w)
        new_h = tf.where(h == short, scale_size, (scale_size * h) // short)
        new_w = tf.where(w == short, scale_size, (scale_size * w) // short)
        x = tf.image.resize(x, tf.stack([new_h, new_w]), method=method, antialias=True)
        top = tf.cast(tf.round(tf.cast(new_h - size, tf.float32) / 2.0), tf.int32)
        left = tf.cast(tf.round(tf.cast(new_w - size, tf.float32) / 2.0), tf.int32)
        x = x[..., top : top + size, left : left + size, :]
        # PIL resizes uint8 images to uint8: clip the bicubic overshoot and round like it does.
        x = tf.round(tf.clip_by_value(x, 0.0, 255.0))
        return normalize(x, name) if name else (x - mean) / std

    preprocess.__doc__ = (
        f"Preprocessing of {cfg.name}: resize shorter side to {scale_size} "
        f"({cfg.interpolation}), centre-crop {size}, normalise mean={cfg.mean} "
        f"std={cfg.std}."
    )
    return preprocess
