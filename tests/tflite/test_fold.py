"""Normalisation folded into the stem (tflite.fold): the folded graph computes what the graph with
separate normalisation ops computes, in Keras (exactly, every padding case) and as .tflite files on
real images (scikit-learn's digits), and runs no op over the pixels before the first convolution."""

import numpy as np
import pytest

from mobilenetv4 import preprocessing
from tflite import analysis, calibration, export, fold, models, runtime


def tiny_model(size, padding="same", layer_scale=None):
    """Our stem (ConvBN 3x3 stride 2, as every MobileNetV4's) + a UIB or a Mobile MQA block with
    layer scale + classifier: the layers the fold and the stand-in weights touch, at test cost."""
    import tf_keras as keras
    import mobilenetv4

    L = mobilenetv4.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = L.ConvBN(16, 3, 2, activation="relu", padding=padding, name="stem")(inputs)
    if layer_scale is None:
        x = L.ConvBN(16, 3, 1, depthwise=True, activation="relu", name="dw")(x)
    else:
        x = L.MobileAttentionBlock(
            num_heads=2, key_dim=8, kv_strides=2, layer_scale_init_value=layer_scale, name="attn"
        )(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(x), name="tiny")


def test_same_pads_match_tensorflow():
    import tensorflow as tf

    for size, kernel, stride in [(32, 3, 2), (33, 3, 2), (32, 5, 1), (7, 3, 2), (224, 3, 2)]:
        before, after = fold.same_pads(size, kernel, stride)
        x = tf.ones((1, size, size, 1))
        w = tf.ones((kernel, kernel, 1, 1))
        same = tf.nn.conv2d(x, w, stride, "SAME")
        explicit = tf.nn.conv2d(
            tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]]), w, stride, "VALID"
        )
        np.testing.assert_array_equal(same.numpy(), explicit.numpy())


@pytest.mark.parametrize(
    "padding, size, normalization",
    [("same", 32, "imagenet"), ("same", 33, "imagenet"), ("symmetric", 32, "inception")],
)
def test_folded_stem_equals_normalise_then_pad(padding, size, normalization):
    """Border pixels included: the mean-pixel padding is what zero padding of the normalised
    image is (a fold that kept SAME zero padding would differ on the border)."""
    model = tiny_model(size, padding)
    images = np.random.default_rng(0).uniform(0, 255, (8, size, size, 3)).astype(np.float32)
    separate = export.with_pixel_input(model, normalization, (size, size), fold=False)
    models.stand_in_statistics(separate, images)
    folded = export.with_pixel_input(model, normalization, (size, size))
    assert fold.foldable_stem(model) is not None
    assert "normalize" in [layer.name for layer in separate.layers]
    assert "normalize" not in [layer.name for layer in folded.layers]
    mean, std = (255 * np.array(v) for v in preprocessing.NORMALIZATIONS[normalization])
    stem = model.get_layer("stem")
    # the stem's output alone (before the rest of the network), border included
    sep_stem = stem((images[:2] - mean) / std, training=False).numpy()
    fold_stem = folded.get_layer("stem_on_pixels")(images[:2]).numpy()
    np.testing.assert_allclose(fold_stem, sep_stem, atol=1e-4 * np.abs(sep_stem).max())
    a = separate.predict(images, verbose=0)
    b = folded.predict(images, verbose=0)
    np.testing.assert_allclose(b, a, atol=1e-4 * np.abs(a).max())


def test_zero_border_differs_only_on_the_border():
    """stem_border="zero" pads the pixels with black pixels (SAME on the pixels): the stem's output
    equals normalise-then-pad inside and differs on the padded bottom row and right column (a
    stride-2 SAME stem on an even input pads nothing at the top and left)."""
    size = 32
    model = tiny_model(size)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    zero = export.with_pixel_input(model, "imagenet", (size, size), stem_border="zero")
    mean, std = (255 * np.array(v) for v in preprocessing.NORMALIZATIONS["imagenet"])
    exact = model.get_layer("stem")((images - mean) / std, training=False).numpy()
    out = zero.get_layer("stem_on_pixels")(images).numpy()
    tol = 1e-4 * np.abs(exact).max()
    np.testing.assert_allclose(out[:, :-1, :-1], exact[:, :-1, :-1], atol=tol)
    assert np.abs(out[:, -1] - exact[:, -1]).max() > 100 * tol
    assert np.abs(out[:, :, -1] - exact[:, :, -1]).max() > 100 * tol


def test_zero_point_border_takes_pixels_minus_the_offset():
    """stem_border="zero_point": the model takes pixel - c (c = 114 for ImageNet, the whole pixel
    nearest the mean in normalised units; 128 for Inception, exact) and pads that with zeros, i.e.
    the pixels with pixel c: the stem's output equals normalise-then-pad inside, and on the border
    it is much closer than the black border's."""
    assert export.pixel_offset("imagenet") == 114 and export.pixel_offset("inception") == 128
    assert export.pixel_offset("none") == 0
    size = 32
    model = tiny_model(size)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    assert export.input_offset(model, "imagenet", "zero_point") == 114
    assert export.input_offset(model, "imagenet", "mean") == 0
    mean, std = (255 * np.array(v) for v in preprocessing.NORMALIZATIONS["imagenet"])
    exact = model.get_layer("stem")((images - mean) / std, training=False).numpy()
    tol = 1e-4 * np.abs(exact).max()
    out = {}
    for border, offset in (("zero_point", 114), ("zero", 0)):
        wrapped = export.with_pixel_input(model, "imagenet", (size, size), stem_border=border)
        out[border] = wrapped.get_layer("stem_on_pixels")(images - offset).numpy()
        np.testing.assert_allclose(out[border][:, :-1, :-1], exact[:, :-1, :-1], atol=tol)
    err = {k: np.abs(v - exact).max() for k, v in out.items()}
    assert 100 * tol < err["zero_point"] < err["zero"] / 5, err
    # the calibration range pinned to [-c, 255 - c]: scale 1, zero point c - 128
    cal = export.pin_pixel_range(images, 114)
    assert cal.min() == -114 and cal.max() == 255 - 114
    np.testing.assert_array_equal(cal[1], images[1] - 114)


def test_zero_point_int8_export_agrees_with_the_mean_border_on_digits(tmp_path):
    """INT8 (int8 io) exports of the same network with the mean and the zero_point border, run by
    `tflite.runtime.run` on held-out scikit-learn digits (float pixels): close logits, the
    zero_point graph has no CONCATENATION and an input of scale 1, zero point 114 - 128, and the
    pixel bytes ^ 0x80 fed directly give what `runtime.run` gives."""
    size = 32
    images = calibration.load(
        "sklearn_digits", (size, size), 64, 64, num_classes=10, log=lambda *_: None
    )
    model = tiny_model(size)
    separate = export.with_pixel_input(model, "imagenet", (size, size), fold=False)
    models.stand_in_statistics(separate, images.calibration)
    keras_logits = separate.predict(images.heldout, verbose=0)
    logits, stats = {}, {}
    for border in ("mean", "zero_point"):
        wrapped = export.with_pixel_input(model, "imagenet", (size, size), stem_border=border)
        offset = export.input_offset(model, "imagenet", border)
        data = export.convert(
            wrapped, "int8", "int8", export.pin_pixel_range(images.calibration, offset)
        )
        if offset:
            export.check_input_offset(data, offset)
        path = str(tmp_path / f"{border}.tflite")
        with open(path, "wb") as f:
            f.write(data)
        stats[border] = analysis.graph_stats(path)
        logits[border] = runtime.run(runtime.load_interpreter(path), images.heldout)
    g = stats["zero_point"]
    assert g.input["dtype"] == "int8" and g.input["zero_point"] == 114 - 128
    assert g.input["scale"] == pytest.approx(1.0, abs=1e-6)
    assert "CONCATENATION" not in g.op_histogram and "CONCATENATION" in stats["mean"].op_histogram
    sqnr = {k: analysis.sqnr_db(keras_logits, v) for k, v in logits.items()}
    assert sqnr["zero_point"] > sqnr["mean"] - 3 and sqnr["zero_point"] > 15, sqnr
    assert analysis.sqnr_db(logits["mean"], logits["zero_point"]) > 15, sqnr
    # what a caller feeds: the uint8 pixel bytes with the top bit flipped, viewed as int8
    interp = runtime.load_interpreter(str(tmp_path / "zero_point.tflite"))
    pixels = np.round(images.heldout[:4]).astype(np.uint8)
    out = interp.get_output_details()[0]
    raw = []
    for image in pixels:
        interp.set_tensor(
            interp.get_input_details()[0]["index"], (image[None] ^ 0x80).view(np.int8)
        )
        interp.invoke()
        raw.append(runtime.dequantize(interp.get_tensor(out["index"]), out)[0])
    np.testing.assert_allclose(raw, runtime.run(interp, pixels.astype(np.float32)), atol=1e-6)


def test_other_models_keep_separate_normalisation():
    """Model Garden's and keras.applications models have no ConvBN stem: SUB/MUL stay in front."""
    import tf_keras as keras

    inputs = keras.Input((16, 16, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(8, 3, name="stem")(inputs))
    assert fold.foldable_stem(other) is None
    wrapped = export.with_pixel_input(other, "imagenet", (16, 16))
    assert "normalize" in [layer.name for layer in wrapped.layers]


@pytest.mark.slow
def test_folded_and_separate_tflite_agree_on_digits(tmp_path):
    """INT8 (default int8 io) and FP32 exports, folded and with separate normalisation ops, on
    held-out scikit-learn digits: the folded graphs agree with the separate ones and the Keras
    model, and the folded INT8 graph has no SUB/MUL/QUANTIZE and an int8 input taking pixel - 128."""
    size = 32
    images = calibration.load(
        "sklearn_digits", (size, size), 64, 100, num_classes=10, log=lambda *_: None
    )
    model = models.build("conv_small", (size, size, 3), classes=10)
    separate = export.with_pixel_input(model, "imagenet", (size, size), fold=False)
    models.stand_in_statistics(separate, images.calibration)
    folded = export.with_pixel_input(model, "imagenet", (size, size))
    keras_logits = folded.predict(images.heldout, verbose=0)
    cal = export.pin_pixel_range(images.calibration)
    logits, stats = {}, {}
    for name, wrapped, precision, io in [
        ("folded_int8", folded, "int8", "int8"),
        ("separate_int8", separate, "int8", "uint8"),  # the graph before folding
        ("folded_fp32", folded, "fp32", "float"),
    ]:
        path = str(tmp_path / f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(export.convert(wrapped, precision, io, cal if precision == "int8" else None))
        stats[name] = analysis.graph_stats(path)
        logits[name] = runtime.run(runtime.load_interpreter(path), images.heldout)
    # FP32: the same function as the Keras model with separate normalisation
    reference = separate.predict(images.heldout, verbose=0)
    np.testing.assert_allclose(
        logits["folded_fp32"], reference, atol=1e-4 * np.abs(reference).max()
    )

    # INT8: the folded graph is as close to Keras as the separate one. Random-weight models
    # quantize coarsely (about 6 dB logits SQNR for both here; the trained quickstart model gives
    # over 30 dB, docs/tflite.md), so the bar is the graph before folding.
    def top1_agreement(name):
        return np.mean(np.argmax(logits[name], -1) == np.argmax(keras_logits, -1))

    sqnr = {k: analysis.sqnr_db(keras_logits, logits[k]) for k in ("folded_int8", "separate_int8")}
    agree = {k: top1_agreement(k) for k in sqnr}
    assert sqnr["folded_int8"] > sqnr["separate_int8"] - 1, (sqnr, agree)
    assert agree["folded_int8"] >= agree["separate_int8"] - 0.1, (sqnr, agree)
    g = stats["folded_int8"]
    assert not {"SUB", "MUL", "QUANTIZE", "DEQUANTIZE"} & set(g.op_histogram), g.op_histogram
    assert g.undelegated_ops == {} and g.delegate_partitions == 1
    assert g.input["dtype"] == "int8" and g.input["zero_point"] == -128
    assert g.input["scale"] == pytest.approx(1.0, abs=1e-6)
    assert {"SUB", "MUL"} <= set(stats["separate_int8"].op_histogram)
    assert "QUANTIZE" in stats["separate_int8"].undelegated_ops
    # what a caller feeds: the uint8 pixel bytes with the top bit flipped, viewed as int8
    interp = runtime.load_interpreter(str(tmp_path / "folded_int8.tflite"))
    pixels = np.round(images.heldout[:1]).astype(np.uint8)
    interp.set_tensor(interp.get_input_details()[0]["index"], (pixels ^ 0x80).view(np.int8))
    interp.invoke()
    out = interp.get_output_details()[0]
    raw = runtime.dequantize(interp.get_tensor(out["index"]), out)
    np.testing.assert_allclose(raw, runtime.run(interp, pixels.astype(np.float32)), atol=1e-6)


def test_stand_in_weights_are_trained_like():
    """Random init is degenerate (hybrid layer scale 1e-5: the attention blocks vanish); stand-in
    weights draw layer scale near 1 and re-estimate BN statistics as a cumulative average over all
    the images, in batches."""
    import tf_keras as keras

    model = tiny_model(16, layer_scale=1e-5)
    gammas = [w for w in model.weights if "layer_scale" in w.name]
    assert gammas and max(float(np.abs(g.numpy()).max()) for g in gammas) < 1e-4
    images = np.random.default_rng(0).normal(size=(40, 16, 16, 3)).astype(np.float32)
    models.stand_in_statistics(model, images, batch_size=16)
    values = np.concatenate([g.numpy().ravel() for g in gammas])
    assert 0.9 <= values.min() and values.max() <= 1.1 and values.std() > 0.01
    logits = model.predict(images[:8], verbose=0)
    assert 0.1 < logits.std() < 100, logits.std()
    # the first BN's moving mean: the average of its three batch means, weighted per batch
    inputs = keras.Input((16, 16, 3))
    bn = keras.layers.BatchNormalization()
    probe = keras.Model(inputs, bn(inputs))
    models.stand_in_statistics(probe, images, batch_size=16)
    batch_means = [images[s : s + 16].mean(axis=(0, 1, 2)) for s in (0, 16, 32)]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(batch_means, axis=0), atol=1e-5)


@pytest.mark.slow  # one FP32 conversion of conv_small: about 30 s on 2 loaded cores
def test_export_without_weights_uses_stand_in_weights(tmp_path, capsys):
    out = str(tmp_path / "m.tflite")
    report = export.main(
        [
            "--model",
            "conv_small@32",
            "--classes",
            "10",
            "--fp32",
            "--num_heldout",
            "8",
            "--output",
            out,
        ]
    )
    assert report["weights"].startswith(models.STAND_IN)
    assert report["normalization"] == "folded into the stem"
    assert report["stem_border"] == "mean"  # the exact border, the float exports' default
    assert report["input_offset"] == 0 and report["feed"] == "float pixels in [0, 255]"
    assert "weights: stand-in" in capsys.readouterr().out
    assert report["fidelity"]["sqnr_db"] > 50


def _op_sequence(path):
    """(op, output shape) in execution order: two graphs with the same sequence are the same
    graph op for op (same kernels, same tensor shapes), whatever their weights."""
    interp = runtime.load_interpreter(path, xnnpack=False)
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interp.get_tensor_details()}
    return [(op["op_name"], shapes[op["outputs"][0]]) for op in interp._get_ops_details()]


def test_int8_stem_borders_against_model_gardens_plain_graph(tmp_path):
    """Model Garden's plain INT8 graph of the same architecture (normalised input,
    TFLITE_BUILTINS_INT8, int8 io: how `tflite.compare_model_garden` builds it) is, op for op, our
    pixel-input export with --stem_border zero and with --stem_border zero_point (the same graph on
    pixel - 114, input zero point -14); the mean border (exact) is that graph plus the two
    CONCATENATIONs of mean-pixel strips (bottom row, right column) before the first CONV_2D."""
    size = 32
    pixels = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype(np.float32)
    ours = models.build("conv_small", (size, size, 3))
    plain = models.build("model_garden:conv_small", (size, size, 3))
    graphs = {
        "default": export.with_pixel_input(ours, "imagenet", (size, size)),
        "zero": export.with_pixel_input(ours, "imagenet", (size, size), stem_border="zero"),
        "zero_point": export.with_pixel_input(
            ours, "imagenet", (size, size), stem_border="zero_point"
        ),
        "model_garden": export.with_pixel_input(plain, "none", (size, size)),
    }
    ops = {}
    for name, model in graphs.items():
        normalised = name == "model_garden"
        cal = (
            preprocessing.normalize(pixels).numpy()
            if normalised
            else export.pin_pixel_range(pixels, 114 if name == "zero_point" else 0)
        )
        path = str(tmp_path / f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(export.convert(model, "int8", "int8", cal))
        ops[name] = _op_sequence(path)
    assert export.default_stem_border("int8", "int8") == "zero_point"  # Model Garden's graph
    assert export.default_stem_border("int8", "uint8") == "zero_point"
    assert export.default_stem_border("int8", "float") == "mean"
    assert export.default_stem_border("fp32", "float") == "mean"
    assert ops["zero"] == ops["model_garden"]
    assert ops["zero_point"] == ops["model_garden"]
    assert [op for op in ops["default"] if op[0] != "CONCATENATION"] == ops["model_garden"]
    concats = [(i, shape) for i, (op, shape) in enumerate(ops["default"]) if op == "CONCATENATION"]
    assert concats == [(0, (1, size + 1, size, 3)), (1, (1, size + 1, size + 1, 3))]


def test_stem_border_needs_the_fold(tmp_path, capsys):
    """--stem_border chooses the folded stem's padding: with --no_fold there is none to choose
    (the separate ops pad the normalised image with zeros), so it is one error line, exit 2."""
    argv = ["--model", "conv_small@32", "--fp32", "--output", str(tmp_path / "m.tflite")]
    with pytest.raises(SystemExit) as e:
        export.main([*argv, "--no_fold", "--stem_border", "zero"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith("error: --stem_border applies"), err
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit) as e:
        export.parse_args([*argv, "--stem_border", "black"])
    assert e.value.code == 2
    # zero_point pads with the input's zero point: a float input has none
    for extra in ([], ["--int8", "--io", "float"]):
        args = [a for a in argv if not extra or a != "--fp32"] + extra
        with pytest.raises(SystemExit) as e:
            export.main([*args, "--calibration", "random", "--stem_border", "zero_point"])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and "zero_point" in err[-1] and "--io int8" in err[-1], err
    assert not list(tmp_path.iterdir())
    # a model without a stem to fold into (or without normalisation) refuses it rather than ignore it
    for args in (
        ["--model", "model_garden:conv_small@32", "--classes", "10"],
        ["--model", "conv_small@32", "--preprocessing", "none"],
    ):
        with pytest.raises(SystemExit) as e:
            export.main(
                [*args, "--fp32", "--output", str(tmp_path / "m.tflite"), "--stem_border", "mean"]
            )
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and "has none to fold" in err[-1], err
    assert not list(tmp_path.iterdir())
