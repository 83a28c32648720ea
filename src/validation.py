"""Checks of loaded arrays: images are 28x28 pixels 0-255, labels are digits 0-9, one per image.

Every loader passes what it read through these, so a bad file stops with one line naming what is wrong.
"""

from pathlib import Path

import numpy as np

from src.errors import KitError
from src.mnist import IMAGE_SIZE, NUM_CLASSES, NUM_PIXELS


def check_images(x: np.ndarray, name: str, source: Path) -> np.ndarray:
    """Returns images as `uint8` `(N, 28, 28)`.

    Args:
        x: images `(N, 28, 28)` or flattened `(N, 784)`, of any integer or whole-valued float dtype.
        name: the array's name in messages, e.g. `"x_train"`.
        source: the file it came from, for messages.

    Raises:
        KitError: the shape is wrong, it is empty, or a pixel is not a whole number 0-255.
    """
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


def check_labels(y: np.ndarray, name: str, source: Path, num_images: int) -> np.ndarray:
    """Returns labels as `uint8` `(N,)`.

    Args:
        y: one integer label per image.
        name: the array's name in messages, e.g. `"y_train"`.
        source: the file it came from, for messages.
        num_images: how many images the labels go with.

    Raises:
        KitError: the shape or dtype is wrong, the count differs from the images', or a label is outside 0-9.
    """
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
