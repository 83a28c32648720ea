"""The registry's plain CNNs and MLP: the classic Keras MNIST CNN, the TensorFlow notes' models, and the fast CNN."""

import keras
from keras import layers

from src import layout
from src.mnist import NUM_CLASSES

CHANNELS_LAST_SHAPE = layout.input_shape("channels_last")


def build_seed_cnn(
    input_shape: layout.Shape = CHANNELS_LAST_SHAPE, num_classes: int = NUM_CLASSES
) -> keras.Sequential:
    """The classic Keras MNIST CNN, as the seed kernel builds it (99.06% after 12 epochs in benchmarks/results.md).

    Args:
        input_shape: `(28, 28, 1)` or `(1, 28, 28)`, from `layout.input_shape()`.
        num_classes: size of the softmax output.

    Returns:
        An uncompiled model mapping `(B, 28, 28, 1)` (or `(B, 1, 28, 28)`) images to `(B, 10)` probabilities.
    """
    data_format = layout.layout_of(input_shape)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, 3, activation="relu", data_format=data_format),
            layers.Conv2D(64, 3, activation="relu", data_format=data_format),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Dropout(0.25),
            layers.Flatten(data_format=data_format),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="seed_cnn",
    )


def build_tfwiki_cnn(
    input_shape: layout.Shape = CHANNELS_LAST_SHAPE, num_classes: int = NUM_CLASSES
) -> keras.Sequential:
    """The CNN of the TensorFlow notes: two 5x5 conv/pool stages and a 1024-unit dense layer.

    Args and Returns: as `build_seed_cnn`.
    """
    data_format = layout.layout_of(input_shape)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, 5, padding="same", activation="relu", data_format=data_format),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Conv2D(64, 5, padding="same", activation="relu", data_format=data_format),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Flatten(data_format=data_format),
            layers.Dense(1024, activation="relu"),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="tfwiki_cnn",
    )


def build_mlp(
    input_shape: layout.Shape = CHANNELS_LAST_SHAPE, num_classes: int = NUM_CLASSES
) -> keras.Sequential:
    """The MLP of the TensorFlow notes: one hidden layer of 100 units.

    Args and Returns: as `build_seed_cnn`.
    """
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Flatten(),
            layers.Dense(100, activation="relu"),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="mlp",
    )


def build_fast_cnn(
    input_shape: layout.Shape = CHANNELS_LAST_SHAPE, num_classes: int = NUM_CLASSES
) -> keras.Sequential:
    """The fast kernel's CNN: two `same` 3x3 conv/pool stages and a 128-unit dense layer.

    Pooling after each convolution leaves the 64-filter layer a 14x14 map instead of the seed CNN's
    24x24, so a training image costs about a third of the seed CNN's arithmetic (4.2 vs 12.0 million
    multiply-adds forward); with Adam and a warm-up + cosine schedule it passes 99.2% on MNIST in four
    epochs (99.24-99.28%, benchmarks/results.md). It has no BatchNormalization: Keras 3 computes it unfused,
    which made each step slower on a CPU without making three epochs more accurate (hand-run notes, with no
    results file, in benchmarks/README.md's levers).

    Args and Returns: as `build_seed_cnn`.
    """
    data_format = layout.layout_of(input_shape)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, 3, padding="same", activation="relu", data_format=data_format),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Conv2D(64, 3, padding="same", activation="relu", data_format=data_format),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Flatten(data_format=data_format),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.3),
            # float32 even under mixed_bfloat16, so that the probabilities keep their digits.
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="fast_cnn",
    )
