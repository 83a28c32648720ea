"""One fit of one model: what a fit needs (`FitPlan`), and Keras' `model.fit` with the kit's callbacks.

Both loops (this one and `src.custom_loop`) read the same batches (`pipelines.epoch_batches`: every epoch in an
order fixed by the fold's seed and the epoch's number), reseed dropout at the start of every epoch, save their
state at the end of every epoch in the fold's folder, and pick up from the last saved epoch when the fold is
trained again. A fold that was killed and resumed therefore ends with the very weights an uninterrupted fold
ends with.

| | `--loop fit` | `--loop custom` |
| --- | --- | --- |
| step | Keras' own | a `tf.GradientTape` step: the kernel's, or `custom_loop.notes_train_step` |
| graph | Keras compiles it; `--eager` sets `run_eagerly` | `tf.function`; `--eager` runs it as Python |
| resume | `AtomicBackupAndRestore` in `<fold>/backup/` | `tf.train.CheckpointManager` in `<fold>/checkpoints/` |
| kept for `--restore` | `<fold>/model.keras` (`AtomicModelCheckpoint`) | the last 3 checkpoints |
| TensorBoard | `keras.callbacks.TensorBoard` | `tf.summary`, same tags and folders |
"""

import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from src import callbacks, pipelines, pseudo_labels

logger = logging.getLogger(__name__)

# Loss is written to TensorBoard every this many steps, beside the per-epoch summaries.
SUMMARY_EVERY_STEPS = 50
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.keras"
EVALUATE_BATCH_SIZE = 1000


@dataclass(frozen=True)
class FitPlan:
    """What either loop needs to train one fold.

    Attributes:
        x_train: `uint8` images `(N, 28, 28)`.
        y_train: `uint8` labels `(N,)`.
        x_validation: `uint8` images `(V, 28, 28)` evaluated after every epoch, or None.
        y_validation: their labels `(V,)`, or None.
        batch_size: images per step.
        epochs: epochs to train in all, counting those a resumed fold finished before.
        seed: the fold's seed; it fixes each epoch's order and dropout masks.
        data_format: the layout from `layout.data_format()`.
        fold_dir: where checkpoints go and are resumed from; None to keep none.
        logs_dir: where TensorBoard event files go; None to write none.
        eager: run the step eagerly instead of as a graph.
        verbose: 0 silent, 1 a progress bar, 2 one line per epoch (Keras' meaning).
        strategy: the `tf.distribute.Strategy` the model and optimizer were created under; None for
            TensorFlow's default. `batch_size` is then the global batch, over all replicas.
        drop_remainder: drop each epoch's last, smaller batch, so that every step has the same shape (TPUs).
        epoch_listener: called with `(epoch, logs)` after every epoch, once it is saved; an exception it raises
            stops the fit (a search prunes a trial so: `src.trial_hooks`). None for none.
        x_report: `uint8` images `(M, 28, 28)` whose accuracy is measured after every epoch, outside its timed
            seconds, as `test_accuracy` (`--test-curve`), or None.
        y_report: their labels `(M,)`, or None.
        x_unlabelled: `uint8` images `(U, 28, 28)` without labels, for pseudo-labels, or None.
        pseudo_label: in the second half of the epochs, learn also from the `x_unlabelled` images to which the
            model gives a top probability of at least this at half-way (`src.pseudo_labels`); None for none.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray | None
    y_validation: np.ndarray | None
    batch_size: int
    epochs: int
    seed: int
    data_format: str
    fold_dir: Path | None = None
    logs_dir: Path | None = None
    eager: bool = False
    verbose: int = 0
    strategy: object = None
    drop_remainder: bool = False
    epoch_listener: Callable[[int, dict[str, float]], None] | None = None
    x_report: np.ndarray | None = None
    y_report: np.ndarray | None = None
    x_unlabelled: np.ndarray | None = None
    pseudo_label: float | None = None

    @property
    def steps_per_epoch(self) -> int:
        if self.drop_remainder:
            return len(self.x_train) // self.batch_size
        return math.ceil(len(self.x_train) / self.batch_size)

    def batches(self, first_epoch: int, one_hot: bool, last_epoch: int | None = None,
                extra: tuple[np.ndarray, np.ndarray] | None = None):
        """Returns the training batches of epochs `first_epoch` to `last_epoch` (the last epoch when None).

        With `extra` images and labels (pseudo-labels), each epoch draws its `steps_per_epoch` batches from the
        training rows and them together (see `pipelines.epoch_batches`).
        """
        x, y, rows_per_epoch = self.x_train, self.y_train, None
        if extra is not None:
            x, y, rows_per_epoch = np.concatenate([x, extra[0]]), np.concatenate([y, extra[1]]), len(x)
        return pipelines.epoch_batches(
            x, y, batch_size=self.batch_size, data_format=self.data_format, seed=self.seed,
            epochs=self.epochs if last_epoch is None else last_epoch, first_epoch=first_epoch, one_hot=one_hot,
            drop_remainder=self.drop_remainder, rows_per_epoch=rows_per_epoch,
        )

    def validation(self, one_hot: bool):
        """Returns the validation batches, or None."""
        if self.x_validation is None:
            return None
        return pipelines.make_pipeline(self.x_validation, self.y_validation, batch_size=EVALUATE_BATCH_SIZE,
                                       data_format=self.data_format, one_hot=one_hot)


def verbosity(quiet: bool) -> int:
    """Returns Keras' `verbose` for a fit: 0 with `--quiet`, a progress bar on a terminal, else a line per epoch."""
    return 0 if quiet else 1 if sys.stdout.isatty() else 2


def fit_keras(model: keras.Model, plan: FitPlan) -> dict[str, list[float]]:
    """Trains a compiled model with `model.fit`, resuming from the fold's backup when there is one.

    With `plan.pseudo_label` it fits twice: the first half of the epochs on the training rows, the second on them
    and the images labelled in between (`src.pseudo_labels`), at the same steps per epoch and on one schedule.

    Args:
        model: compiled with one-hot categorical cross-entropy.
        plan: the fold.

    Returns:
        Per-epoch metrics of every epoch (`loss`, `accuracy`, `val_loss`, `val_accuracy`, ...), resumed
        epochs included.
    """
    fit_callbacks: list[keras.callbacks.Callback] = [callbacks.EpochClock(), callbacks.EpochSeeds(plan.seed)]
    labeller = None
    if plan.pseudo_label is not None:
        labeller = pseudo_labels.PseudoLabeller(
            plan.x_unlabelled, plan.pseudo_label, pseudo_labels.start_epoch(plan.epochs), plan.data_format,
            plan.fold_dir / pseudo_labels.FILE_NAME if plan.fold_dir is not None else None)
        fit_callbacks.insert(0, labeller)  # before the clock, so that the epoch's seconds include the labelling
    if plan.x_report is not None:  # after the clock, so that its seconds stay the epoch's own
        report = pipelines.make_pipeline(plan.x_report, None, batch_size=EVALUATE_BATCH_SIZE,
                                         data_format=plan.data_format)
        fit_callbacks.insert(1, callbacks.ReportAccuracy(report, plan.y_report))
    backup = None
    if plan.logs_dir is not None:
        # Per epoch only: with update_freq=N, Keras drops the epoch summaries of every epoch whose last
        # step is not a multiple of N (tensorflow/tensorboard#4975); BatchLossSummaries writes the steps.
        fit_callbacks.append(keras.callbacks.TensorBoard(str(plan.logs_dir)))
        fit_callbacks.append(callbacks.BatchLossSummaries(plan.logs_dir / "train", SUMMARY_EVERY_STEPS))
    if plan.fold_dir is not None:
        # The model is saved before the backup names the epoch finished, so --restore never lags it.
        fit_callbacks.append(callbacks.AtomicModelCheckpoint(plan.fold_dir / MODEL_FILE))
        backup = callbacks.AtomicBackupAndRestore(plan.fold_dir / BACKUP_DIR)
        fit_callbacks.append(backup)
    if plan.epoch_listener is not None:  # last, so that the epoch it hears of is saved
        fit_callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=plan.epoch_listener))
    first_epoch = backup.saved_epoch if backup is not None else 0
    if first_epoch:
        logger.info("resuming from the backup of epoch %d/%d in %s", first_epoch, plan.epochs, backup.backup_dir)
    model.run_eagerly = plan.eager
    validation = plan.validation(one_hot=True)

    def fit(batches, until_epoch: int) -> dict[str, list[float]]:
        return model.fit(
            batches,
            initial_epoch=first_epoch,  # a backup, when there is one, restores the same epoch
            epochs=until_epoch,
            steps_per_epoch=plan.steps_per_epoch,
            validation_data=validation,
            callbacks=fit_callbacks,
            shuffle=False,  # the batches come shuffled, in the order of their epoch
            verbose=plan.verbose,
        ).history

    if labeller is None:
        history = fit(plan.batches(first_epoch, one_hot=True), plan.epochs)
    else:
        # Two fits: the training rows alone, then with the images the model labelled at the end of the first.
        history = {}
        if first_epoch < labeller.epoch:
            history = fit(plan.batches(first_epoch, one_hot=True, last_epoch=labeller.epoch), labeller.epoch)
            first_epoch = labeller.epoch
        more = fit(plan.batches(first_epoch, one_hot=True, extra=labeller.labelled_images()), plan.epochs)
        history = {name: history.get(name, []) + values for name, values in more.items()}
    return backup.history if backup is not None else history
