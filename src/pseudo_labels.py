"""Pseudo-labels (`--pseudo-label P`): a fold's model labels the unlabelled images it is sure of and learns from
them too.

Each fold trains its first half of the epochs (`start_epoch`) on its training rows alone. At the end of the last
of them its model predicts the unlabelled images; those whose top probability is at least P join the training
rows for the remaining epochs, labelled with the digit the model gave them. An epoch then draws as many images as
before from the larger pool, so its steps, its time and the learning-rate schedule stay as they were: the
labelling costs one prediction of the unlabelled images.

The unlabelled images are the test images and the fold's own held-out rows, whose labels are not read: each fold
labels with its own model, so its validation accuracy measures what pseudo-labels do to the images they label,
which is what the test images get. The labels are saved in the fold's folder (`FILE_NAME`) before the epoch that
made them is, so a fold resumed in its second half learns from the very labels it had.
"""

import logging
from pathlib import Path

import keras
import numpy as np

from src import files, npz, pipelines
from src.errors import KitError
from src.mnist import NUM_CLASSES

logger = logging.getLogger(__name__)

FILE_NAME = "pseudo-labels.npz"
PREDICT_BATCH_SIZE = 1000


def start_epoch(epochs: int) -> int:
    """Returns the first epoch (0-based) that also learns from pseudo-labels: half of `epochs`, rounded up."""
    return (epochs + 1) // 2


def select_confident(probabilities: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns the images a model is sure of and the digits it gives them.

    Args:
        probabilities: a model's probabilities `(M, 10)`.
        threshold: the lowest top probability kept, in `[0, 1)`.

    Returns:
        `int64` row numbers `(K,)` of the images whose top probability is at least `threshold`, in order, and
        their `uint8` labels `(K,)`.
    """
    indices = np.flatnonzero(probabilities.max(axis=1) >= threshold).astype(np.int64)
    return indices, probabilities[indices].argmax(axis=1).astype(np.uint8)


def save(path: Path, indices: np.ndarray, labels: np.ndarray, threshold: float) -> None:
    """Saves a fold's pseudo-labels to `path`, atomically."""
    with files.atomic_path(path) as temporary, open(temporary, "wb") as stream:
        np.savez(stream, indices=indices, labels=labels, threshold=np.float64(threshold))


def load(path: Path, num_images: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Reads the pseudo-labels `save` wrote for a fold of `num_images` unlabelled images and this threshold.

    Returns:
        The row numbers `(K,)` and labels `(K,)`, as `select_confident` returned them.

    Raises:
        KitError: the file is missing, damaged, or was made for other images or another threshold.
    """
    fix = "Delete the fold's folder, or rerun with --restart, to train the fold again."
    arrays = npz.read_npz(path, ("indices", "labels", "threshold"), what="a fold's pseudo-labels", fix=fix)
    indices, labels, saved_threshold = arrays["indices"], arrays["labels"], arrays["threshold"]
    problem = None
    if indices.ndim != 1 or indices.dtype.kind not in "iu" or labels.shape != indices.shape \
            or labels.dtype.kind not in "iu":
        problem = f"its indices {indices.shape} ({indices.dtype}) and labels {labels.shape} ({labels.dtype}) differ"
    elif len(indices) and (indices.min() < 0 or indices.max() >= num_images or np.any(np.diff(indices) <= 0)):
        problem = f"its indices are not increasing row numbers of the {num_images:,} unlabelled images"
    elif len(labels) and labels.max() >= NUM_CLASSES:
        problem = f"it has labels outside 0-9 ({int(labels.max())})"
    elif saved_threshold.shape != () or float(saved_threshold) != threshold:
        problem = f"it was made at --pseudo-label {saved_threshold}, not {threshold}"
    if problem is not None:
        raise KitError(f"{path} is not this fold's pseudo-labels: {problem}. {fix}")
    return indices.astype(np.int64), labels.astype(np.uint8)


class PseudoLabeller(keras.callbacks.Callback):
    """At the end of the epoch before `epoch`, labels the `images` the model gives a probability >= `threshold`.

    Place it before the kit's epoch clock, so that the epoch's seconds include the prediction, and before the
    backup, so that a saved epoch past `epoch` always has its labels on disk.

    Args:
        images: the unlabelled `uint8` images `(M, 28, 28)`.
        threshold: the lowest top probability kept, in `[0, 1)`.
        epoch: the first epoch that learns from them (`start_epoch`); 1 or more.
        data_format: the layout from `layout.data_format()`.
        path: where the labels are saved and resumed from; None to keep them in memory only.
    """

    def __init__(self, images: np.ndarray, threshold: float, epoch: int, data_format: str, path: Path | None):
        super().__init__()
        self.images, self.threshold, self.epoch, self.path = images, threshold, epoch, path
        self.data_format = data_format
        self.indices: np.ndarray | None = None
        self.labels: np.ndarray | None = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch != self.epoch - 1:
            return
        batches = pipelines.make_pipeline(self.images, batch_size=PREDICT_BATCH_SIZE, data_format=self.data_format)
        probabilities = np.asarray(self.model.predict(batches, verbose=0), dtype=np.float32)
        self.indices, self.labels = select_confident(probabilities, self.threshold)
        if self.path is not None:
            save(self.path, self.indices, self.labels, self.threshold)
        logger.info("pseudo-labels: %s of %s unlabelled images at confidence >= %g join the training rows "
                    "from epoch %d", f"{len(self.indices):,}", f"{len(self.images):,}", self.threshold, self.epoch + 1)

    def labelled_images(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns the pseudo-labelled images `(K, 28, 28)` and their labels `(K,)`: made in this fit, or read
        back from `path` when the fit resumed past `epoch`.

        Raises:
            KitError: they were never made and `path` holds none that fit.
        """
        if self.indices is None:
            if self.path is None:
                raise KitError("No pseudo-labels were made: the fit started past the epoch that makes them and "
                               "keeps no folder to read them from.")
            self.indices, self.labels = load(self.path, len(self.images), self.threshold)
            logger.info("pseudo-labels: %s of %s unlabelled images, read back from %s", f"{len(self.indices):,}",
                        f"{len(self.images):,}", self.path)
        return self.images[self.indices], self.labels
