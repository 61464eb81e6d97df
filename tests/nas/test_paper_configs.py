"""gin_configs/nas_conv_{small,medium,large}.gin: every binding names a real parameter, the data
and strategy are a TPU user's, and the paper's targets (Appendix A) are reachable in the space,
without training."""

import inspect
import os
import re

import gin
import pytest

from experiments import trainer
from experiments.nas import cost_models, tunas
from mobilenetv4 import search_space, specs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGURABLES = {
    "search": tunas.search,
    "input_pipeline": trainer.input_pipeline,
    "make_cost_model": cost_models.make_cost_model,
}
BINDING = re.compile(r"^(\w+)\.(\w+)\s*=", re.MULTILINE)


@pytest.fixture
def parsed():
    def parse(name):
        gin.clear_config()
        path = os.path.join(REPO, "gin_configs", f"{name}.gin")
        gin.parse_config_file(path)  # an unknown configurable or parameter raises here
        with open(path) as f:
            return BINDING.findall(f.read())

    yield parse
    gin.clear_config()


@pytest.mark.parametrize(
    "size, paper_targets",
    [
        ("small", {"macs": 285e6, "roofline": 0.2e-3}),
        ("medium", {"roofline": 0.6e-3}),
        ("large", {"roofline": 2.3e-3}),
    ],
)
def test_paper_search_config(parsed, size, paper_targets):
    bindings = parsed(f"nas_conv_{size}")
    for configurable, parameter in bindings:
        assert configurable in CONFIGURABLES, f"{configurable}.{parameter}"
        signature = inspect.signature(CONFIGURABLES[configurable])
        assert parameter in signature.parameters, f"{configurable}.{parameter}"
    query = gin.query_parameter
    assert query("search.targets") == paper_targets
    assert query("search.beta") == -0.1 and query("search.strategy") == "tpu"
    assert query("input_pipeline.dataset").startswith(("tfds:", "tfrecord:"))
    assert 0 < query("input_pipeline.validation_fraction") < 0.1  # TuNAS's 50K held out
    space = search_space.get(query("search.space"), "coarse")
    image_size = query("input_pipeline.image_size")
    assert image_size == space.default_size
    targets = tunas.make_targets(paper_targets, image_size, 1000)  # the file's cost model settings
    cost_models.check_reachable(space, targets)  # UserError when a target is out of reach
    # The EdgeTPU stand-in is calibrated on Conv-S (0.2 ms) and puts each paper network within
    # 10% of its own latency target.
    paper = specs.get(f"conv_{size}")
    for t in targets:
        if t.cost_model.name == "roofline":
            assert abs(t.cost_model(paper) / t.value - 1) < 0.1
