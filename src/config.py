"""A run's configuration: the flags every kernel shares, their defaults, their checks, and what each field is to a run.

This module imports nothing heavy, so that `--help` and every bad-flag error answer at once. The model names are
the registry's (`src.models.MODEL_NAMES`), checked where a model is built and by the kernels' flags.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from src import machine, paths
from src.errors import KitError

OPTIMIZER_NAMES = ("adadelta", "adam", "rmsprop")
# How the learning rate moves over a fit; `src.models.build_learning_rate` builds them.
SCHEDULE_NAMES = ("constant", "warmup_cosine", "exponential")
# The layers' numbers: float32, or bfloat16 arithmetic on float32 weights (`mixed_bfloat16`); `auto` picks
# mixed_bfloat16 where the CPU computes bfloat16 natively, float32 elsewhere.
PRECISION_NAMES = ("float32", "mixed_bfloat16", "auto")
LOOP_NAMES = ("fit", "custom")
# tf.distribute strategies a run can train under (see src/distribute.py).
STRATEGY_NAMES = ("auto", "none", "mirrored", "multiworker", "tpu")
# Adadelta's rate is 1.0 as in the classic Keras MNIST CNN: Keras 3's default of 0.001 leaves that model
# near 84% after 12 epochs instead of 99.25% (keras-team/keras#13815).
DEFAULT_LEARNING_RATES = {"adadelta": 1.0, "adam": 1e-3, "rmsprop": 1e-3}
MAX_FOLDS = 50


class Role(NamedTuple):
    """What a configuration field is to a run.

    Attributes:
        identity: it changes what the run computes: two commands that differ in it are different runs (resume).
        shown: `make runs` lists it among the settings that differ between runs.
        compared: the fold kernels of one `make push-folds` must agree on it before `make collect` blends them.
    """

    identity: bool
    shown: bool
    compared: bool


# Every field of `RunConfig` has one of these roles (its metadata "role").
ROLES = {
    "result": Role(identity=True, shown=True, compared=True),  # changes what the run computes
    "column": Role(identity=True, shown=False, compared=True),  # the same, with its own column in `make runs`
    "fold": Role(identity=True, shown=True, compared=False),  # which fold of the split this run trains
    "request": Role(identity=False, shown=True, compared=True),  # how the run was asked for (--budget, --restore)
    "place": Role(identity=False, shown=False, compared=False),  # where it reads and writes, and how it talks
}


def _field(default, role: str):
    return dataclasses.field(default=default, metadata={"role": role})


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a run computes.

    Attributes:
        kernel: the kernel's name, e.g. `"mnist-cnn"`; it names the run's outputs.
        data: an `.npz`, a competition folder or a folder to search; None to look in the default place.
        out: the folder that receives the submission and everything else the run writes; None for the
            default (`submissions/`, or `/kaggle/working` on Kaggle).
        model: a name from the model registry (`src.models.MODEL_NAMES`), or the kernel's own model.
        optimizer: a name from `OPTIMIZER_NAMES`.
        learning_rate: the optimizer's rate (a schedule's peak); None for the optimizer's default in the kit.
        schedule: a name from `SCHEDULE_NAMES`: `"constant"`, or `"warmup_cosine"` (a linear ramp over the
            first tenth of the steps, then a cosine decay to zero), or `"exponential"` (a constant factor per
            epoch, to a tenth of the rate after the last: x0.95 per epoch over 45 epochs).
        precision: a name from `PRECISION_NAMES`; `auto` looks at this machine's CPU (not at GPUs: name the
            precision for one).
        epochs: passes over each fold's training data.
        batch_size: images per training step.
        folds: 1 for one fit on all training data; K >= 2 for stratified K-fold with a fold ensemble.
        seed: seeds fold splits, shuffling, initial weights and dropout.
        quiet: log lines only, no progress bars.
        verbose: show TensorFlow's own log lines too (hidden by default).
        plots: draw the run's pictures (learning curves, confusion matrices, mistakes) into its folder.
        loop: `"fit"` trains with Keras' `model.fit`; `"custom"` with the kit's `tf.GradientTape` loop.
        eager: run the training step eagerly instead of compiled into a graph (`tf.function`).
        restore: a checkpoint, saved model or run folder to predict with; nothing is trained.
        restart: discard an unfinished run of the same configuration instead of resuming it.
        seeds: models trained per fold, each from its own seed; the fold predicts with their mean.
        tta: test-time augmentation: 0 predicts the images as they are, N the mean over N augmented copies.
        budget: the named set of defaults a recipe kernel started from (`--budget`), for the record.
        strategy: the `tf.distribute` strategy: `auto` (a TPU, else several GPUs mirrored, else none),
            `none`, `mirrored`, `multiworker` (from `TF_CONFIG`) or `tpu`; `batch_size` is per replica.
        fold_index: train only this fold (0-based) of `folds` and save its probabilities, for folds run as
            separate Kaggle kernels (`make push-folds`); None trains every fold.
        test_curve: after every epoch, also measure the accuracy on the labelled test split, outside the
            epoch's timed seconds, into the fold's history as `test_accuracy` (`make bench-frontier` draws it).
            For reports only: nothing is chosen on it. With `--loop fit`.
        pseudo_label: from half-way through each model's epochs, also learn from the unlabelled images (the
            test images and the fold's held-out rows) it then gives a top probability of at least this, in
            `[0, 1)`, labelled as it labels them (`src.pseudo_labels`); None for none. With `--loop fit`.
    """

    kernel: str = dataclasses.field(metadata={"role": "column"})
    data: str | None = _field(None, "place")
    out: str | None = _field(None, "place")
    model: str = _field("seed_cnn", "column")
    optimizer: str = _field("adadelta", "result")
    learning_rate: float | None = _field(None, "result")
    schedule: str = _field("constant", "result")
    precision: str = _field("float32", "result")
    epochs: int = _field(12, "result")
    batch_size: int = _field(128, "result")
    folds: int = _field(5, "column")
    seed: int = _field(0, "result")
    quiet: bool = _field(False, "place")
    verbose: bool = _field(False, "place")
    plots: bool = _field(True, "place")
    loop: str = _field("fit", "result")
    eager: bool = _field(False, "result")
    restore: str | None = _field(None, "request")
    restart: bool = _field(False, "place")
    seeds: int = _field(1, "result")
    tta: int = _field(0, "result")
    budget: str | None = _field(None, "request")
    strategy: str = _field("auto", "result")
    fold_index: int | None = _field(None, "fold")
    test_curve: bool = _field(False, "place")
    pseudo_label: float | None = _field(None, "result")

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZER_NAMES)
        check_choice("loop", self.loop, LOOP_NAMES)
        check_choice("schedule", self.schedule, SCHEDULE_NAMES)
        check_choice("precision", self.precision, PRECISION_NAMES)
        check_choice("strategy", self.strategy, STRATEGY_NAMES)
        check_range("epochs", self.epochs, 1, 10_000)
        check_range("batch_size", self.batch_size, 1, 65_536)
        check_range("folds", self.folds, 1, MAX_FOLDS)
        check_range("seed", self.seed, 0, 2**31 - 1)
        check_range("seeds", self.seeds, 1, 100)
        if self.test_curve and self.loop != "fit":
            raise KitError(f"--test-curve measures each epoch with --loop fit; drop one. Received: loop={self.loop!r}.")
        check_range("tta", self.tta, 0, 100)
        if self.pseudo_label is not None:
            self._check_pseudo_label()
        if self.fold_index is not None:
            if self.folds < 2:
                raise KitError(f"fold_index needs folds of 2 or more (one fold of K); pass --folds K. "
                               f"Received: fold_index={self.fold_index!r}, folds={self.folds}.")
            check_range("fold_index", self.fold_index, 0, self.folds - 1)
        if self.strategy == "multiworker" and self.loop == "fit":
            # Keras 3's model.fit reduces values across workers in ways MultiWorkerMirroredStrategy refuses
            # (keras-team/keras#20585, still so in Keras 3.15); the custom loop does its own reductions.
            raise KitError("strategy multiworker trains with the custom loop only: Keras 3's model.fit fails under "
                           "MultiWorkerMirroredStrategy (keras-team/keras#20585); add --loop custom. "
                           "Received: strategy='multiworker', loop='fit'.")
        if self.learning_rate is not None and not 0 < self.learning_rate <= 100:
            raise KitError(
                f"learning_rate must be a number in (0, 100]. Received: learning_rate={self.learning_rate}."
            )

    def _check_pseudo_label(self) -> None:
        if isinstance(self.pseudo_label, bool) or not isinstance(self.pseudo_label, (int, float)) \
                or not 0 <= self.pseudo_label < 1:
            raise KitError(f"pseudo_label is the lowest confidence a pseudo-label needs, a number in [0, 1) such as "
                           f"0.99. Received: pseudo_label={self.pseudo_label!r}.")
        if self.loop != "fit":
            raise KitError(f"--pseudo-label trains with --loop fit; drop one. Received: loop={self.loop!r}.")
        if self.epochs < 2:
            raise KitError(f"--pseudo-label learns from its labels in the second half of the epochs, so it needs 2 "
                           f"epochs or more. Received: epochs={self.epochs}.")

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate the optimizer is built with."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LEARNING_RATES[self.optimizer]

    @property
    def effective_precision(self) -> str:
        """The dtype policy the model is built with: `auto` resolved for this machine."""
        if self.precision != "auto":
            return self.precision
        return "mixed_bfloat16" if machine.cpu_computes_bfloat16() else "float32"

    @property
    def output_dir(self) -> Path:
        """The folder that receives the run's outputs: `out`, or the default for this machine."""
        return Path(self.out) if self.out is not None else paths.default_output_dir()

    def to_dict(self) -> dict:
        """Returns the configuration as plain JSON-ready values, the learning rate and precision resolved."""
        values = dataclasses.asdict(self)
        values["learning_rate"] = self.effective_learning_rate
        values["precision"] = self.effective_precision
        return values


def field_names(aspect: str, value: bool = True) -> tuple[str, ...]:
    """Returns the `RunConfig` fields, in order, whose role's `aspect` is `value`.

    Args:
        aspect: `"identity"`, `"shown"` or `"compared"` (see `Role`).
        value: True for the fields that have the aspect, False for those that lack it.
    """
    return tuple(item.name for item in dataclasses.fields(RunConfig)
                 if getattr(ROLES[item.metadata["role"]], aspect) == value)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raises the kit's error unless `value` is one of `choices`, listing them."""
    if value not in choices:
        raise KitError(f"Unknown {name}; choose one of {', '.join(choices)}. Received: {name}={value!r}.")


def check_range(name: str, value: int, low: int, high: int) -> None:
    """Raises the kit's error unless `low <= value <= high`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise KitError(f"{name} must be an integer from {low} to {high}. Received: {name}={value!r}.")
