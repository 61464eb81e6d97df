"""TuNAS's REINFORCE controller: independent logits per decision, Adam with beta_1 = 0, and a
reward baseline that is an exponential moving average (momentum 0.95) of the cross-replica mean
reward.

One step: every replica r samples its own architecture a_r ~ pi (`sample(num_replicas)`), trains
the shared weights on it, measures its reward R_r on a held-out batch with the same a_r; then
`update(samples, rewards)` minimises -mean_r[(R_r - b) * log pi(a_r)], with b the baseline before
this step's rewards enter it (b starts at the first step's mean reward).
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras


class Controller(tf.Module):
    """The policy over a space's searched decisions.

    Args:
      decisions: the space's searched `Decision`s.
      learning_rate: Adam learning rate of the logits (TuNAS: 0.0048 at ImageNet scale).
      baseline_momentum: EMA momentum of the reward baseline (0.95).
      seed: sampling seed (the generator state is checkpointed with the controller).
    """

    def __init__(self, decisions, learning_rate=0.05, baseline_momentum=0.95, seed=0):
        super().__init__(name="controller")
        self.decisions = tuple(decisions)
        self.logits = [
            tf.Variable(tf.zeros([len(d.choices)]), name=d.name.replace("/", "_"))
            for d in self.decisions
        ]
        self.learning_rate = tf.Variable(float(learning_rate), trainable=False, name="lr")
        self.optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate, beta_1=0.0)
        self.optimizer.build(self.logits)
        self.baseline = tf.Variable(0.0, trainable=False, name="baseline")
        self.baseline_ready = tf.Variable(False, trainable=False, name="baseline_ready")
        self.baseline_momentum = float(baseline_momentum)
        self.generator = tf.random.Generator.from_seed(seed)

    def probabilities(self):
        """{decision name: np.array of choice probabilities}."""
        return {d.name: tf.nn.softmax(l).numpy() for d, l in zip(self.decisions, self.logits)}

    def sample(self, num=1):
        """[num, decisions] int32 choice indices, one architecture per row."""
        if not self.decisions:
            return np.zeros((num, 0), np.int32)
        cols = []
        for logits in self.logits:
            u = self.generator.uniform([num, int(logits.shape[0])], 1e-9, 1.0)
            gumbel = -tf.math.log(-tf.math.log(u))
            cols.append(tf.argmax(logits[None, :] + gumbel, axis=-1, output_type=tf.int32))
        return tf.stack(cols, axis=1).numpy()

    def log_probabilities(self):
        """[np.array of log choice probabilities] per decision (the factorised log pi)."""
        return [tf.nn.log_softmax(l).numpy() for l in self.logits]

    def most_likely(self):
        """The argmax choice index of every decision."""
        return np.array([int(tf.argmax(l)) for l in self.logits], np.int32)

    def log_prob(self, samples):
        """[num] log pi(a) of every sampled row."""
        samples = tf.convert_to_tensor(samples, tf.int32)
        total = tf.zeros([tf.shape(samples)[0]])
        for i, logits in enumerate(self.logits):
            total += tf.gather(tf.nn.log_softmax(logits), samples[:, i])
        return total

    def update(self, samples, rewards, apply=True):
        """One REINFORCE step on the replicas' (samples, rewards); returns the advantage mean.

        Args:
          samples: [replicas, decisions] choice indices.
          rewards: [replicas] rewards.
          apply: False updates only the baseline (TuNAS's RL learning-rate delay).
        """
        rewards = tf.constant(np.asarray(rewards, np.float32))
        mean = tf.reduce_mean(rewards)  # the cross-replica mean reward
        if not bool(self.baseline_ready.numpy()):
            self.baseline.assign(mean)
            self.baseline_ready.assign(True)
        advantage = rewards - self.baseline
        if apply and self.decisions:
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(advantage * self.log_prob(samples))
            grads = tape.gradient(loss, self.logits)
            self.optimizer.apply_gradients(zip(grads, self.logits))
        m = self.baseline_momentum
        self.baseline.assign(m * self.baseline + (1.0 - m) * mean)
        return float(tf.reduce_mean(advantage))
