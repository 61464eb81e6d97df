"""Gin-configured experiments: training (experiments.train, the loop in experiments.trainer and
experiments.loop, data in experiments.data), knowledge distillation (experiments.distill) and the
training-step benchmark (experiments.benchmark_train)."""
