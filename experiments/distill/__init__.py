"""Offline distillation (paper Section 8, Appendix H).

The teacher labels augmented, JPEG-compressed images once (`generate`); the stored soft labels are
then mixed across datasets (`mixing`) and fed to the ordinary trainer for every student epoch.
"""
