"""tflite.export rebuilds a searched architecture from the build record of its weights."""

import numpy as np

from experiments.nas import model as nas_model_lib
from mobilenetv4 import build_record, search_space
from tflite import export


def test_export_resolves_a_searched_architecture_from_its_weights(tmp_path):
    space = search_space.get("quickstart", "one_stage")
    arch = space.decode({"stage3/block1/start_dw": 5, "stage2/width": 0.5}, name="found")
    spec = tmp_path / "architecture.json"
    spec.write_text(
        __import__("json").dumps({"architecture": search_space.architecture_to_dict(arch)})
    )
    model = nas_model_lib.nas_model(10, 32, architecture=str(spec))
    weights = str(tmp_path / "final.weights.h5")
    model.save_weights(weights)
    build_record.write_h5(weights, model.build_record)
    args = export.parse_args(
        ["--weights", weights, "--fp32", "--output", str(tmp_path / "m.tflite")]
    )
    settings = export.resolve(args)
    rebuilt = settings["keras_model"]
    assert settings["model_name"] == "searched:found"
    assert settings["input_size"] == (32, 32) and settings["classes"] == 10
    for a, b in zip(model.get_weights(), rebuilt.get_weights()):
        np.testing.assert_array_equal(a, b)
