"""Tests of src.prediction: probabilities in batches of one shape, and test-time augmentation."""

import keras
import numpy as np
import pytest

from src import data, layout, models, optimizers, prediction, sample
from src.models import strong


@pytest.fixture(scope="module")
def small_dataset():
    (x_train, y_train), (x_test, y_test) = sample.sample_arrays()
    return data.Dataset(x_train[:200], y_train[:200], x_test[:60], y_test[:60], source=None, kind="npz")


@pytest.fixture(scope="module")
def trained_model(small_dataset):
    keras.utils.set_random_seed(0)
    model = optimizers.compile_model(models.build_model("mlp", layout.input_shape("channels_last")), "adam", 1e-3)
    model.fit(layout.to_model_layout(small_dataset.x_train, "channels_last"),
              keras.utils.to_categorical(small_dataset.y_train, 10), epochs=1, verbose=0)
    return model


def test_pad_rows_appends_blank_images_up_to_a_multiple():
    images = np.ones((5, 28, 28), np.uint8)
    padded = prediction.pad_rows(images, 4)
    assert padded.shape == (8, 28, 28) and (padded[:5] == 1).all() and (padded[5:] == 0).all()
    assert prediction.pad_rows(images, 5) is images


def test_batch_size_for_fits_small_splits_and_replicas():
    assert prediction.batch_size_for(60) == 60
    assert prediction.batch_size_for(28_000) == 1000
    assert prediction.batch_size_for(28_000, replicas=8) == 1000
    assert prediction.batch_size_for(5, replicas=8) == 8
    assert prediction.batch_size_for(1_000_000, replicas=3) == 999


def test_predict_probabilities_matches_keras_whatever_the_batch(trained_model, small_dataset):
    images = small_dataset.x_test
    expected = trained_model.predict(layout.to_model_layout(images, "channels_last"), verbose=0)
    for batch_size in (60, 16, 7):
        plain = prediction.predict_probabilities(trained_model, images, batch_size=batch_size)
        assert plain.shape == (60, 10) and plain.dtype == np.float32
        np.testing.assert_allclose(plain, expected, rtol=1e-5, atol=1e-6)


def test_predict_probabilities_with_tta_is_the_mean_of_augmented_copies(trained_model, small_dataset):
    images = small_dataset.x_test
    plain = prediction.predict_probabilities(trained_model, images, batch_size=60)
    augmented = prediction.predict_probabilities(trained_model, images, batch_size=60, tta=3, seed=7)
    again = prediction.predict_probabilities(trained_model, images, batch_size=60, tta=3, seed=7)
    np.testing.assert_array_equal(augmented, again)
    assert not np.allclose(augmented, plain)
    augmentation = strong.build_augmentation(seed=7)
    scaled = layout.to_model_layout(images, "channels_last")
    copies = [trained_model.predict(augmentation(scaled, training=True).numpy(), verbose=0) for _ in range(3)]
    np.testing.assert_allclose(augmented, np.mean(copies, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(augmented.sum(axis=1), 1.0, rtol=1e-5)
