"""Tests of src.pipelines: `uint8` images scaled per batch, seeded shuffles, and epochs that resume exactly."""

import numpy as np
import pytest

from conftest import make_arrays
from src import layout, pipelines
from src.errors import KitError

LAYOUT = "channels_last"


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_make_pipeline_matches_to_model_layout(data_format):
    (x_train, y_train), _ = make_arrays()
    pipeline = pipelines.make_pipeline(x_train, y_train, batch_size=16, data_format=data_format)
    images, labels = next(iter(pipeline))
    np.testing.assert_allclose(images.numpy(), layout.to_model_layout(x_train[:16], data_format))
    np.testing.assert_array_equal(labels.numpy().argmax(axis=1), y_train[:16])
    assert labels.shape == (16, 10)


def test_make_pipeline_shuffle_is_seeded():
    (x_train, _), _ = make_arrays()

    def first_batch(seed):
        pipeline = pipelines.make_pipeline(x_train, batch_size=60, data_format=LAYOUT, shuffle=True, seed=seed)
        return next(iter(pipeline)).numpy()

    np.testing.assert_array_equal(first_batch(1), first_batch(1))
    assert not np.array_equal(first_batch(1), first_batch(2))


def test_epoch_batches_order_depends_only_on_seed_and_epoch():
    x = np.arange(10, dtype=np.uint8).repeat(784).reshape(10, 28, 28)
    y = np.arange(10, dtype=np.uint8)

    def labels(first_epoch, epochs):
        batches = pipelines.epoch_batches(x, y, batch_size=4, data_format=LAYOUT, seed=3, epochs=epochs,
                                          first_epoch=first_epoch, one_hot=False)
        return [batch.tolist() for _, batch in batches.as_numpy_iterator()]

    everything = labels(0, 3)
    assert len(everything) == 9  # 3 epochs of 4 + 4 + 2 images
    assert labels(2, 3) == everything[6:]  # a resume at epoch 2 sees what the full run saw
    epochs = [sorted(sum(everything[start:start + 3], [])) for start in (0, 3, 6)]
    assert all(epoch == list(range(10)) for epoch in epochs)  # each image once per epoch
    assert everything[:3] != everything[3:6]


def test_epoch_batches_drop_remainder_keeps_images_with_their_labels():
    x = np.arange(10, dtype=np.uint8).repeat(784).reshape(10, 28, 28)  # image i is all pixels i: its label
    y = np.arange(10, dtype=np.uint8)

    batches = list(pipelines.epoch_batches(x, y, batch_size=4, data_format="channels_first", seed=1, epochs=2,
                                           drop_remainder=True).as_numpy_iterator())

    assert len(batches) == 4  # 2 epochs of 2 full batches, the 2 images left over dropped
    for images, labels in batches:
        assert images.shape == (4, 1, 28, 28) and labels.shape == (4, 10)
        np.testing.assert_allclose(images.reshape(4, -1).max(axis=1) * 255, labels.argmax(axis=1), rtol=1e-5)


def test_epoch_batches_rows_per_epoch_draws_a_different_share_of_the_rows_each_epoch():
    x = np.arange(10, dtype=np.uint8).repeat(784).reshape(10, 28, 28)
    y = np.arange(10, dtype=np.uint8)

    batches = pipelines.epoch_batches(x, y, batch_size=4, data_format=LAYOUT, seed=3, epochs=3, one_hot=False,
                                      rows_per_epoch=6)
    labels = [batch.tolist() for _, batch in batches.as_numpy_iterator()]

    assert [len(batch) for batch in labels] == [4, 2] * 3  # 6 images an epoch, as 2 steps
    epochs = [sorted(labels[start] + labels[start + 1]) for start in (0, 2, 4)]
    assert all(len(set(epoch)) == 6 for epoch in epochs)  # no image twice in an epoch
    assert len({tuple(epoch) for epoch in epochs}) > 1  # and not the same 6 every epoch
    with pytest.raises(KitError, match="Received: rows_per_epoch=11"):
        pipelines.epoch_batches(x, y, batch_size=4, data_format=LAYOUT, seed=3, epochs=1, rows_per_epoch=11)
