"""Supernet weight sharing and the REINFORCE controller."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from experiments.nas import controller as controller_lib
from experiments.nas import supernet as supernet_lib
from mobilenetv4 import search_space


@pytest.mark.parametrize("stride", [1, 2])
def test_3x3_is_the_centre_of_the_shared_5x5(stride):
    x = tf.random.normal([2, 8, 8, 4])
    layer = supernet_lib._ConvBN(0, 5, stride, True, (0, 3, 5))
    y3 = layer(x, tf.constant([0.0, 1.0, 0.0]))
    y5 = layer(x, tf.constant([0.0, 0.0, 1.0]))
    ref = keras.layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False)
    ref.build(x.shape)
    ref.set_weights([layer.w.numpy()[1:4, 1:4]])
    bn = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-5)
    np.testing.assert_allclose(y3.numpy(), bn(ref(x), training=True).numpy(), atol=1e-4)
    assert not np.allclose(y3.numpy(), y5.numpy(), atol=1e-3)


def _space():
    return search_space.get("quickstart", "one_stage")


def test_masks_absent_blocks_and_one_trace():
    space = _space()
    net = supernet_lib.Supernet(space, num_classes=10)
    names = [d.name for d in space.decisions]
    base = np.array(space.indices(space.values()), np.int32)
    images = tf.random.normal([4, 32, 32, 3])
    net(images, tf.constant(base))  # builds the variables
    calls = []
    fn = tf.function(lambda im, idx: (calls.append(1), net(im, idx))[1])
    out_a = fn(images, tf.constant(base))
    # narrowest stage-3 width, block 1 of stage 3 absent
    other = base.copy()
    other[names.index("stage3/width")] = 0
    other[names.index("stage3/block1/present")] = 1
    out_b = fn(images, tf.constant(other))
    assert len(calls) == 1  # one graph for every architecture
    assert not np.allclose(out_a.numpy(), out_b.numpy())
    # the channel mask: stage 3 at width 0.5 x 32 = 16 of 48 channels, the rest exactly zero
    block = next(b for b in net.blocks if b.name == "stage3_block0")
    stage2_out = tf.random.normal([4, 8, 8, max(block.in_widths)])
    choices = supernet_lib._Choices(space, tf.constant(other))
    y = block(stage2_out, choices).numpy()
    assert y.shape[-1] == 48 and np.all(y[..., 16:] == 0) and np.any(y[..., :16] != 0)
    # an absent block is the identity
    absent = next(b for b in net.blocks if b.name == "stage3_block1")
    x = tf.random.normal([4, 4, 4, 48])
    np.testing.assert_array_equal(absent(x, choices).numpy(), x.numpy())


def test_controller_update_rule():
    decision = search_space.Decision("d", (0, 1))
    c = controller_lib.Controller([decision], learning_rate=0.1)
    samples = np.array([[0], [1]], np.int32)
    c.update(samples, [1.0, 0.0])  # baseline starts at the mean 0.5: choice 0 gains
    p = c.probabilities()["d"]
    assert p[0] > 0.5
    assert c.baseline.numpy() == pytest.approx(0.5)  # 0.95 * 0.5 + 0.05 * 0.5
    c.update(samples, [3.0, 3.0])
    assert c.baseline.numpy() == pytest.approx(0.95 * 0.5 + 0.05 * 3.0)
    assert c.optimizer.beta_1 == 0.0


def test_controller_learns_that_a_zero_branch_is_useless():
    """A shared-weight toy supernet: a decision picks one of three feature branches, the third
    outputs zeros. REINFORCE on held-out batches drives the zero branch below 5%."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    train, val = slice(0, 1200), slice(1200, None)
    branches = [keras.layers.Dense(16, activation="relu") for _ in range(2)]
    head = keras.layers.Dense(10)

    def forward(images, choice):
        feats = [b(images) for b in branches] + [tf.zeros([tf.shape(images)[0], 16])]
        return head(tf.gather(tf.stack(feats), choice))

    opt = keras.optimizers.Adam(0.01)

    @tf.function
    def train_step(images, labels, choice):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    labels, forward(images, choice), from_logits=True
                )
            )
        variables = [v for b in branches for v in b.trainable_variables] + head.trainable_variables
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    @tf.function
    def accuracy(images, labels, choice):
        hit = tf.argmax(forward(images, choice), -1, output_type=tf.int32) == labels
        return tf.reduce_mean(tf.cast(hit, tf.float32))

    decision = search_space.Decision("stage3/block1/middle_dw", (3, 5, 0))
    ctrl = controller_lib.Controller([decision], learning_rate=0.05, seed=1)
    rng = np.random.default_rng(0)
    forward(x[:2], 0)
    for step in range(300):
        (choice,) = ctrl.sample(1)[0]
        idx = rng.integers(0, 1200, 64)
        train_step(x[train][idx], y[train][idx].astype(np.int32), tf.constant(choice))
        vidx = rng.integers(0, len(x[val]), 64)
        acc = float(accuracy(x[val][vidx], y[val][vidx].astype(np.int32), tf.constant(choice)))
        ctrl.update([[choice]], [acc], apply=step >= 20)  # RL delay: baseline only at first
    p_zero = ctrl.probabilities()[decision.name][2]
    assert p_zero < 0.05, p_zero
