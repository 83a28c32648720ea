"""One random affine resampling per image: rotation, zoom and shift composed into one matrix, one interpolation."""

import math

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="digit_kit")
class RandomAffine(layers.Layer):
    """Rotates, zooms (each axis on its own) and shifts each image in training, with one bilinear interpolation.

    Three `Random*` layers in a row interpolate three times: each pass blurs the strokes again and costs a pass
    over the batch. This layer draws the three transformations per image, multiplies them into one matrix and
    resamples once (`keras.ops.image.affine_transform`). Outside training it passes images through unchanged,
    as Keras' preprocessing layers do; call it with `training=True` for test-time augmentation.

    Args:
        rotation: the largest rotation, in degrees either way.
        zoom: the largest relative zoom, in or out, drawn for height and width independently.
        shift: the largest shift, as a fraction of the height (or width), either way.
        data_format: `"channels_last"` or `"channels_first"`.
        seed: seeds the draws; None draws from Keras' global seed.
    """

    def __init__(self, rotation=10.0, zoom=0.1, shift=0.1, data_format="channels_last", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift = float(rotation), float(zoom), float(shift)
        self.data_format, self.seed = data_format, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def transforms(self, batch_size):
        """Draws one output-to-input matrix per image, as `affine_transform`'s `(batch_size, 8)` rows."""
        def uniform(limit):
            return keras.random.uniform((batch_size,), -limit, limit, seed=self.seed_generator)

        angle = uniform(math.radians(self.rotation))
        # The matrix maps output pixels to input pixels, so a zoom by z reads the input at 1/z.
        scale_x = 1.0 / (1.0 + uniform(self.zoom))
        scale_y = 1.0 / (1.0 + uniform(self.zoom))
        cos, sin = ops.cos(angle), ops.sin(angle)
        a0, a1 = cos * scale_x, -sin * scale_y
        b0, b1 = sin * scale_x, cos * scale_y
        height, width = self.image_size
        center_x, center_y = (width - 1) / 2, (height - 1) / 2
        shift_x, shift_y = uniform(self.shift * width), uniform(self.shift * height)
        # About the image's centre: input = A (output - centre) + centre + shift.
        a2 = center_x + shift_x - a0 * center_x - a1 * center_y
        b2 = center_y + shift_y - b0 * center_x - b1 * center_y
        zeros = ops.zeros_like(angle)
        return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)

    def build(self, input_shape):
        self.image_size = tuple(input_shape[1:3] if self.data_format == "channels_last" else input_shape[2:4])

    def call(self, inputs, training=None):
        if not training:
            return inputs
        # In float32 whatever the policy: the resampling kernel needs no bfloat16, and costs little.
        resampled = ops.image.affine_transform(
            ops.cast(inputs, "float32"), self.transforms(ops.shape(inputs)[0]), interpolation="bilinear",
            fill_mode="constant", fill_value=0.0, data_format=self.data_format,
        )
        return ops.cast(resampled, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom, "shift": self.shift,
                "data_format": self.data_format, "seed": self.seed}
