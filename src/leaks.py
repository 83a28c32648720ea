"""The leak check: test images that are also training images, and training images copied across folds.

The competition's 28,000 test images are MNIST images, so a model trained on MNIST's own test set has seen their
labels: its public score measures memory, not skill. Every image is hashed by its exact bytes (sha256 of its
`uint8` pixels), and the counts go into the run record (`leaks`), which `make submit` reads before submitting.

An image that appears twice in the training data with its copies in different folds inflates the CV score the
same way, a little: the fold that holds one copy out has trained on the other.
"""

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeakCounts:
    """What the leak check found.

    Attributes:
        test_in_train: test images whose exact bytes are also a training image.
        test_rows: the test images checked.
        train_duplicates: training images that repeat an earlier training image.
        duplicates_across_folds: training images whose exact copy is held out in another fold (None without
            k-fold: nothing is held out).
    """

    test_in_train: int
    test_rows: int
    train_duplicates: int
    duplicates_across_folds: int | None

    def to_dict(self) -> dict:
        """Returns the record's `leaks` entry."""
        return asdict(self)


def image_hashes(images: np.ndarray) -> list[bytes]:
    """Returns the sha256 of each image's exact bytes, in row order.

    Args:
        images: `(N, 28, 28)` images (any shape whose first axis is the image).
    """
    rows = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.sha256(row.tobytes()).digest() for row in rows]


def count_leaks(x_train: np.ndarray, x_test: np.ndarray, fold_of_row: np.ndarray | None = None) -> LeakCounts:
    """Counts test images found in the training data, and training duplicates that fall in different folds.

    A pure function of the arrays: it reads nothing and logs nothing.

    Args:
        x_train: `(N, 28, 28)` training images.
        x_test: `(M, 28, 28)` test images.
        fold_of_row: `(N,)` the fold that holds each training row out; None without k-fold.

    Returns:
        The counts.
    """
    train = image_hashes(x_train)
    known = set(train)
    test_in_train = sum(1 for digest in image_hashes(x_test) if digest in known)
    folds_of: dict[bytes, set[int]] = {}
    duplicates = 0
    seen: set[bytes] = set()
    for row, digest in enumerate(train):
        duplicates += digest in seen
        seen.add(digest)
        if fold_of_row is not None:
            folds_of.setdefault(digest, set()).add(int(fold_of_row[row]))
    across = None
    if fold_of_row is not None:
        across = sum(1 for row, digest in enumerate(train) if len(folds_of[digest]) > 1)
    return LeakCounts(test_in_train=test_in_train, test_rows=len(x_test), train_duplicates=duplicates,
                      duplicates_across_folds=across)


def fold_of_rows(rows: int, splits: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray | None:
    """Returns which fold holds each of `rows` training rows out, from `(train, validation)` index pairs.

    None when nothing is held out (`--folds 1`, or a restored run's empty split).
    """
    if not splits or any(validation is None for _, validation in splits):
        return None
    fold_of_row = np.full(rows, -1, dtype=np.int64)
    for fold_index, (_, validation) in enumerate(splits):
        fold_of_row[validation] = fold_index
    return fold_of_row


def check_leaks(dataset, splits: Sequence[tuple[np.ndarray, np.ndarray | None]] = ()) -> dict:
    """Runs the leak check on a run's data and folds, and says what it found in one line each.

    Args:
        dataset: the loaded `data.Dataset`.
        splits: the run's `(train indices, validation indices)` per fold; empty when it trains no fold.

    Returns:
        The record's `leaks` entry (`LeakCounts.to_dict()`).
    """
    counts = count_leaks(dataset.x_train, dataset.x_test, fold_of_rows(len(dataset.x_train), splits))
    if counts.test_in_train:
        logger.warning("warning: %s of the %s test images are also in the training data: scores of this run are "
                       "leaks, not skill", f"{counts.test_in_train:,}", f"{counts.test_rows:,}")
    if counts.duplicates_across_folds:
        logger.warning("warning: %s training images have an exact copy held out in another fold: they inflate the "
                       "CV score", f"{counts.duplicates_across_folds:,}")
    if not counts.test_in_train and not counts.duplicates_across_folds:
        logger.info("leak check: none of the %s test images is in the training data%s", f"{counts.test_rows:,}",
                    "" if counts.duplicates_across_folds is None else ", no duplicate image across folds")
    return counts.to_dict()
