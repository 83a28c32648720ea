"""TFRecord shards of a data set: `python -m src data --to-tfrecord` writes them, `--data <folder>` reads them.

Each split is written as shards named `<split>-<i>-of-<n>.tfrecord` (i and n five digits, i from 0), as
TensorFlow's own datasets name theirs. Every record is a `tf.train.Example` with these features:

  image   bytes    the 28x28 image as 784 raw uint8 bytes, row by row
  label   int64    0-9; -1 in a split without labels (the competition's test.csv)
  split   bytes    b"train" or b"test", as the file name says
  index   int64    the image's row in its split, so that shards read in parallel reassemble in order
  size    int64    the number of images in the split, so that a shard cut at a record boundary (which
                   TFRecord readers take for a clean end) is noticed

Reading them back gives exactly the arrays that were written.
"""

import logging
import os
import re
from pathlib import Path

import numpy as np

from src import files
from src.errors import KitError
from src.mnist import IMAGE_SIZE
from src.validation import check_labels

logger = logging.getLogger(__name__)

TFRECORD_SPLITS = ("train", "test")
TFRECORD_NAME = re.compile(r"^(train|test)-(\d{5})-of-(\d{5})\.tfrecord$")
UNLABELLED = -1
DEFAULT_SHARDS = 4


def is_tfrecord_folder(folder: Path) -> bool:
    """Returns whether `folder` holds training shards of `write_tfrecords`."""
    return any(TFRECORD_NAME.match(path.name) for path in Path(folder).glob("train-*.tfrecord"))


def _tfrecord_example(image: np.ndarray, label: int, split: str, index: int, size: int) -> bytes:
    import tensorflow as tf  # here, not at the top: finding data must not load TensorFlow

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


def write_tfrecords(dataset, out_dir: Path, num_shards: int = DEFAULT_SHARDS) -> list[Path]:
    """Writes a data set's splits as TFRecord shards (schema above), each one atomically.

    Args:
        dataset: the loaded `data.Dataset`.
        out_dir: the folder to fill; it must not hold shards already.
        num_shards: shards per split (fewer when a split has fewer images), contiguous runs of rows.

    Returns:
        The shard paths written, train then test.

    Raises:
        KitError: `num_shards` is out of range, the folder holds shards already, or cannot be written.
    """
    import tensorflow as tf  # here, not at the top: finding data must not load TensorFlow

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


def read_tfrecords(shard_paths: list[Path]):
    """Builds a `tf.data` pipeline that parses TFRecord shards (schema above), reading them in parallel.

    Returns:
        A `tf.data.Dataset` of dicts: `image` `uint8 (28, 28)`, `label` `int64 ()`, `split` `string ()`,
        `index` `int64 ()`, `size` `int64 ()`. Records of a wrong size fail when iterated
        (`tf.errors.InvalidArgumentError`).
    """
    import tensorflow as tf  # here, not at the top: finding data must not load TensorFlow

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

    records = tf.data.TFRecordDataset([str(path) for path in shard_paths], num_parallel_reads=tf.data.AUTOTUNE)
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _load_tfrecord_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    import tensorflow as tf  # here, not at the top: finding data must not load TensorFlow

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
    y_train = check_labels(y_train, "y_train", source, len(x_train))
    if y_test is not None:
        y_test = check_labels(y_test, "y_test", source, len(x_test))
    return (x_train, y_train), (x_test, y_test)
