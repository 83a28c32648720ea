"""The two loaders of labelled MNIST files: an `mnist.npz` in the Keras layout, and the competition's CSVs.

Both return `uint8` images `(N, 28, 28)` and labels `(N,)`, checked by `src.validation`. Neither trusts the file:
the npz loader reads each array's header before allocating anything and never unpickles; the CSV loader checks
the header before pandas parses the rows.
"""

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from src import npz
from src.errors import KitError
from src.mnist import NPZ_KEYS, PIXEL_COLUMNS, TEST_CSV, TRAIN_CSV
from src.validation import check_images, check_labels

DATA_HINT = "pass --data an mnist.npz file or a folder with train.csv and test.csv, or run `make data`"


def load_npz(path: str | os.PathLike) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads an `mnist.npz` in the Keras layout, without ever unpickling.

    Args:
        path: an `.npz` holding `x_train`, `y_train`, `x_test`, `y_test`, as
            `keras.datasets.mnist.load_data()` returns them and Kaggle's `mnist.npz` datasets hold them.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: `uint8` images `(N, 28, 28)` and labels `(N,)`.

    Raises:
        KitError: the file is missing, not an `.npz`, corrupt, or holds invalid arrays.
    """
    source = Path(path)
    if not source.is_file():
        raise KitError(f"Data not found: {source} is not a file; {DATA_HINT}.")
    if not zipfile.is_zipfile(source):
        raise KitError(
            f"{source} is not an .npz file (not a zip archive); give an mnist.npz written by "
            "np.savez or keras, or a competition folder."
        )
    arrays = npz.read_npz(source, NPZ_KEYS, what="an mnist.npz", fix="Re-create or re-download it.")
    x_train = check_images(arrays["x_train"], "x_train", source)
    y_train = check_labels(arrays["y_train"], "y_train", source, len(x_train))
    x_test = check_images(arrays["x_test"], "x_test", source)
    y_test = check_labels(arrays["y_test"], "y_test", source, len(x_test))
    return (x_train, y_train), (x_test, y_test)


def _refuse_ragged_row(path: Path, columns: int) -> None:
    """Raises the kit's error naming the first row whose number of fields differs from the header's, if any."""
    with open(path, encoding="utf-8", errors="replace", newline="") as stream:
        stream.readline()
        row = 0
        for line_number, line in enumerate(stream, start=2):
            if not line.strip():
                continue  # pandas skips blank lines too
            row += 1
            fields = line.count(",") + 1
            if fields != columns:
                raise KitError(f"{path}: row {row} (line {line_number}) has {fields} fields but the header has "
                               f"{columns}; every row needs exactly {columns} comma-separated integers. "
                               f"Re-download the file.")


def _read_csv(path: Path, expected_columns: tuple[str, ...]) -> np.ndarray:
    """Reads an all-integer CSV with the given header into an `int32` array `(rows, columns)`."""
    if not path.is_file():
        raise KitError(f"{path} is missing; the competition folder needs train.csv and test.csv.")
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            header = stream.readline().strip().split(",")
    except (OSError, UnicodeDecodeError) as error:
        raise KitError(f"{path} cannot be read as a CSV ({error}); re-download it.") from None
    if tuple(header) != expected_columns:
        wrong = next(
            (index for index, (got, want) in enumerate(zip(header, expected_columns)) if got != want),
            min(len(header), len(expected_columns)),
        )
        got = header[wrong] if wrong < len(header) else "<end of header>"
        want = expected_columns[wrong] if wrong < len(expected_columns) else "<end of header>"
        raise KitError(
            f"{path} has a wrong header: column {wrong + 1} is {got!r}, expected {want!r} "
            f"({expected_columns[0]},{expected_columns[1]},... with {len(expected_columns)} columns). "
            f"Received {len(header)} columns."
        )
    try:
        with warnings.catch_warnings():
            # A row with a field more than the header: pandas would take the first column as an index and shift
            # the rest (labels would become pixel0). index_col=False keeps the columns, and its warning about the
            # extra field becomes an error here.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # Explicit integer dtypes let pandas' C parser read 70,000 rows in seconds.
            frame = pd.read_csv(path, dtype=np.int32, engine="c", na_filter=True, index_col=False)
    except (ValueError, OverflowError, pd.errors.ParserError, pd.errors.ParserWarning) as error:
        _refuse_ragged_row(path, len(expected_columns))
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise KitError(
            f"{path} has a value that is not a whole number ({reason}); every cell must be an integer."
        ) from None
    if frame.shape[1] != len(expected_columns):
        _refuse_ragged_row(path, len(expected_columns))
        raise KitError(f"{path} has {frame.shape[1]} columns but its header {len(expected_columns)}; re-download it.")
    if len(frame) == 0:
        raise KitError(f"{path} has a header but no rows; it needs at least one image.")
    return frame.to_numpy()


def load_competition(folder: str | os.PathLike) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, None]]:
    """Loads the Digit Recognizer competition's CSVs.

    Args:
        folder: a folder with `train.csv` (`label,pixel0..pixel783`) and `test.csv`
            (`pixel0..pixel783`), as `kaggle competitions download -c digit-recognizer` unzips.

    Returns:
        `(x_train, y_train), (x_test, None)`: `uint8` images `(N, 28, 28)` and labels `(N,)`; the
        competition's test labels are not published.

    Raises:
        KitError: a file is missing or invalid.
    """
    source = Path(folder)
    if not source.is_dir():
        raise KitError(f"Data not found: {source} is not a folder; {DATA_HINT}.")
    train = _read_csv(source / TRAIN_CSV, ("label", *PIXEL_COLUMNS))
    test = _read_csv(source / TEST_CSV, PIXEL_COLUMNS)
    x_train = check_images(train[:, 1:], "x_train", source / TRAIN_CSV)
    y_train = check_labels(train[:, 0], "y_train", source / TRAIN_CSV, len(x_train))
    x_test = check_images(test, "x_test", source / TEST_CSV)
    return (x_train, y_train), (x_test, None)
