"""Folds: the stratified split of the training rows, each fold's seeds, and where a fold's work lives on disk.

A run's folder holds, per fold `i`: `fold-<i>/` (checkpoints, backups, the saved model; `seed-<s>/` in it for each
of `--seeds` models) and, once the fold has finished, `fold-<i>.npz` (`src.results.save_fold`).
"""

from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from src.errors import KitError
from src.mnist import NUM_CLASSES


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
    smallest = int(np.bincount(labels, minlength=NUM_CLASSES).min())
    if smallest < num_folds:
        raise KitError(
            f"folds must not exceed the images of the rarest digit ({smallest}); use fewer folds or more "
            f"data. Received: folds={num_folds}."
        )
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def fold_seed(seed: int, fold_index: int) -> int:
    """Returns the seed of one fold: its initial weights, its epochs' orders and its dropout masks."""
    return seed * 1000 + fold_index


def fold_dir(workdir: Path, fold_index: int) -> Path:
    """Returns the folder of a fold's work in progress: checkpoints, backups, its saved model."""
    return workdir / f"fold-{fold_index}"


def member_seed(seed: int, fold_index: int, seed_index: int) -> int:
    """Returns the seed of the `seed_index`-th model of a fold (`--seeds`); the first is the fold's seed."""
    return fold_seed(seed, fold_index) + 1_000_003 * seed_index


def member_dir(workdir: Path, fold_index: int, seed_index: int, num_seeds: int) -> Path:
    """Returns the folder of one model of a fold: the fold's own folder, or `seed-<s>/` in it for `--seeds` > 1."""
    folder = fold_dir(workdir, fold_index)
    return folder if num_seeds == 1 else folder / f"seed-{seed_index}"


def fold_file(workdir: Path, fold_index: int) -> Path:
    """Returns the file a finished fold is saved in: `fold-<i>.npz`."""
    return workdir / f"fold-{fold_index}.npz"


def member_file(workdir: Path, fold_index: int, seed_index: int, num_seeds: int) -> Path | None:
    """Returns the file one finished model of a fold is saved in (`fold-<i>/seed-<s>.npz`); None for one seed."""
    if num_seeds == 1:
        return None
    return member_dir(workdir, fold_index, seed_index, num_seeds).with_suffix(".npz")


def member_number(name: str) -> int | None:
    """Returns `i` of a folder named `fold-<i>` or `seed-<i>`, else None."""
    for prefix in ("fold-", "seed-"):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):])
    return None
