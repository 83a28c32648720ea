"""The model registry: Sequential factories for MNIST, and how they are compiled."""

import math

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
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
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
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
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
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="mlp",
    )


def build_augmentation(data_format: str = "channels_last", seed: int | None = None) -> keras.Sequential:
    """Random rotation (about 10 degrees), zoom (10%) and shifts (10%); no flips, which change digits.

    Height and width zoom independently, as the 0.99757 kernel's `ImageDataGenerator(zoom_range=0.1)` did,
    so digits also come narrower or wider than they were written.

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
            layers.RandomZoom(0.1, 0.1, seed=seeds[1], **fill),
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
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="strong_cnn",
    )


def build_fast_cnn(data_format: str = "channels_last", num_classes: int = data.NUM_CLASSES) -> keras.Sequential:
    """The fast kernel's CNN: two `same` 3x3 conv/pool stages and a 128-unit dense layer.

    Pooling after each convolution leaves the 64-filter layer a 14x14 map instead of the seed CNN's
    24x24, so a training image costs about a third of the seed CNN's arithmetic (4.2 vs 12.0 million
    multiply-adds forward); with Adam and a warm-up + cosine schedule it passes 99.2% on MNIST in four
    epochs. It has no BatchNormalization: Keras 3 computes it unfused, which made each step about 1.6
    times slower on a CPU without making four epochs more accurate (see benchmarks/README.md).

    Args and Returns: as `build_seed_cnn`.
    """
    return keras.Sequential(
        [
            keras.Input(shape=data.input_shape(data_format)),
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


MODELS = {
    "seed_cnn": build_seed_cnn,
    "tfwiki_cnn": build_tfwiki_cnn,
    "mlp": build_mlp,
    "strong_cnn": build_strong_cnn,
    "fast_cnn": build_fast_cnn,
}


def multiply_adds(model: keras.Model) -> int:
    """Counts the multiply-adds of one image's forward pass through a model's Conv2D and Dense layers.

    Training costs about three times this (forward, and the two products of the backward pass); pooling,
    activations and dropout add comparatively little arithmetic.

    Args:
        model: a built model.

    Returns:
        Multiply-adds per image.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kernel_height, kernel_width, in_channels, filters = layer.kernel.shape
            output_shape = list(layer.output.shape[1:])
            del output_shape[-1 if layer.data_format == "channels_last" else 0]
            total += math.prod(output_shape) * filters * kernel_height * kernel_width * in_channels
        elif isinstance(layer, layers.Dense):
            inputs, units = layer.kernel.shape
            total += inputs * units
    return int(total)


def set_precision(policy: str) -> None:
    """Makes the models built from now on compute in `policy` (`"float32"` or `"mixed_bfloat16"`).

    Keras keeps the policy globally, so every fit sets it, float32 included. Under `mixed_bfloat16` weights stay
    float32 and layers compute in bfloat16, which CPUs with AMX or AVX512-BF16 (and recent GPUs) run natively;
    see `config.RunConfig.effective_precision` for `auto`.

    Raises:
        KitError: `policy` is not float32 or mixed_bfloat16.
    """
    config.check_choice("precision", policy, tuple(name for name in config.PRECISION_NAMES if name != "auto"))
    keras.config.set_dtype_policy(policy)


def build_model(name: str, data_format: str) -> keras.Sequential:
    """Builds a registered model by name.

    Raises:
        KitError: `name` is not registered; the message lists the known names.
    """
    config.check_choice("model", name, tuple(MODELS))
    return MODELS[name](data_format)


# The share of a run's steps that `warmup_cosine` spends ramping the rate up from zero.
WARMUP_FRACTION = 0.1


# `exponential` decays the rate by a constant factor per epoch, to this share of its start after the run's
# epochs: x0.95 per epoch over the leaderboard recipe's 45 (0.1 ** (1 / 45) = 0.9501), x0.926 over 30, so that a
# short budget anneals as far as the full one instead of stopping at a high rate.
FINAL_RATE_FRACTION = 0.1


def epoch_decay(epochs: int) -> float:
    """Returns the per-epoch factor of the `exponential` schedule for a run of `epochs` epochs."""
    return FINAL_RATE_FRACTION ** (1 / epochs)


def build_learning_rate(
    schedule: str, learning_rate: float, total_steps: int, steps_per_epoch: int = 1
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Builds the learning rate an optimizer follows over a run.

    Args:
        schedule: `"constant"`, or `"warmup_cosine"`: a linear ramp from zero to `learning_rate` over the
            first `WARMUP_FRACTION` of the steps, then a cosine decay to zero at `total_steps`. The ramp keeps
            Adam's first, poorly estimated steps small; the decay lets a few epochs end in a sharp minimum.
            `"exponential"`: `learning_rate` times `epoch_decay(epochs)` to the power of the finished epochs,
            which reaches a tenth of `learning_rate` after the last epoch.
        learning_rate: the constant rate, or the schedule's peak.
        total_steps: optimizer steps in the whole fit (epochs x batches per epoch).
        steps_per_epoch: batches per epoch; `"exponential"` steps down once per epoch.

    Returns:
        A float for `"constant"`, else a Keras `LearningRateSchedule` of the optimizer's step.

    Raises:
        KitError: unknown `schedule`, or `total_steps` below 1.
    """
    config.check_choice("schedule", schedule, config.SCHEDULE_NAMES)
    if schedule == "constant":
        return learning_rate
    config.check_range("total_steps", total_steps, 1, 2**31 - 1)
    if schedule == "exponential":
        config.check_range("steps_per_epoch", steps_per_epoch, 1, 2**31 - 1)
        epochs = max(1, round(total_steps / steps_per_epoch))
        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=steps_per_epoch, decay_rate=epoch_decay(epochs), staircase=True
        )
    warmup_steps = max(1, round(WARMUP_FRACTION * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )


def build_optimizer(
    name: str, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule
) -> keras.optimizers.Optimizer:
    """Builds an optimizer by name: `adadelta` (rho 0.95), `adam` or `rmsprop`.

    Args:
        name: a name from `config.OPTIMIZER_NAMES`.
        learning_rate: a constant rate, or a schedule from `build_learning_rate`.
    """
    if name == "adadelta":
        return keras.optimizers.Adadelta(learning_rate=learning_rate, rho=0.95)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    config.check_choice("optimizer", name, config.OPTIMIZER_NAMES)
    raise KitError(f"Optimizer {name!r} is listed but not built; this is a bug in src/models.py.")


def compile_model(
    model: keras.Model,
    optimizer: str,
    learning_rate: float,
    *,
    schedule: str = "constant",
    total_steps: int = 1,
    steps_per_epoch: int = 1,
) -> keras.Model:
    """Compiles `model` with categorical cross-entropy and accuracy, and returns it.

    Args:
        model: the model to compile.
        optimizer: a name from `config.OPTIMIZER_NAMES`.
        learning_rate: the constant rate, or the schedule's peak.
        schedule: a name from `config.SCHEDULE_NAMES`; see `build_learning_rate`.
        total_steps: optimizer steps in the whole fit; only schedules other than `"constant"` use it.
        steps_per_epoch: batches per epoch; see `build_learning_rate`.
    """
    model.compile(
        optimizer=build_optimizer(
            optimizer, build_learning_rate(schedule, learning_rate, total_steps, steps_per_epoch)
        ),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
