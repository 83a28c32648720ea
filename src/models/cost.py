"""What a model costs: the multiply-adds of one image's forward pass."""

import math

import keras
from keras import layers


def multiply_adds(model: keras.Model) -> int:
    """Counts the multiply-adds of one image's forward pass through a model's Conv2D and Dense layers.

    Training costs about three times this (forward, and the two products of the backward pass); pooling,
    activations and dropout add comparatively little arithmetic.

    Args:
        model: a built model.

    Returns:
        Multiply-adds per image.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kernel_height, kernel_width, in_channels, filters = layer.kernel.shape
            output_shape = list(layer.output.shape[1:])
            del output_shape[-1 if layer.data_format == "channels_last" else 0]
            total += math.prod(output_shape) * filters * kernel_height * kernel_width * in_channels
        elif isinstance(layer, layers.Dense):
            inputs, units = layer.kernel.shape
            total += inputs * units
    return int(total)
