"""Tests of src.models: the registry builds and trains in both channels settings."""

import keras
import numpy as np
import pytest

from src import config, data, models
from src.errors import KitError


def test_registry_matches_config_names():
    assert tuple(models.MODELS) == config.MODEL_NAMES


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", config.MODEL_NAMES)
def test_build_model_builds_for_each_layout(name, data_format):
    model = models.build_model(name, data_format)
    assert model.input_shape == (None, *data.input_shape(data_format))
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("name", config.MODEL_NAMES)
def test_build_model_trains_a_step(name):
    keras.utils.set_random_seed(0)
    model = models.compile_model(models.build_model(name, "channels_last"), "adam", 1e-3)
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    y = keras.utils.to_categorical(np.arange(8) % 10, 10)
    before = [weight.copy() for weight in model.get_weights()]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(old, new) for old, new in zip(before, model.get_weights()))


@pytest.mark.parametrize("name", config.MODEL_NAMES)
def test_build_model_keeps_probabilities_float32_under_mixed_bfloat16(name):
    models.set_precision("mixed_bfloat16")
    try:
        model = models.build_model(name, "channels_last")
        probabilities = model(np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32))
    finally:
        models.set_precision("float32")
    # bfloat16 keeps 8 bits of mantissa: its probabilities would not sum to 1 within 1e-6.
    assert model.layers[-2].compute_dtype == "bfloat16"
    assert probabilities.dtype == "float32"
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1.0, atol=1e-6)


def test_build_seed_cnn_is_the_classic_architecture():
    model = models.build_seed_cnn("channels_last")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.count_params() == 1_199_882


def test_build_seed_cnn_channels_first_matches_parameter_count():
    assert models.build_seed_cnn("channels_first").count_params() == models.build_seed_cnn().count_params()


def test_build_optimizer_defaults_adadelta_to_one():
    run = config.RunConfig(kernel="k")
    optimizer = models.build_optimizer(run.optimizer, run.effective_learning_rate)
    assert isinstance(optimizer, keras.optimizers.Adadelta)
    assert float(optimizer.learning_rate) == pytest.approx(1.0)
    assert optimizer.rho == pytest.approx(0.95)
    adam = models.build_optimizer("adam", config.RunConfig(kernel="k", optimizer="adam").effective_learning_rate)
    assert float(adam.learning_rate) == pytest.approx(1e-3)


def test_build_model_rejects_unknown_name():
    names = ", ".join(config.MODEL_NAMES)
    with pytest.raises(KitError, match=f"choose one of {names}. Received: model='resnet'"):
        models.build_model("resnet", "channels_last")
    with pytest.raises(KitError, match="Received: optimizer='sgdx'"):
        models.build_optimizer("sgdx", 0.1)


def test_strong_cnn_augments_only_in_training():
    model = models.build_strong_cnn("channels_last")
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(images, verbose=0), model.predict(images, verbose=0))
    augmentation = model.get_layer("augmentation")
    np.testing.assert_array_equal(augmentation(images, training=False).numpy(), images)
    assert not np.allclose(augmentation(images, training=True).numpy(), images)
    assert not any(isinstance(layer, keras.layers.RandomFlip) for layer in augmentation.layers)


def test_build_augmentation_zooms_height_and_width_independently():
    # A centred square of ink: a zoom that kept the aspect ratio would leave every copy square.
    square = np.zeros((64, 28, 28, 1), dtype=np.float32)
    square[:, 4:24, 4:24] = 1.0
    [zoom] = [layer for layer in models.build_augmentation(seed=3).layers if isinstance(layer, keras.layers.RandomZoom)]
    ink = zoom(square, training=True).numpy()[..., 0] > 0.5
    heights, widths = ink.any(axis=2).sum(axis=1), ink.any(axis=1).sum(axis=1)
    assert (heights != widths).sum() > 32
