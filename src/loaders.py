"""The two loaders of labelled MNIST files: an `mnist.npz` in the Keras layout, and the competition's CSVs.

Both return `uint8` images `(N, 28, 28)` and labels `(N,)`, checked by `src.validation`. Neither trusts the file:
the npz loader reads each array's header before allocating anything and never unpickles; the CSV loader checks
the header before pandas parses the rows.
"""

import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from src.errors import KitError
from src.mnist import NPZ_KEYS, PIXEL_COLUMNS, TEST_CSV, TRAIN_CSV
from src.validation import check_images, check_labels

# MNIST is 55 MB; a member claiming more than this is corrupt, not large.
MAX_ARRAY_BYTES = 1 << 30
DATA_HINT = "pass --data an mnist.npz file or a folder with train.csv and test.csv, or run `make data`"


def _read_npz_member(archive: zipfile.ZipFile, key: str, source: Path) -> np.ndarray:
    """Reads one array of an `.npz`, checking its header before allocating anything."""
    member = f"{key}.npy"
    info = archive.getinfo(member)
    with archive.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
            else:
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        except ValueError as error:
            raise KitError(f"{source}: {key} is not a valid .npy array ({error}); re-create the file.") from None
        if dtype.hasobject:
            raise KitError(
                f"{source}: {key} holds Python objects, which need pickle to load; the kit never "
                "unpickles data. Save plain numeric arrays (np.savez with uint8 arrays)."
            )
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        size = count * dtype.itemsize
        if size > MAX_ARRAY_BYTES or size > info.file_size:
            raise KitError(
                f"{source}: {key} claims shape {shape} ({size:,} bytes) but the archive holds "
                f"{info.file_size:,}; the file is corrupt. Re-create or re-download it."
            )
        buffer = stream.read(size)
    if len(buffer) != size:
        raise KitError(f"{source}: {key} is truncated; re-create or re-download the file.")
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order="F" if fortran_order else "C")


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
    arrays = {}
    try:
        with zipfile.ZipFile(source) as archive:
            names = set(archive.namelist())
            missing = [key for key in NPZ_KEYS if f"{key}.npy" not in names]
            if missing:
                present = sorted(name.removesuffix(".npy") for name in names)
                raise KitError(
                    f"{source} lacks {', '.join(missing)}; an mnist.npz needs {', '.join(NPZ_KEYS)}. "
                    f"Received keys: {present}."
                )
            for key in NPZ_KEYS:
                arrays[key] = _read_npz_member(archive, key, source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as error:
        raise KitError(f"{source} is corrupt ({error}); re-create or re-download it.") from None
    except Exception as error:  # zlib.error and friends from a damaged member
        if isinstance(error, KitError):
            raise
        raise KitError(f"{source} is corrupt ({type(error).__name__}: {error}); re-create or re-download it.") from None
    x_train = check_images(arrays["x_train"], "x_train", source)
    y_train = check_labels(arrays["y_train"], "y_train", source, len(x_train))
    x_test = check_images(arrays["x_test"], "x_test", source)
    y_test = check_labels(arrays["y_test"], "y_test", source, len(x_test))
    return (x_train, y_train), (x_test, y_test)


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
        # Explicit integer dtypes let pandas' C parser read 70,000 rows in seconds.
        frame = pd.read_csv(path, dtype=np.int32, engine="c", na_filter=True)
    except (ValueError, pd.errors.ParserError, OverflowError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise KitError(
            f"{path} has a value that is not a whole number, or a short or long row ({reason}); "
            "every cell must be an integer."
        ) from None
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
