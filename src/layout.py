"""Channels first or last: the one place the kit decides the image layout, and the input shape that follows.

TensorFlow runs convolutions and pooling only channels-last (NHWC) on a CPU, so a `channels_first` setting
(`"image_data_format"` in `~/.keras/keras.json`) trains channels-last unless a GPU is visible, with one warning.
The decision is written back into Keras' own setting, so that layers built without a `data_format` follow it.
"""

import functools
import logging

import keras
import numpy as np
import tensorflow as tf

from src.errors import KitError
from src.mnist import IMAGE_SIZE

logger = logging.getLogger(__name__)

DATA_FORMATS = ("channels_last", "channels_first")
# An image input shape: (28, 28, 1) or (1, 28, 28).
Shape = tuple[int, int, int]


def _gpu_visible() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


@functools.cache
def data_format() -> str:
    """Decides the layout every model of this process is built and fed in, once.

    Returns:
        `"channels_last"` or `"channels_first"`: Keras' `image_data_format()`, except `channels_first` without a
        visible GPU, which trains channels-last (with one warning). Keras' setting is set to the answer.

    Raises:
        KitError: Keras' setting is neither layout.
    """
    requested = keras.config.image_data_format()
    if requested not in DATA_FORMATS:
        raise KitError(f"Unknown image data format; use channels_last or channels_first. Received: {requested!r}.")
    decided = requested
    if requested == "channels_first" and not _gpu_visible():
        logger.warning(
            "warning: image_data_format is channels_first, but TensorFlow runs convolutions only in channels_last "
            "(NHWC) on a CPU; training in channels_last. Set \"image_data_format\": \"channels_last\" in "
            "~/.keras/keras.json to silence this."
        )
        decided = "channels_last"
    keras.config.set_image_data_format(decided)
    return decided


def input_shape(layout: str | None = None) -> Shape:
    """Returns a model's input shape: `(28, 28, 1)` channels-last, `(1, 28, 28)` channels-first.

    Args:
        layout: `"channels_last"` or `"channels_first"`; None for `data_format()`, this process's decision.
    """
    layout = layout or data_format()
    if layout == "channels_first":
        return (1, IMAGE_SIZE, IMAGE_SIZE)
    return (IMAGE_SIZE, IMAGE_SIZE, 1)


def layout_of(shape: tuple[int, ...]) -> str:
    """Returns the layout of an image input shape: `"channels_first"` for `(1, 28, 28)`, else `"channels_last"`."""
    return "channels_first" if tuple(shape) == input_shape("channels_first") else "channels_last"


def to_model_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """Scales `uint8` images to a model's input.

    Args:
        x: `uint8` images `(N, 28, 28)`.
        layout: `"channels_last"` or `"channels_first"`.

    Returns:
        `float32` in `[0, 1]`, shape `(N, 28, 28, 1)` or `(N, 1, 28, 28)`.
    """
    return (x.astype(np.float32) / 255.0).reshape((len(x), *input_shape(layout)))
