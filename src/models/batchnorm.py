"""Batch normalisation in one fused kernel on the CPU: Keras' `BatchNormalization` with its training step fused."""

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="digit_kit")
class FusedBatchNormalization(layers.BatchNormalization):
    """`layers.BatchNormalization` whose training step on images runs as TensorFlow's one fused kernel.

    Keras 3 normalises a training batch with separate operations (moments, then arithmetic), and under
    `mixed_bfloat16` casts the batch to float32 first; tf.keras used to call one fused kernel
    (`FusedBatchNormV3`), which oneDNN runs in bfloat16 too. On a CPU this layer calls that kernel, which makes
    `strong_cnn` train about twice as fast in bfloat16 (`benchmarks/batchnorm.py`). The arithmetic is the same:
    batch statistics, the same moving averages (of the biased variance, as Keras keeps them), the same weights;
    prediction is Keras' own path. On a GPU it is Keras' layer unchanged, because the fused kernel's gradient
    with respect to `beta` is not deterministic there and the kit trains under op determinism.

    Args: those of `keras.layers.BatchNormalization`.
    """

    def call(self, inputs, training=None, mask=None):
        axis = self.axis % len(inputs.shape)
        fusable = (training and self.trainable and mask is None and len(inputs.shape) == 4 and axis in (1, 3)
                   and self.center and self.scale and not self.renorm
                   and not tf.config.list_logical_devices("GPU"))
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True,
            data_format="NHWC" if axis == 3 else "NCHW",
        )
        # The kernel returns the unbiased variance (n / (n - 1)); Keras averages the biased one.
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[axis], variance.dtype)
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs
