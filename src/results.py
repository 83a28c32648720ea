"""What training leaves: each fold's result, the fold ensemble, accuracy, and a finished fold's file.

A fold's result holds its out-of-fold (held-out) and test probabilities; the run's result, a `CrossValidation`,
puts the folds' held-out rows together (out-of-fold, OOF) and averages their test probabilities (the ensemble).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src import files, npz
from src.errors import KitError
from src.mnist import NUM_CLASSES


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


def save_fold(path: Path, fold: FoldResult) -> None:
    """Saves a finished fold (or one model of a fold) to `path`, atomically: its probabilities and its summary."""
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


def _is_number(value) -> bool:
    return isinstance(value, float) or isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _summary_problem(summary) -> str | None:
    """Returns what is wrong with a saved fold's summary, or None."""
    if not isinstance(summary, dict):
        return "its summary is not a JSON object"
    index = summary.get("fold_index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 2**31:
        return f"its fold_index is {index!r}"
    if not _is_number(summary.get("seconds")):
        return f"its seconds are {summary.get('seconds')!r}"
    for name in ("validation_accuracy", "test_accuracy"):
        if summary.get(name) is not None and not _is_number(summary[name]):
            return f"its {name} is {summary[name]!r}"
    history = summary.get("history", {})
    if not isinstance(history, dict) or not all(
            isinstance(values, list) and all(value is None or _is_number(value) for value in values)
            for values in history.values()):
        return "its history is not lists of numbers by metric"
    return None


def load_fold(path: Path) -> FoldResult:
    """Reads a fold saved by `save_fold`: a resumed run's own, or one downloaded from a fold kernel (`collect`).

    Raises:
        KitError: the file is not a saved fold or is damaged (every array and the summary are checked).
    """
    fix = "Delete it to train the fold again, or download the fold kernels' outputs again."
    arrays = npz.read_npz(path, ("summary", "test_probabilities"), ("validation_indices", "validation_probabilities"),
                          what="a saved fold", fix=fix)
    summary_array = arrays["summary"]
    summary = None
    if summary_array.ndim == 0 and summary_array.dtype.kind == "U":
        try:
            summary = json.loads(str(summary_array))
        except (ValueError, RecursionError):
            summary = None
    problem = _summary_problem(summary) if summary is not None else "its summary is not JSON text"
    test_probabilities = arrays["test_probabilities"]
    indices = arrays.get("validation_indices")
    validation_probabilities = arrays.get("validation_probabilities")
    if problem is None and not _probabilities(test_probabilities):
        problem = f"its test_probabilities have shape {test_probabilities.shape} and dtype {test_probabilities.dtype}"
    if problem is None and (indices is None) != (validation_probabilities is None):
        problem = "it holds validation indices or probabilities without the other"
    if problem is None and indices is not None and (indices.ndim != 1 or indices.dtype.kind not in "iu"
                                                    or not _probabilities(validation_probabilities, len(indices))):
        problem = (f"its validation_indices {indices.shape} ({indices.dtype}) do not match its "
                   f"validation_probabilities {validation_probabilities.shape} ({validation_probabilities.dtype})")
    if problem is not None:
        raise KitError(f"{path} is not a saved fold the kit can use: {problem}. {fix}")
    return FoldResult(
        fold_index=summary["fold_index"],
        seconds=float(summary["seconds"]),
        validation_indices=indices,
        validation_probabilities=validation_probabilities,
        validation_accuracy=summary.get("validation_accuracy"),
        test_probabilities=test_probabilities,
        test_accuracy=summary.get("test_accuracy"),
        history=summary.get("history", {}),
    )


def _probabilities(array: np.ndarray, rows: int | None = None) -> bool:
    """Returns whether `array` is floats of shape `(rows, 10)`."""
    return array.ndim == 2 and array.shape[1] == NUM_CLASSES and array.dtype.kind == "f" and \
        (rows is None or array.shape[0] == rows)


def combine_members(members: list[FoldResult], dataset) -> FoldResult:
    """Averages the models of one fold (`--seeds`) into the fold's result.

    Returns:
        A `FoldResult` whose probabilities are the members' means and whose accuracies are recomputed from
        them; its history is the first member's, its seconds the members' sum.
    """
    if len(members) == 1:
        return members[0]
    first = members[0]
    test_probabilities = np.mean([member.test_probabilities for member in members], axis=0)
    test_accuracy = accuracy(test_probabilities, dataset.y_test) if dataset.has_test_labels else None
    validation_probabilities = None
    validation_accuracy = test_accuracy
    if first.validation_indices is not None:
        validation_probabilities = np.mean([member.validation_probabilities for member in members], axis=0)
        validation_accuracy = accuracy(validation_probabilities, dataset.y_train[first.validation_indices])
    return FoldResult(
        fold_index=first.fold_index,
        seconds=sum(member.seconds for member in members),
        validation_indices=first.validation_indices,
        validation_probabilities=validation_probabilities,
        validation_accuracy=validation_accuracy,
        test_probabilities=test_probabilities,
        test_accuracy=test_accuracy,
        history=first.history,
    )


def ensemble(folds: list[FoldResult], dataset) -> CrossValidation:
    """Combines fold results: out-of-fold probabilities and the mean of the test probabilities.

    Args:
        folds: the folds' results, each fold once.
        dataset: the run's `data.Dataset`, for the labels the accuracies are measured against.

    Returns:
        The run's `CrossValidation`.
    """
    test_probabilities = np.mean([fold.test_probabilities for fold in folds], axis=0)
    oof_probabilities = None
    oof_accuracy = None
    # Out-of-fold predictions exist only when the folds hold out every training row (not for one fold of K).
    if all(fold.validation_indices is not None for fold in folds) and \
            sum(len(fold.validation_indices) for fold in folds) == len(dataset.y_train):
        oof_probabilities = np.zeros((len(dataset.y_train), NUM_CLASSES), dtype=np.float32)
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
