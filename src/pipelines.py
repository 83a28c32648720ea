"""`tf.data` pipelines: images stay `uint8` until a batch is scaled to `[0, 1]` on its way into the model.

So a 70,000-image run holds one small copy of the data, and every epoch's order is a pure function of its seed.
"""

import math

import numpy as np
import tensorflow as tf

from src import layout
from src.errors import KitError
from src.mnist import NUM_CLASSES


def make_pipeline(
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    batch_size: int,
    data_format: str,
    shuffle: bool = False,
    seed: int = 0,
    one_hot: bool = True,
):
    """Builds a `tf.data` pipeline that keeps images `uint8` until a batch is scaled.

    Args:
        x: `uint8` images `(N, 28, 28)`.
        y: `uint8` labels `(N,)`, one-hot encoded per batch for categorical cross-entropy; None for
            prediction.
        batch_size: images per batch.
        data_format: the layout from `layout.data_format()`.
        shuffle: reshuffle every epoch, seeded.
        seed: the shuffle seed.
        one_hot: one-hot labels `(B, 10)` for `model.fit`; False keeps `int32` labels `(B,)` for the
            sparse loss of the custom loop.

    Returns:
        A `tf.data.Dataset` of `float32` batches `(B, 28, 28, 1)` or `(B, 1, 28, 28)` in `[0, 1]`, with
        labels when `y` is given.
    """
    elements = x if y is None else (x, y)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    return dataset.map(_batch_scaler(data_format, one_hot), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


def _batch_scaler(data_format: str, one_hot: bool):
    """Returns the map function that turns a `uint8` batch (and its labels) into the model's input."""
    shape = layout.input_shape(data_format)

    def scale(images, labels=None):
        images = tf.reshape(tf.cast(images, tf.float32) * (1.0 / 255.0), (-1, *shape))
        if labels is None:
            return images
        labels = tf.cast(labels, tf.int32)
        return images, tf.one_hot(labels, NUM_CLASSES) if one_hot else labels

    return scale


def epoch_batches(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    data_format: str,
    seed: int,
    epochs: int,
    first_epoch: int = 0,
    one_hot: bool = True,
    drop_remainder: bool = False,
    rows_per_epoch: int | None = None,
):
    """Builds the training batches of epochs `first_epoch .. epochs - 1`, one epoch after another.

    Each epoch visits every image once, in an order that depends only on `(seed, epoch)`: not on how
    often a pipeline was iterated before. A run resumed at epoch 3 therefore sees exactly the batches
    an uninterrupted run sees from epoch 3 on (a `shuffle(reshuffle_each_iteration=True)` pipeline would
    restart its sequence of orders in the new process).

    Args:
        x: `uint8` images `(N, 28, 28)`.
        y: `uint8` labels `(N,)`.
        batch_size: images per batch; each epoch ends with a smaller batch when it does not divide N.
        data_format: the layout from `layout.data_format()`.
        seed: the fold's shuffle seed.
        epochs: the epoch to stop before.
        first_epoch: the epoch to start at (0 for a fresh fit).
        one_hot: as in `make_pipeline`.
        drop_remainder: leave out each epoch's last, smaller batch, so that every batch has the same shape
            (as a TPU needs); the images left out differ from epoch to epoch.
        rows_per_epoch: images per epoch, R <= N: the first R of the epoch's order, so that each epoch draws
            a different R; None for all N (R = N).

    Returns:
        A `tf.data.Dataset` of `(epochs - first_epoch) * ceil(R / batch_size)` batches (`floor` with
        `drop_remainder`), as `make_pipeline` yields them.
    """
    images = tf.constant(x)
    labels = tf.constant(y)
    num_rows = len(x)
    rows = num_rows if rows_per_epoch is None else rows_per_epoch
    if not 0 < rows <= num_rows:
        raise KitError(f"rows_per_epoch must be from 1 to the {num_rows} rows. Received: rows_per_epoch={rows}.")

    def one_epoch(epoch):
        # A stateless shuffle is a pure function of its seed: the same order in every process.
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_rows, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order[:rows]).batch(batch_size, drop_remainder=drop_remainder)

    batches_per_epoch = rows // batch_size if drop_remainder else math.ceil(rows / batch_size)
    num_batches = max(epochs - first_epoch, 0) * batches_per_epoch
    dataset = (
        tf.data.Dataset.range(first_epoch, max(epochs, first_epoch))
        .flat_map(one_epoch)
        .map(lambda indices: (tf.gather(images, indices), tf.gather(labels, indices)))
        .apply(tf.data.experimental.assert_cardinality(num_batches))
    )
    return dataset.map(_batch_scaler(data_format, one_hot), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )
