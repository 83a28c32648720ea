"""How a model learns: its optimizer, the learning rate's schedule over a fit, the numbers' precision, and compiling.

Kernels build their optimizer themselves where the story shows it (`mnist-cnn`'s Adadelta at 1.0); these build
the others by name for `--optimizer`, and the learning rate every fold follows for `--schedule`.
"""

import keras

from src import config
from src.errors import KitError


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
