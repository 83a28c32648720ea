"""Tests of src.models: the registry builds and trains in both layouts, and its models are what they claim."""

import keras
import numpy as np
import pytest

from src import layout, models, optimizers
from src.errors import KitError
from src.models import affine, batchnorm, classic, cost, strong

CHANNELS_LAST = layout.input_shape("channels_last")


@pytest.fixture(autouse=True)
def float32_after():
    """Keras keeps the dtype policy globally: leave it float32 for the tests that follow."""
    yield
    keras.config.set_dtype_policy("float32")


def test_registry_names_resolve_to_factories():
    assert models.MODEL_NAMES == ("seed_cnn", "tfwiki_cnn", "mlp", "strong_cnn", "fast_cnn", "strong_cnn_affine")
    for name in models.MODEL_NAMES:
        assert callable(models.model_factory(name))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_build_model_builds_for_each_layout(name, data_format):
    shape = layout.input_shape(data_format)
    model = models.build_model(name, shape)
    assert model.input_shape == (None, *shape)
    assert model.output_shape == (None, 10)
    assert model.name == name


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_build_model_trains_a_step(name):
    keras.utils.set_random_seed(0)
    model = optimizers.compile_model(models.build_model(name, CHANNELS_LAST), "adam", 1e-3)
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    y = keras.utils.to_categorical(np.arange(8) % 10, 10)
    before = [weight.copy() for weight in model.get_weights()]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(old, new) for old, new in zip(before, model.get_weights()))


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_build_model_keeps_probabilities_float32_under_mixed_bfloat16(name):
    optimizers.set_precision("mixed_bfloat16")
    model = models.build_model(name, CHANNELS_LAST)
    probabilities = model(np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32))
    # bfloat16 keeps 8 bits of mantissa: its probabilities would not sum to 1 within 1e-6.
    assert model.layers[-2].compute_dtype == "bfloat16"
    assert probabilities.dtype == "float32"
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1.0, atol=1e-6)


def test_build_model_rejects_unknown_name():
    names = ", ".join(models.MODEL_NAMES)
    with pytest.raises(KitError, match=f"choose one of {names}. Received: model='resnet'"):
        models.build_model("resnet", CHANNELS_LAST)


def test_build_seed_cnn_is_the_classic_architecture():
    model = classic.build_seed_cnn()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.count_params() == 1_199_882
    assert classic.build_seed_cnn(layout.input_shape("channels_first")).count_params() == 1_199_882


def test_build_fast_cnn_is_the_fast_architecture():
    model = classic.build_fast_cnn()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense"]
    # 32*(9+1) + 64*(32*9+1) + (7*7*64+1)*128 + (128+1)*10
    assert model.count_params() == 320 + 18_496 + 401_536 + 1_290
    assert classic.build_fast_cnn(layout.input_shape("channels_first")).count_params() == model.count_params()


def test_multiply_adds_counts_convolutions_and_dense_layers():
    # seed_cnn: 26*26*32*9 + 24*24*64*9*32 + 9216*128 + 128*10
    assert cost.multiply_adds(classic.build_seed_cnn()) == 194_688 + 10_616_832 + 1_179_648 + 1_280
    # fast_cnn: 28*28*32*9 + 14*14*64*9*32 + 3136*128 + 128*10
    fast = 225_792 + 3_612_672 + 401_408 + 1_280
    assert cost.multiply_adds(classic.build_fast_cnn()) == fast
    assert cost.multiply_adds(classic.build_fast_cnn(layout.input_shape("channels_first"))) == fast
    assert cost.multiply_adds(classic.build_mlp()) == 784 * 100 + 100 * 10


def test_strong_cnn_augments_only_in_training():
    model = strong.build_strong_cnn()
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
    [zoom] = [layer for layer in strong.build_augmentation(seed=3).layers if isinstance(layer, keras.layers.RandomZoom)]
    ink = zoom(square, training=True).numpy()[..., 0] > 0.5
    heights, widths = ink.any(axis=2).sum(axis=1), ink.any(axis=1).sum(axis=1)
    assert (heights != widths).sum() > 32


def test_strong_cnn_augmentation_rotates_10_degrees_zooms_and_shifts_10_percent():
    # Measured on synthetic 28x28 images, 256 random draws of each layer of strong_cnn's own augmentation block:
    # a bar's angle (from its second moments), a square's height and width, a dot's centre. With the layers as
    # they are, the extremes came to -9.89/+9.89 degrees; a sampled scale of 0.903-1.102 in height and
    # 0.903-1.102 in width (Keras samples the image at 0.9-1.1 of its size, so a digit comes 1/1.1-1/0.9 as
    # large); and shifts of -0.0999/+0.0997 of the width, -0.0996/+0.0997 of the height. The bounds allow half a
    # degree and half a percent of interpolation; the extremes must reach 8 degrees and 7 or 8%.
    keras.utils.set_random_seed(0)
    rotation, zoom, translation = strong.build_strong_cnn().get_layer("augmentation").layers
    count, size = 256, 28
    rows, columns = np.mgrid[0:size, 0:size]

    bar = np.zeros((count, size, size, 1), dtype=np.float32)
    bar[:, 13:16, 4:24] = 1.0
    ink = rotation(bar, training=True).numpy()[..., 0]
    mass = ink.sum(axis=(1, 2))
    x = columns - ((ink * columns).sum(axis=(1, 2)) / mass)[:, None, None]
    y = rows - ((ink * rows).sum(axis=(1, 2)) / mass)[:, None, None]
    degrees = np.degrees(0.5 * np.arctan2(2 * (ink * x * y).sum(axis=(1, 2)),
                                          (ink * x**2).sum(axis=(1, 2)) - (ink * y**2).sum(axis=(1, 2))))
    assert np.abs(degrees).max() <= 10.5 and degrees.min() < -8 and degrees.max() > 8

    square = np.zeros((count, size, size, 1), dtype=np.float32)
    square[:, 7:21, 7:21] = 1.0
    ink = zoom(square, training=True).numpy()[..., 0]
    for extent in (ink.max(axis=2).sum(axis=1), ink.max(axis=1).sum(axis=1)):  # height, width
        scale = 14 / extent  # the scale the layer sampled the image at
        assert 0.895 <= scale.min() < 0.93 and 1.07 < scale.max() <= 1.105

    dot = np.zeros((count, size, size, 1), dtype=np.float32)
    dot[:, 12:16, 12:16] = 1.0
    ink = translation(dot, training=True).numpy()[..., 0]
    mass = ink.sum(axis=(1, 2))
    for coordinates in (columns, rows):
        shift = ((ink * coordinates).sum(axis=(1, 2)) / mass - 13.5) / size
        assert np.abs(shift).max() <= 0.105 and shift.min() < -0.08 and shift.max() > 0.08


def digit_like_images(count: int, data_format: str = "channels_last") -> np.ndarray:
    """Bars of ink on black, a different one in each image: strokes whose blur a resampling shows."""
    images = np.zeros((count, 28, 28), dtype=np.float32)
    for index in range(count):
        images[index, 6 + index % 10: 9 + index % 10, 5:23] = 1.0
        images[index, 5:23, 8 + index % 12: 10 + index % 12] = 1.0
    return images[..., None] if data_format == "channels_last" else images[:, None]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_random_affine_with_no_range_is_the_identity_and_passes_images_through_outside_training(data_format):
    images = digit_like_images(8, data_format)
    still = affine.RandomAffine(rotation=0.0, zoom=0.0, shift=0.0, data_format=data_format, seed=1)
    np.testing.assert_allclose(np.asarray(still(images, training=True)), images, atol=1e-6)
    moving = affine.RandomAffine(data_format=data_format, seed=1)
    np.testing.assert_array_equal(np.asarray(moving(images, training=False)), images)
    assert not np.allclose(np.asarray(moving(images, training=True)), images)


def test_random_affine_draws_within_its_ranges():
    layer = affine.RandomAffine(rotation=10.0, zoom=0.1, shift=0.1, seed=3)
    layer.build((None, 28, 28, 1))
    a0, a1, a2, b0, b1, b2, c0, c1 = np.asarray(layer.transforms(2000)).T
    angles = np.degrees(np.arctan2(b0, a0))
    assert angles.min() < -9 and angles.max() > 9 and np.abs(angles).max() <= 10 + 1e-4
    # Each axis's scale reads the input at 1 / (1 + zoom): within [1/1.1, 1/0.9], the two drawn apart.
    scale_x, scale_y = np.hypot(a0, b0), np.hypot(a1, b1)
    for scale in (scale_x, scale_y):
        assert scale.min() >= 1 / 1.1 - 1e-5 and scale.max() <= 1 / 0.9 + 1e-5
    assert abs(np.corrcoef(scale_x, scale_y)[0, 1]) < 0.1
    # The centre moves by the shift alone: at most 10% of 28 pixels either way.
    center = 13.5
    shift_x = a0 * center + a1 * center + a2 - center
    shift_y = b0 * center + b1 * center + b2 - center
    assert np.abs(shift_x).max() <= 2.8 + 1e-4 and np.abs(shift_y).max() <= 2.8 + 1e-4
    assert np.abs(shift_x).max() > 2.5
    assert not c0.any() and not c1.any()


def test_random_affine_resamples_once_and_blurs_less_than_three_layers():
    images = digit_like_images(256)
    once = np.asarray(affine.RandomAffine(seed=4)(images, training=True))
    three_times = np.asarray(strong.build_augmentation(seed=4)(images, training=True))
    # Interpolation spreads ink: the same ink in more, fainter pixels has a smaller sum of squares.
    energy = {name: float(np.mean(array**2)) for name, array in
              [("input", images), ("once", once), ("three", three_times)]}
    assert energy["three"] < energy["once"] < energy["input"]


def test_random_affine_is_seeded_and_saved_with_its_settings():
    images = digit_like_images(4)
    first = affine.RandomAffine(rotation=5.0, seed=7)
    second = affine.RandomAffine.from_config(first.get_config())
    assert (second.rotation, second.zoom, second.shift, second.seed) == (5.0, 0.1, 0.1, 7)
    np.testing.assert_array_equal(np.asarray(first(images, training=True)), np.asarray(second(images, training=True)))


def test_build_strong_cnn_affine_is_strong_cnn_with_one_resampling():
    plain, resampled = strong.build_strong_cnn(), strong.build_strong_cnn_affine()
    assert isinstance(resampled.layers[0], affine.RandomAffine)
    assert [type(layer) for layer in plain.layers[1:]] == [type(layer) for layer in resampled.layers[1:]]
    assert plain.count_params() == resampled.count_params()


def paired_batch_normalizations(shape, axis):
    """Keras' layer and the fused one, built alike with the same (non-trivial) weights."""
    rng = np.random.default_rng(0)
    keras_layer, fused = keras.layers.BatchNormalization(axis=axis), batchnorm.FusedBatchNormalization(axis=axis)
    keras_layer.build(shape), fused.build(shape)
    for theirs, ours in zip(keras_layer.weights, fused.weights):
        value = np.asarray(theirs) + rng.normal(size=theirs.shape).astype("float32") * 0.3
        theirs.assign(value), ours.assign(value)
    return keras_layer, fused


@pytest.mark.parametrize("axis", [-1, 1])
def test_fused_batch_normalization_trains_as_keras_batch_normalization(axis):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    images = tf.constant(rng.normal(1.0, 3.0, size=(8, 5, 6, 4)).astype("float32"))
    upstream = tf.constant(rng.normal(size=images.shape).astype("float32"))
    results = []
    for layer in paired_batch_normalizations(images.shape, axis):
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = layer(images, training=True)
            loss = tf.reduce_sum(outputs * upstream)
        gradients = tape.gradient(loss, [images, layer.gamma, layer.beta])
        results.append([outputs, *gradients, layer.moving_mean, layer.moving_variance])
    names = ["outputs", "input gradient", "gamma gradient", "beta gradient", "moving mean", "moving variance"]
    for name, theirs, ours in zip(names, *results):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-5, err_msg=name)


def test_fused_batch_normalization_predicts_with_the_moving_statistics():
    images = np.random.default_rng(2).normal(size=(4, 3, 3, 2)).astype("float32")
    keras_layer, fused = paired_batch_normalizations(images.shape, -1)
    np.testing.assert_allclose(np.asarray(fused(images)), np.asarray(keras_layer(images)), rtol=1e-6)
    assert not np.allclose(np.asarray(fused(images)), np.asarray(fused(images, training=True)))


def test_fused_batch_normalization_computes_in_bfloat16_and_keeps_float32_statistics():
    keras.config.set_dtype_policy("mixed_bfloat16")
    images = np.random.default_rng(3).normal(size=(8, 4, 4, 3)).astype("float32")
    keras_layer, fused = paired_batch_normalizations(images.shape, -1)
    ours, theirs = fused(images, training=True), keras_layer(images, training=True)
    assert keras.backend.standardize_dtype(ours.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(fused.moving_mean.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(ours, "float32"), np.asarray(theirs, "float32"), atol=0.05)


def test_strong_cnn_normalizes_with_the_fused_layer_and_saves_it(tmp_path):
    model = strong.build_strong_cnn_affine()
    normalizations = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(normalizations) == 7
    assert all(isinstance(layer, batchnorm.FusedBatchNormalization) for layer in normalizations)
    model.save(tmp_path / "strong.keras")
    loaded = keras.saving.load_model(tmp_path / "strong.keras")
    assert sum(isinstance(layer, batchnorm.FusedBatchNormalization) for layer in loaded.layers) == 7
