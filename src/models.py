"""The model registry: Sequential factories for MNIST, and how they are compiled."""

import keras
from keras import layers

from src import config, data
from src.errors import KitError


def build_seed_cnn(data_format: str = "channels_last", num_classes: int = data.NUM_CLASSES) -> keras.Sequential:
    """The classic Keras MNIST CNN, as the seed kernel builds it (about 99.25% after 12 epochs).

    Args:
        data_format: `"channels_last"` or `"channels_first"`, from `data.resolve_data_format`.
        num_classes: size of the softmax output.

    Returns:
        An uncompiled model mapping `(B, 28, 28, 1)` (or `(B, 1, 28, 28)`) images to `(B, 10)` probabilities.
    """
    return keras.Sequential(
        [
            keras.Input(shape=data.input_shape(data_format)),
            layers.Conv2D(32, 3, activation="relu", data_format=data_format),
            layers.Conv2D(64, 3, activation="relu", data_format=data_format),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Dropout(0.25),
            layers.Flatten(data_format=data_format),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="seed_cnn",
    )


def build_tfwiki_cnn(data_format: str = "channels_last", num_classes: int = data.NUM_CLASSES) -> keras.Sequential:
    """The CNN of the TensorFlow notes: two 5x5 conv/pool stages and a 1024-unit dense layer.

    Args and Returns: as `build_seed_cnn`.
    """
    return keras.Sequential(
        [
            keras.Input(shape=data.input_shape(data_format)),
            layers.Conv2D(32, 5, padding="same", activation="relu", data_format=data_format),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Conv2D(64, 5, padding="same", activation="relu", data_format=data_format),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.Flatten(data_format=data_format),
            layers.Dense(1024, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="tfwiki_cnn",
    )


def build_mlp(data_format: str = "channels_last", num_classes: int = data.NUM_CLASSES) -> keras.Sequential:
    """The MLP of the TensorFlow notes: one hidden layer of 100 units.

    Args and Returns: as `build_seed_cnn`.
    """
    return keras.Sequential(
        [
            keras.Input(shape=data.input_shape(data_format)),
            layers.Flatten(),
            layers.Dense(100, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="mlp",
    )


def build_augmentation(data_format: str = "channels_last", seed: int | None = None) -> keras.Sequential:
    """Random rotation (about 10 degrees), zoom (10%) and shifts (10%); no flips, which change digits.

    Keras' preprocessing layers act only in training: at prediction the block passes images through
    unchanged, unless it is called with `training=True` for test-time augmentation.

    Args:
        data_format: `"channels_last"` or `"channels_first"`.
        seed: seeds the transformations; None draws from Keras' global seed (`keras.utils.set_random_seed`).

    Returns:
        A model mapping images to images of the same shape `(B, 28, 28, 1)` (or `(B, 1, 28, 28)`).
    """
    # Black fill: MNIST's background is 0, and reflected strokes would invent ink.
    fill = dict(fill_mode="constant", fill_value=0.0, data_format=data_format)
    seeds = [None] * 3 if seed is None else [seed, seed + 1, seed + 2]
    return keras.Sequential(
        [
            keras.Input(shape=data.input_shape(data_format)),
            layers.RandomRotation(10 / 360, seed=seeds[0], **fill),
            layers.RandomZoom(0.1, seed=seeds[1], **fill),
            layers.RandomTranslation(0.1, 0.1, seed=seeds[2], **fill),
        ],
        name="augmentation",
    )


def build_strong_cnn(data_format: str = "channels_last", num_classes: int = data.NUM_CLASSES) -> keras.Sequential:
    """The CNN of the best honest Digit Recognizer ensembles, with its augmentation built in.

    Two blocks of Conv 3x3, Conv 3x3 and a learned pooling (Conv 5x5 stride 2), each with BatchNorm and
    Dropout 0.4, then Conv 4x4 to 128 features and a softmax.

    Args and Returns: as `build_seed_cnn`.
    """
    conv = dict(activation="relu", data_format=data_format)
    axis = -1 if data_format == "channels_last" else 1
    return keras.Sequential(
        [
            keras.Input(shape=data.input_shape(data_format)),
            build_augmentation(data_format),
            layers.Conv2D(32, 3, **conv),
            layers.BatchNormalization(axis=axis),
            layers.Conv2D(32, 3, **conv),
            layers.BatchNormalization(axis=axis),
            layers.Conv2D(32, 5, strides=2, padding="same", **conv),
            layers.BatchNormalization(axis=axis),
            layers.Dropout(0.4),
            layers.Conv2D(64, 3, **conv),
            layers.BatchNormalization(axis=axis),
            layers.Conv2D(64, 3, **conv),
            layers.BatchNormalization(axis=axis),
            layers.Conv2D(64, 5, strides=2, padding="same", **conv),
            layers.BatchNormalization(axis=axis),
            layers.Dropout(0.4),
            layers.Conv2D(128, 4, **conv),
            layers.BatchNormalization(axis=axis),
            layers.Flatten(data_format=data_format),
            layers.Dropout(0.4),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="strong_cnn",
    )


MODELS = {
    "seed_cnn": build_seed_cnn,
    "tfwiki_cnn": build_tfwiki_cnn,
    "mlp": build_mlp,
    "strong_cnn": build_strong_cnn,
}


def build_model(name: str, data_format: str) -> keras.Sequential:
    """Builds a registered model by name.

    Raises:
        KitError: `name` is not registered; the message lists the known names.
    """
    config.check_choice("model", name, tuple(MODELS))
    return MODELS[name](data_format)


def build_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Builds an optimizer by name: `adadelta` (rho 0.95), `adam` or `rmsprop`."""
    if name == "adadelta":
        return keras.optimizers.Adadelta(learning_rate=learning_rate, rho=0.95)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    config.check_choice("optimizer", name, config.OPTIMIZER_NAMES)
    raise KitError(f"Optimizer {name!r} is listed but not built; this is a bug in src/models.py.")


def compile_model(model: keras.Model, optimizer: str, learning_rate: float) -> keras.Model:
    """Compiles `model` with categorical cross-entropy and accuracy, and returns it."""
    model.compile(
        optimizer=build_optimizer(optimizer, learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
