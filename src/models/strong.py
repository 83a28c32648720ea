"""The leaderboard recipe's CNN, `strong_cnn`, and the augmentation it trains with (and TTA predicts with)."""

import keras
from keras import layers

from src import layout
from src.mnist import NUM_CLASSES
from src.models import affine, batchnorm

CHANNELS_LAST_SHAPE = layout.input_shape("channels_last")


def build_augmentation(
    input_shape: layout.Shape = CHANNELS_LAST_SHAPE, seed: int | None = None
) -> keras.Sequential:
    """Random rotation (about 10 degrees), zoom (10%) and shifts (10%); no flips, which change digits.

    Height and width zoom independently, as the 0.99757 kernel's `ImageDataGenerator(zoom_range=0.1)` did,
    so digits also come narrower or wider than they were written.

    Keras' preprocessing layers act only in training: at prediction the block passes images through
    unchanged, unless it is called with `training=True` for test-time augmentation.

    Args:
        input_shape: `(28, 28, 1)` or `(1, 28, 28)`, from `layout.input_shape()`.
        seed: seeds the transformations; None draws from Keras' global seed (`keras.utils.set_random_seed`).

    Returns:
        A model mapping images to images of the same shape `(B, 28, 28, 1)` (or `(B, 1, 28, 28)`).
    """
    # Black fill: MNIST's background is 0, and reflected strokes would invent ink.
    data_format = layout.layout_of(input_shape)
    fill = dict(fill_mode="constant", fill_value=0.0, data_format=data_format)
    seeds = [None] * 3 if seed is None else [seed, seed + 1, seed + 2]
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.RandomRotation(10 / 360, seed=seeds[0], **fill),
            layers.RandomZoom(0.1, 0.1, seed=seeds[1], **fill),
            layers.RandomTranslation(0.1, 0.1, seed=seeds[2], **fill),
        ],
        name="augmentation",
    )


def build_strong_cnn(
    input_shape: layout.Shape = CHANNELS_LAST_SHAPE, num_classes: int = NUM_CLASSES,
    augmentation: layers.Layer | None = None, name: str = "strong_cnn",
) -> keras.Sequential:
    """The CNN of the best honest Digit Recognizer ensembles, with its augmentation built in.

    Two blocks of Conv 3x3, Conv 3x3 and a learned pooling (Conv 5x5 stride 2), each with BatchNorm and
    Dropout 0.4, then Conv 4x4 to 128 features and a softmax.

    Args:
        input_shape: `(28, 28, 1)` or `(1, 28, 28)`, from `layout.input_shape()`.
        num_classes: the softmax's width.
        augmentation: the layer that transforms images in training; None for `build_augmentation`'s three.
        name: the model's name.

    Returns:
        An uncompiled `keras.Sequential` mapping `(B, *input_shape)` images to `(B, num_classes)` probabilities.
    """
    data_format = layout.layout_of(input_shape)
    conv = dict(activation="relu", data_format=data_format)
    axis = -1 if data_format == "channels_last" else 1
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            build_augmentation(input_shape) if augmentation is None else augmentation,
            layers.Conv2D(32, 3, **conv),
            batchnorm.FusedBatchNormalization(axis=axis),
            layers.Conv2D(32, 3, **conv),
            batchnorm.FusedBatchNormalization(axis=axis),
            layers.Conv2D(32, 5, strides=2, padding="same", **conv),
            batchnorm.FusedBatchNormalization(axis=axis),
            layers.Dropout(0.4),
            layers.Conv2D(64, 3, **conv),
            batchnorm.FusedBatchNormalization(axis=axis),
            layers.Conv2D(64, 3, **conv),
            batchnorm.FusedBatchNormalization(axis=axis),
            layers.Conv2D(64, 5, strides=2, padding="same", **conv),
            batchnorm.FusedBatchNormalization(axis=axis),
            layers.Dropout(0.4),
            layers.Conv2D(128, 4, **conv),
            batchnorm.FusedBatchNormalization(axis=axis),
            layers.Flatten(data_format=data_format),
            layers.Dropout(0.4),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name=name,
    )


def build_strong_cnn_affine(
    input_shape: layout.Shape = CHANNELS_LAST_SHAPE, num_classes: int = NUM_CLASSES
) -> keras.Sequential:
    """`strong_cnn` with its rotation, zoom and shift drawn as one matrix and resampled once (`RandomAffine`).

    The same ranges as `build_augmentation`; one bilinear interpolation instead of three, so strokes blur less.

    Args and Returns: as `classic.build_seed_cnn`.
    """
    augmentation = affine.RandomAffine(rotation=10.0, zoom=0.1, shift=0.1, data_format=layout.layout_of(input_shape))
    return build_strong_cnn(input_shape, num_classes, augmentation=augmentation, name="strong_cnn_affine")
