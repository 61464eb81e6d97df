"""Block-level behaviour: UIB instantiations, padding conventions, and attention maths."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from mobilenetv4 import layers as L


@pytest.mark.parametrize(
    "k1,k2,kind,present",
    [
        (3, 5, "ExtraDW", {"dw_start", "pw_exp", "dw_mid", "pw_proj"}),
        (0, 3, "IB", {"pw_exp", "dw_mid", "pw_proj"}),
        (5, 0, "ConvNext", {"dw_start", "pw_exp", "pw_proj"}),
        (0, 0, "FFN", {"pw_exp", "pw_proj"}),
    ],
)
def test_uib_instantiations(k1, k2, kind, present):
    block = L.UniversalInvertedBottleneck(16, 4, k1, k2, name="uib")
    out = block(tf.zeros([1, 8, 8, 16]))
    assert block.kind == kind
    built = {
        n for n in ("dw_start", "pw_exp", "dw_mid", "pw_proj") if getattr(block, n) is not None
    }
    assert built == present
    assert block.use_residual and out.shape == (1, 8, 8, 16)
    assert block.pw_exp.conv.filters == 64


@pytest.mark.parametrize("k1,k2,strided", [(3, 5, "dw_mid"), (0, 3, "dw_mid"), (5, 0, "dw_start")])
def test_uib_stride_sits_on_middle_dw_when_present(k1, k2, strided):
    block = L.UniversalInvertedBottleneck(24, 2, k1, k2, strides=2)
    out = block(tf.zeros([1, 8, 8, 16]))
    assert out.shape == (1, 4, 4, 24)
    assert getattr(block, strided).strides == 2
    assert not block.use_residual


def test_layer_scale_applies_even_without_residual():
    block = L.UniversalInvertedBottleneck(24, 2, 3, 3, strides=2, layer_scale_init_value=1e-5)
    out = block(tf.random.normal([1, 8, 8, 16]), training=False)
    assert block.layer_scale is not None
    assert float(tf.reduce_max(tf.abs(out))) < 1e-3


def _conv_numpy(x, kernel, stride, pad):
    x = np.pad(x, ((0, 0), pad, pad, (0, 0)))
    k = kernel.shape[0]
    out_h = (x.shape[1] - k) // stride + 1
    out_w = (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]), np.float64)
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out


@pytest.mark.parametrize("padding,pad", [("symmetric", (1, 1)), ("same", (0, 1))])
def test_padding_conventions_at_stride_2(padding, pad):
    layer = L.ConvBN(4, 3, 2, use_bn=False, padding=padding)
    x = np.random.rand(1, 8, 8, 3).astype("float32")
    y = layer(x).numpy()
    expected = _conv_numpy(x, layer.conv.kernel.numpy(), 2, pad)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_paddings_agree_at_stride_1():
    same = L.ConvBN(4, 5, 1, use_bn=False, padding="same")
    sym = L.ConvBN(4, 5, 1, use_bn=False, padding="symmetric")
    x = np.random.rand(1, 9, 7, 3).astype("float32")
    same(x), sym(x)
    sym.set_weights(same.get_weights())
    np.testing.assert_array_equal(same(x), sym(x))


def _reference_mqa(x, attn):
    """Multi-query attention written directly from Eq. 2 in numpy (float64)."""
    w = {
        v.name.split("/")[-2]: v.numpy().astype(np.float64)
        for v in attn.weights
        if "kernel" in v.name
    }
    h, dk, dv = attn.num_heads, attn.key_dim, attn.value_dim
    b, height, width, c = x.shape
    tokens = x.reshape(b, -1, c).astype(np.float64)
    kv = tokens
    assert attn.kv_strides == 1
    q = tokens @ w["query"][0, 0]  # (b, n, h*dk)
    k = kv @ w["key"][0, 0]  # (b, m, dk): one head shared by all query heads
    v = kv @ w["value"][0, 0]
    outs = []
    for head in range(h):
        qh = q[..., head * dk : (head + 1) * dk]
        logits = qh @ k.transpose(0, 2, 1) / np.sqrt(dk)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        outs.append(p @ v)
    o = np.concatenate(outs, -1)  # head-major channels
    return (o @ w["output"][0, 0]).reshape(b, height, width, c)


def test_mobile_mqa_matches_reference_maths():
    attn = L.MultiQueryAttention2D(num_heads=4, key_dim=8, value_dim=8, kv_strides=1)
    x = np.random.rand(2, 5, 3, 16).astype("float32")
    y = attn(x).numpy()
    np.testing.assert_allclose(y, _reference_mqa(x, attn), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kv_strides", [1, 2])
def test_mobile_mqa_and_fig10_layout_compute_the_same_function(kv_strides):
    fast = L.MultiQueryAttention2D(4, 8, 8, kv_strides=kv_strides, attention_type="mobile_mqa")
    slow = L.MultiQueryAttention2D(4, 8, 8, kv_strides=kv_strides, attention_type="mqa")
    x = np.random.rand(2, 6, 4, 16).astype("float32")
    fast(x), slow(x)
    slow.set_weights(fast.get_weights())
    np.testing.assert_allclose(fast(x), slow(x), rtol=1e-5, atol=1e-6)


def test_mhsa_has_per_head_keys_and_values():
    mqa = L.MultiQueryAttention2D(4, 8, 8, attention_type="mobile_mqa")
    mhsa = L.MultiQueryAttention2D(4, 8, 8, attention_type="mhsa")
    x = tf.zeros([1, 4, 4, 16])
    mqa(x), mhsa(x)
    assert mqa.key.kernel.shape == (1, 1, 16, 8)
    assert mhsa.key.kernel.shape == (1, 1, 16, 32)
    assert mhsa.count_params() > mqa.count_params()


def test_mhsa_matches_keras_multi_head_attention():
    mhsa = L.MultiQueryAttention2D(2, 4, 4, attention_type="mhsa")
    x = np.random.rand(1, 3, 3, 8).astype("float32")
    y = mhsa(x).numpy()
    ref = keras.layers.MultiHeadAttention(2, 4, use_bias=False)
    tokens = x.reshape(1, 9, 8)
    ref(tokens, tokens)
    ref.set_weights(
        [
            mhsa.query.kernel.numpy().reshape(8, 2, 4),
            mhsa.key.kernel.numpy().reshape(8, 2, 4),
            mhsa.value.kernel.numpy().reshape(8, 2, 4),
            mhsa.output_proj.kernel.numpy().reshape(2, 4, 8),
        ]
    )
    np.testing.assert_allclose(
        y.reshape(1, 9, 8), ref(tokens, tokens).numpy(), rtol=1e-4, atol=1e-5
    )


def test_kv_downsampling_reduces_keys_and_macs():
    attn = L.MultiQueryAttention2D(4, 8, 8, kv_strides=2)
    out = attn(tf.zeros([1, 16, 16, 32]))
    assert out.shape == (1, 16, 16, 32)
    assert attn.matmul_macs((1, 16, 16, 32)) == 256 * 64 * 4 * 16
    no_down = L.MultiQueryAttention2D(4, 8, 8, kv_strides=1)
    assert no_down.matmul_macs((1, 16, 16, 32)) == 4 * attn.matmul_macs((1, 16, 16, 32))


def test_attention_block_is_residual_with_pre_norm():
    block = L.MobileAttentionBlock(2, 8, kv_strides=2, layer_scale_init_value=0.0)
    x = np.random.rand(1, 8, 8, 16).astype("float32")
    np.testing.assert_allclose(block(x, training=False), x)  # layer scale 0 => identity
    assert block.norm.name == "norm" and block.kind == "Mobile-MQA"


def test_stochastic_depth_drops_whole_samples_in_training_only():
    drop = L.StochasticDepth(0.5)
    x = tf.ones([64, 2, 2, 3])
    np.testing.assert_array_equal(drop(x, training=False), x)
    y = drop(x, training=True).numpy()
    per_sample = y.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert np.all(per_sample.min(1) == per_sample.max(1))
    assert 10 < (per_sample[:, 0] == 0).sum() < 54


def test_stochastic_depth_masks_replay_from_a_checkpointed_generator_state(tmp_path):
    # What the trainer relies on for exact resume: the layer's generator state is checkpointable.
    keras.backend.experimental.enable_tf_random_generator()
    drop = L.StochasticDepth(0.5, seed=3)
    x = tf.ones([256, 1])
    drop(x, training=True)
    drop._random_generator._maybe_init()  # pylint: disable=protected-access
    checkpoint = tf.train.Checkpoint(state=drop._random_generator._generator.state)  # pylint: disable=protected-access
    saved = checkpoint.save(str(tmp_path / "rng"))
    first = drop(x, training=True).numpy()
    checkpoint.restore(saved)
    np.testing.assert_array_equal(drop(x, training=True).numpy(), first)
    assert not np.array_equal(drop(x, training=True).numpy(), first)


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.ConvBN(
            filters=8,
            kernel_size=3,
            strides=2,
            activation="relu",
            padding="symmetric",
            kernel_regularizer=keras.regularizers.L2(1e-4),
            anti_alias="blur",
        ),
        lambda: L.FusedIB(
            filters=8,
            expand_ratio=4,
            kernel_size=3,
            strides=2,
            kernel_regularizer="l2",
            stochastic_depth_rate=0.1,
        ),
        lambda: L.UniversalInvertedBottleneck(
            filters=8,
            expand_ratio=2,
            start_dw_kernel_size=3,
            middle_dw_kernel_size=5,
            layer_scale_init_value=1e-5,
            kernel_regularizer={"class_name": "L2", "config": {"l2": 0.5}},
        ),
        lambda: L.MultiQueryAttention2D(
            num_heads=2,
            key_dim=4,
            value_dim=4,
            kv_strides=2,
            attention_type="mhsa",
            kernel_regularizer="l2",
        ),
        lambda: L.MobileAttentionBlock(
            num_heads=2,
            key_dim=4,
            kv_strides=2,
            layer_scale_init_value=1e-5,
            stochastic_depth_rate=0.2,
            kernel_regularizer=keras.regularizers.L2(1e-3),
        ),
        lambda: L.LayerScale(init_value=0.5),
        lambda: L.StochasticDepth(rate=0.3, seed=7),
    ],
)
def test_config_round_trip_is_one_mechanism(make):
    layer = make()
    config = layer.get_config()
    rebuilt = type(layer).from_config(config)
    assert rebuilt.get_config() == config
    # every regularizer is serialised the one Keras way (a config dict), whatever was passed in
    if "kernel_regularizer" in config:
        assert config["kernel_regularizer"]["class_name"] == "L2"
        assert isinstance(rebuilt.kernel_regularizer, keras.regularizers.Regularizer)
    # the same numbers: same weights in, same outputs out
    x = np.random.default_rng(0).random((1, 8, 8, 8), np.float32)
    layer(x), rebuilt(x)
    rebuilt.set_weights(layer.get_weights())
    np.testing.assert_array_equal(layer(x, training=False), rebuilt(x, training=False))
