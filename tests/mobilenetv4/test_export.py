"""Save/reload round trips and FP32 TFLite conversion (with the Appendix G transpose check)."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from ai_edge_litert.interpreter import Interpreter

import mobilenetv4

SIZE = 64  # small inputs keep conversion fast; the graph structure does not depend on size


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("hybrid_medium", "savedmodel"),
        ("hybrid_medium", "keras"),
        ("hybrid_medium", "h5"),
        ("conv_small", "keras"),
    ],
)
def test_save_and_reload_is_bit_identical(tmp_path, name, fmt):
    model = mobilenetv4.create_model(
        name, input_shape=(SIZE, SIZE, 3), classes=10, stochastic_depth_rate=0.1
    )
    # make BN statistics non-trivial so a lost moving mean/variance would show
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.random.rand(*layer.moving_mean.shape) * 0.1)
            layer.moving_variance.assign(np.random.rand(*layer.moving_variance.shape) + 0.5)
    x = np.random.rand(2, SIZE, SIZE, 3).astype("float32")
    expected = model(x, training=False).numpy()
    path = str(tmp_path / {"savedmodel": "saved", "keras": "m.keras", "h5": "m.h5"}[fmt])
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), expected)
    if fmt == "savedmodel":  # also without our Python classes, through plain TF (graph mode)
        restored = tf.saved_model.load(path)
        served = restored.signatures["serving_default"](image=tf.constant(x))["classifier"].numpy()
        graph_expected = tf.function(lambda t: model(t, training=False))(tf.constant(x)).numpy()
        np.testing.assert_array_equal(served, graph_expected)


def _convert(model):
    # The package's converter: the same flatbuffer as TFLiteConverter.from_keras_model, ~3x faster
    # (it does not trace every layer for Keras metadata).
    from tflite.export import convert

    return convert(model, "fp32")


def _op_histogram(flatbuffer):
    interpreter = Interpreter(model_content=flatbuffer)
    return collections.Counter(op["op_name"] for op in interpreter._get_ops_details())  # pylint: disable=protected-access


def _run(flatbuffer, x):
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("name", sorted(mobilenetv4.list_models()))
def test_every_model_converts_to_fp32_tflite(name):
    model = mobilenetv4.create_model(name, input_shape=(SIZE, SIZE, 3))
    flatbuffer = _convert(model)
    x = np.random.rand(1, SIZE, SIZE, 3).astype("float32")
    expected = model(x, training=False).numpy()
    # float32 kernels differ in summation order; bound the error relative to the logits' scale
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(_run(flatbuffer, x), expected, rtol=0, atol=1e-4 * scale)
    ops = _op_histogram(flatbuffer)
    if name.startswith("hybrid"):
        assert ops["BATCH_MATMUL"] == 2 * 8, ops  # QK^T and AV in each of the 8 attention blocks
        assert ops["TRANSPOSE"] == 0, ops  # Appendix G: the Mobile MQA layout needs none


def test_fig10_mqa_layout_does_need_transposes():
    # The Table 17 baseline: same weights and maths, head-major einsums.
    model = mobilenetv4.create_model(
        "hybrid_medium", input_shape=(SIZE, SIZE, 3), attention_type="mqa"
    )
    ops = _op_histogram(_convert(model))
    assert ops["TRANSPOSE"] >= 8, ops
