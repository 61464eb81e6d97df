"""Gin-configured experiments: training (experiments.train), distillation, NAS."""
