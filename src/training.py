"""Training: one fit, stratified k-fold cross-validation and the fold ensemble."""

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src import data, files
from src.config import RunConfig
from src.errors import KitError

logger = logging.getLogger(__name__)

PREDICT_BATCH_SIZE = 1000


@dataclass
class FoldResult:
    """What one fold's model left behind.

    Attributes:
        fold_index: 0-based.
        seconds: wall time of the fit and predictions.
        validation_indices: training rows held out for this fold, shape `(V,)`; None for `--folds 1`.
        validation_probabilities: softmax on those rows, `(V, 10)`; None for `--folds 1`.
        validation_accuracy: accuracy on the held-out rows (on the test split for `--folds 1` when
            it has labels); None when nothing labelled was held out.
        test_probabilities: softmax on the test split, `(M, 10)`.
        test_accuracy: this model's accuracy on the test split when it has labels, else None.
        history: Keras' per-epoch metrics (`loss`, `accuracy`, `val_loss`, `val_accuracy`).
    """

    fold_index: int
    seconds: float
    validation_indices: np.ndarray | None
    validation_probabilities: np.ndarray | None
    validation_accuracy: float | None
    test_probabilities: np.ndarray
    test_accuracy: float | None
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class CrossValidation:
    """The folds of a run and their ensemble.

    Attributes:
        folds: one `FoldResult` per fold.
        oof_probabilities: out-of-fold softmax, `(N, 10)`, every training row predicted once by the
            model that did not see it; None for `--folds 1`.
        test_probabilities: the mean of the folds' test softmax, `(M, 10)`.
        oof_accuracy: accuracy of `oof_probabilities`; None for `--folds 1`.
        test_accuracy: the ensemble's test accuracy when the test split has labels, else None.
    """

    folds: list[FoldResult]
    oof_probabilities: np.ndarray | None
    test_probabilities: np.ndarray
    oof_accuracy: float | None
    test_accuracy: float | None

    @property
    def validation_accuracies(self) -> list[float]:
        return [fold.validation_accuracy for fold in self.folds if fold.validation_accuracy is not None]

    @property
    def cv_mean(self) -> float | None:
        scores = self.validation_accuracies
        return float(np.mean(scores)) if scores else None

    @property
    def cv_std(self) -> float | None:
        scores = self.validation_accuracies
        return float(np.std(scores)) if scores else None

    @property
    def test_labels(self) -> np.ndarray:
        """The submission's labels: argmax of the ensemble's probabilities, shape `(M,)`."""
        return self.test_probabilities.argmax(axis=1)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Returns the share of rows whose argmax equals the label."""
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def fold_splits(labels: np.ndarray, num_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Splits training rows into stratified, shuffled, seeded folds.

    Args:
        labels: `(N,)` training labels.
        num_folds: 1 for a single split that trains on every row; K >= 2 for `StratifiedKFold`.
        seed: the shuffle seed.

    Returns:
        One `(train_indices, validation_indices)` pair per fold; `validation_indices` is None for one fold.

    Raises:
        KitError: a digit has fewer images than there are folds.
    """
    if num_folds == 1:
        return [(np.arange(len(labels)), None)]
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(labels, minlength=data.NUM_CLASSES).min())
    if smallest < num_folds:
        raise KitError(
            f"folds must not exceed the images of the rarest digit ({smallest}); use fewer folds or more "
            f"data. Received: folds={num_folds}."
        )
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    # Identical runs give identical submissions: TensorFlow picks deterministic kernels.
    tf.config.experimental.enable_op_determinism()


def _verbosity(quiet: bool) -> int:
    if quiet:
        return 0
    # A progress bar per batch is for terminals; logs get one line per epoch.
    return 1 if sys.stdout.isatty() else 2


def _epoch_clock():
    """Returns a callback that adds each epoch's wall seconds (training + validation) to the history.

    Benchmarks read them as `history["epoch_seconds"]` to compare images/second with other programs.
    """
    import keras

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            # History comes after this callback, so it records the key with the epoch's metrics.
            if logs is not None:
                logs["epoch_seconds"] = time.perf_counter() - self.started

    return EpochClock()


def fit_fold(
    dataset: data.Dataset,
    config: RunConfig,
    train_indices: np.ndarray,
    validation_indices: np.ndarray | None,
    fold_index: int,
    data_format: str,
) -> FoldResult:
    """Trains one model on `train_indices` and predicts its held-out rows and the test split.

    Returns:
        The fold's `FoldResult`.
    """
    from src import models

    started = time.perf_counter()
    _seed_everything(config.seed * 1000 + fold_index)
    models.set_precision(config.effective_precision)
    model = models.compile_model(
        models.build_model(config.model, data_format), config.optimizer, config.effective_learning_rate,
        schedule=config.schedule, total_steps=config.epochs * math.ceil(len(train_indices) / config.batch_size),
    )
    if validation_indices is not None:
        validation_images, validation_labels = dataset.x_train[validation_indices], dataset.y_train[validation_indices]
    elif dataset.has_test_labels:
        validation_images, validation_labels = dataset.x_test, dataset.y_test
    else:
        validation_images = validation_labels = None

    train = data.make_pipeline(
        dataset.x_train[train_indices],
        dataset.y_train[train_indices],
        batch_size=config.batch_size,
        data_format=data_format,
        shuffle=True,
        seed=config.seed * 1000 + fold_index,
    )
    validation = None
    if validation_images is not None:
        validation = data.make_pipeline(
            validation_images, validation_labels, batch_size=PREDICT_BATCH_SIZE, data_format=data_format
        )
    history = model.fit(
        train,
        epochs=config.epochs,
        validation_data=validation,
        shuffle=False,  # the pipeline already reshuffles every epoch, seeded
        verbose=_verbosity(config.quiet),
        callbacks=[_epoch_clock()],
    )

    def predict(images: np.ndarray) -> np.ndarray:
        pipeline = data.make_pipeline(images, batch_size=PREDICT_BATCH_SIZE, data_format=data_format)
        return model.predict(pipeline, verbose=0).astype(np.float32)

    test_probabilities = predict(dataset.x_test)
    test_accuracy = accuracy(test_probabilities, dataset.y_test) if dataset.has_test_labels else None
    validation_probabilities = None
    validation_accuracy = None
    if validation_indices is not None:
        validation_probabilities = predict(validation_images)
        validation_accuracy = accuracy(validation_probabilities, validation_labels)
    elif dataset.has_test_labels:
        validation_accuracy = test_accuracy
    return FoldResult(
        fold_index=fold_index,
        seconds=time.perf_counter() - started,
        validation_indices=validation_indices,
        validation_probabilities=validation_probabilities,
        validation_accuracy=validation_accuracy,
        test_probabilities=test_probabilities,
        test_accuracy=test_accuracy,
        history={name: [float(value) for value in values] for name, values in history.history.items()},
    )


def _fold_path(workdir: Path, fold_index: int) -> Path:
    return workdir / f"fold-{fold_index}.npz"


def _save_fold(path: Path, fold: FoldResult) -> None:
    import json

    arrays = {"test_probabilities": fold.test_probabilities}
    if fold.validation_indices is not None:
        arrays["validation_indices"] = fold.validation_indices
        arrays["validation_probabilities"] = fold.validation_probabilities
    summary = {
        "fold_index": fold.fold_index,
        "seconds": fold.seconds,
        "validation_accuracy": fold.validation_accuracy,
        "test_accuracy": fold.test_accuracy,
        "history": fold.history,
    }
    with files.atomic_path(path) as temporary, open(temporary, "wb") as stream:
        np.savez(stream, summary=np.array(json.dumps(summary)), **arrays)


def _load_fold(path: Path) -> FoldResult:
    import json

    with np.load(path, allow_pickle=False) as saved:
        summary = json.loads(str(saved["summary"]))
        return FoldResult(
            fold_index=summary["fold_index"],
            seconds=summary["seconds"],
            validation_indices=saved["validation_indices"] if "validation_indices" in saved else None,
            validation_probabilities=saved["validation_probabilities"] if "validation_probabilities" in saved else None,
            validation_accuracy=summary["validation_accuracy"],
            test_probabilities=saved["test_probabilities"],
            test_accuracy=summary["test_accuracy"],
            history=summary["history"],
        )


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def cross_validate(
    dataset: data.Dataset,
    config: RunConfig,
    workdir: Path | None = None,
    data_format: str | None = None,
) -> CrossValidation:
    """Trains one model per fold and ensembles their test predictions.

    Args:
        dataset: the loaded data.
        config: the run's configuration (`folds`, `epochs`, `model`, ...).
        workdir: where each finished fold is saved; a fold already saved there is reused, not retrained.
        data_format: the layout; None decides it with `data.resolve_data_format()`.

    Returns:
        A `CrossValidation`: per-fold results, out-of-fold probabilities `(N, 10)` (None for one fold),
        and the mean test probabilities `(M, 10)`.
    """
    data_format = data_format or data.resolve_data_format()
    splits = fold_splits(dataset.y_train, config.folds, config.seed)
    num_folds = len(splits)
    started = time.perf_counter()
    trained_seconds: list[float] = []
    folds: list[FoldResult] = []
    for fold_index, (train_indices, validation_indices) in enumerate(splits):
        saved = _fold_path(workdir, fold_index) if workdir is not None else None
        if saved is not None and saved.is_file():
            fold = _load_fold(saved)
            logger.info("fold %d/%d: finished earlier, reusing %s", fold_index + 1, num_folds, saved)
        else:
            logger.info(
                "fold %d/%d: training on %d images, validating on %d",
                fold_index + 1,
                num_folds,
                len(train_indices),
                len(validation_indices) if validation_indices is not None else
                (len(dataset.x_test) if dataset.has_test_labels else 0),
            )
            fold = fit_fold(dataset, config, train_indices, validation_indices, fold_index, data_format)
            trained_seconds.append(fold.seconds)
            if saved is not None:
                _save_fold(saved, fold)
        folds.append(fold)
        remaining = num_folds - fold_index - 1
        estimate = np.mean(trained_seconds) * remaining if trained_seconds else 0.0
        score = f"{fold.validation_accuracy:.4f}" if fold.validation_accuracy is not None else "n/a"
        logger.info(
            "fold %d/%d: validation_accuracy=%s in %s; elapsed %s, about %s left",
            fold_index + 1,
            num_folds,
            score,
            _duration(fold.seconds),
            _duration(time.perf_counter() - started),
            _duration(estimate),
        )
    return ensemble(folds, dataset)


def ensemble(folds: list[FoldResult], dataset: data.Dataset) -> CrossValidation:
    """Combines fold results: out-of-fold probabilities and the mean of the test probabilities.

    Returns:
        The run's `CrossValidation`.
    """
    test_probabilities = np.mean([fold.test_probabilities for fold in folds], axis=0)
    oof_probabilities = None
    oof_accuracy = None
    if all(fold.validation_indices is not None for fold in folds):
        oof_probabilities = np.zeros((len(dataset.y_train), data.NUM_CLASSES), dtype=np.float32)
        for fold in folds:
            oof_probabilities[fold.validation_indices] = fold.validation_probabilities
        oof_accuracy = accuracy(oof_probabilities, dataset.y_train)
    test_accuracy = accuracy(test_probabilities, dataset.y_test) if dataset.has_test_labels else None
    return CrossValidation(
        folds=folds,
        oof_probabilities=oof_probabilities,
        test_probabilities=test_probabilities,
        oof_accuracy=oof_accuracy,
        test_accuracy=test_accuracy,
    )
