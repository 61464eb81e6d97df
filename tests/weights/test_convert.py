"""`python -m mobilenetv4.convert`: timm checkpoint -> self-describing Keras weights -> TFLite."""
import os

import numpy as np
import pytest
import tf_keras as keras

import mobilenetv4
from mobilenetv4 import convert


def _convert(case, output, *extra):
  return convert.main(["--model", case.meta["model"], "--timm", case.checkpoint, "--output",
                       output, "--width_multiplier", str(case.meta["width_multiplier"]), *extra])


def _max_diff(model, case):
  return max(float(np.abs(model(x, training=False).numpy() - y).max())
             for x, y in zip(case.inputs, case.logits))


def test_h5_output_rebuilds_the_timm_model_without_flags(tmp_path, small_case):
  out = str(tmp_path / "conv_small.weights.h5")
  assert _convert(small_case, out) == 0
  # No padding / epsilon / width / classes given: the file's build record supplies them.
  model = mobilenetv4.create_model("conv_small", weights=out, input_shape=(None, None, 3))
  assert _max_diff(model, small_case) <= 1e-4
  assert model.pretrained_cfg.name == "conv_small.custom"  # 10 classes: no published tag
  with pytest.raises(ValueError, match="holds weights of 'conv_small', not 'conv_medium'"):
    mobilenetv4.create_model("conv_medium", weights=out)


def test_keras_output_loads_without_the_builder(tmp_path, small_case):
  out = str(tmp_path / "conv_small.keras")
  assert _convert(small_case, out) == 0
  model = keras.models.load_model(out)
  assert _max_diff(model, small_case) <= 1e-4


@pytest.mark.parametrize("damage,message", [
    ("truncate", "truncated"), ("pickle", "PyTorch .pth/.bin checkpoint"),
    ("variant", "does not fit model")])
def test_bad_checkpoints_exit_2_with_one_line_reason(tmp_path, capsys, small_case, damage,
                                                     message):
  path = tmp_path / "model.safetensors"
  data = open(small_case.checkpoint, "rb").read()
  model = "conv_small"
  if damage == "truncate":
    path.write_bytes(data[:-4096])
  elif damage == "pickle":
    path.write_bytes(b"\x80\x02" + data[:200])
  else:
    path.write_bytes(data)
    model = "hybrid_medium"
  code = convert.main(["--model", model, "--timm", str(path), "--output",
                       str(tmp_path / "out.h5"), "--width_multiplier", "0.125"])
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("error: ") and message in err
  assert "Traceback" not in err and not os.path.exists(tmp_path / "out.h5")


def test_refuses_to_overwrite_and_unknown_suffix(tmp_path, capsys, small_case):
  out = tmp_path / "w.h5"
  out.write_bytes(b"x")
  assert _convert(small_case, str(out)) == 2
  assert "exists; pass --overwrite" in capsys.readouterr().err
  assert _convert(small_case, str(tmp_path / "w.pt")) == 2
  assert "--output must end with" in capsys.readouterr().err


def test_converted_weights_export_to_int8_tflite(tmp_path, small_case):
  # The acceptance path: converter output straight into the export tool, no extra flags.
  export = pytest.importorskip("tflite.export")
  weights = str(tmp_path / "conv_small.weights.h5")
  assert _convert(small_case, weights) == 0
  out = str(tmp_path / "conv_small_int8.tflite")
  report = export.main(["--model", "conv_small", "--weights", weights, "--int8",
                        "--calibration", "random", "--num_calibration", "4", "--num_heldout", "2",
                        "--input_size", "32", "32", "--classes", "10", "--output", out])
  assert os.path.getsize(out) > 0
  assert report["graph"]["precision"] == "INT8"
  assert report["graph"]["op_histogram"]["CONV_2D"] > 0
