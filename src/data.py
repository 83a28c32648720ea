"""A run's data: where it is found (`input/`, `/kaggle/input`, `--data`), loading it, and its sha256.

Three sources are understood: an `mnist.npz` in the Keras layout, a folder of the competition's CSVs, and TFRecord
shards written by `python -m src data --to-tfrecord`. Every loader returns images as `uint8` arrays shaped
`(N, 28, 28)` and labels as `uint8` arrays shaped `(N,)`. Loading data never calls Kaggle: `make data` fills
`input/` beforehand (`src.prepare`).
"""

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src import loaders, paths, tfrecord
from src.errors import KitError
from src.loaders import DATA_HINT
from src.mnist import TEST_CSV, TRAIN_CSV

logger = logging.getLogger(__name__)

# Kaggle nests datasets a few folders deep; the search stops well before a runaway tree.
MAX_SEARCH_DEPTH = 6


@dataclass(frozen=True)
class Dataset:
    """A loaded, validated data set.

    Attributes:
        x_train: `uint8` images, shape `(N, 28, 28)`.
        y_train: `uint8` labels 0-9, shape `(N,)`.
        x_test: `uint8` images, shape `(M, 28, 28)`.
        y_test: `uint8` labels, shape `(M,)`, or None for the competition's unlabelled test split.
        source: the `.npz` file or competition folder it came from.
        kind: `"npz"`, `"competition"` or `"tfrecord"`.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray | None
    source: Path
    kind: str

    @property
    def has_test_labels(self) -> bool:
        return self.y_test is not None


def _is_competition_folder(folder: Path) -> bool:
    return (folder / TRAIN_CSV).is_file() and (folder / TEST_CSV).is_file()


def search(root: Path) -> Path | None:
    """Returns the best data source under `root`, or None.

    Args:
        root: the folder to search, `MAX_SEARCH_DEPTH` folders deep at most (hidden folders skipped).

    Returns:
        The shallowest competition folder; else an `.npz` (`mnist.npz` first); else a folder of TFRecord shards.
    """
    competition_folders: list[tuple[int, str]] = []
    npz_files: list[tuple[int, int, str]] = []
    tfrecord_folders: list[tuple[int, str]] = []
    root_depth = len(root.parts)
    for folder, subfolders, files in os.walk(root, followlinks=True):
        depth = len(Path(folder).parts) - root_depth
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        if depth >= MAX_SEARCH_DEPTH:
            subfolders[:] = []
        if TRAIN_CSV in files and TEST_CSV in files:
            competition_folders.append((depth, folder))
        if any(tfrecord.TFRECORD_NAME.match(name) and name.startswith("train-") for name in files):
            tfrecord_folders.append((depth, folder))
        for name in files:
            if name.endswith(".npz"):
                # mnist.npz is the Keras name; other .npz files (run outputs) come last.
                npz_files.append((name != "mnist.npz", depth, os.path.join(folder, name)))
    if competition_folders:
        return Path(min(competition_folders)[1])
    if npz_files:
        return Path(min(npz_files)[2])
    if tfrecord_folders:
        return Path(min(tfrecord_folders)[1])
    return None


def find_data(path: str | os.PathLike | None = None) -> Path:
    """Finds the data a run should read.

    Args:
        path: an `.npz` file, a competition folder (or its `train.csv`), or a folder to search at any
            depth. When None, searches `/kaggle/input` on Kaggle and `input/` elsewhere.

    Returns:
        The `.npz` file or the competition folder to load.

    Raises:
        KitError: nothing usable was found.
    """
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.exists():
            raise KitError(f"Data not found: {candidate} does not exist; {DATA_HINT}.")
        if candidate.is_file():
            if candidate.name in (TRAIN_CSV, TEST_CSV) or tfrecord.TFRECORD_NAME.match(candidate.name):
                return candidate.parent
            return candidate
        found = search(candidate)
        if found is None:
            raise KitError(
                f"No MNIST data in {candidate}: expected an .npz file or train.csv + test.csv "
                f"in it or below; {DATA_HINT}."
            )
        return found
    root = paths.default_input_dir()
    found = search(root) if root.is_dir() else None
    if found is None:
        raise KitError(f"No data in {root}: {DATA_HINT}.")
    return found


def load_dataset(path: str | os.PathLike | None = None) -> Dataset:
    """Finds, loads and validates a data set (see `find_data` for how `path` is read).

    Returns:
        A `Dataset` of `uint8` images `(N, 28, 28)` and labels `(N,)`.

    Raises:
        KitError: the data is missing, unreadable or invalid.
    """
    source = find_data(path)
    if source.is_dir() and not _is_competition_folder(source) and tfrecord.is_tfrecord_folder(source):
        (x_train, y_train), (x_test, y_test) = tfrecord.load_tfrecord(source)
        kind = "tfrecord"
    elif source.is_dir():
        (x_train, y_train), (x_test, y_test) = loaders.load_competition(source)
        kind = "competition"
    else:
        (x_train, y_train), (x_test, y_test) = loaders.load_npz(source)
        kind = "npz"
    dataset = Dataset(x_train, y_train, x_test, y_test, source=source, kind=kind)
    logger.info("data: %s (%s): %d training images, %d test images%s", source, kind, len(y_train), len(x_test),
                "" if y_test is not None else " without labels")
    return dataset


def source_sha256(source: Path) -> str:
    """Returns the sha256 of a data source (of its CSV or TFRecord files, in name order, for a folder)."""
    digest = hashlib.sha256()
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.suffix in (".csv", ".tfrecord"))
    for file in files:
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
