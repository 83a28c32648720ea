"""Tests of src.layout: the one decision of channels first or last, the input shape, and scaling to the model."""

import keras
import numpy as np
import pytest

from src import layout
from src.errors import KitError


@pytest.fixture
def keras_format():
    """Returns `set(fmt)`: puts Keras' image_data_format to `fmt` with the layout's cache cleared.

    Afterwards Keras' setting is channels_last again and the cache is cleared, as later tests expect.
    """
    def set_format(requested):
        keras.config.set_image_data_format(requested)
        layout.data_format.cache_clear()

    layout.data_format.cache_clear()
    yield set_format
    keras.config.set_image_data_format("channels_last")
    layout.data_format.cache_clear()


# --- data_format ----------------------------------------------------------------------------------


def test_data_format_falls_back_on_cpu(monkeypatch, caplog, keras_format):
    monkeypatch.setattr(layout, "_gpu_visible", lambda: False)
    keras_format("channels_first")
    with caplog.at_level("WARNING"):
        assert layout.data_format() == "channels_last"
        assert layout.data_format() == "channels_last"
    assert sum("channels_first" in record.message for record in caplog.records) == 1
    assert keras.config.image_data_format() == "channels_last"  # the decision is written back into Keras
    keras_format("channels_last")
    with caplog.at_level("WARNING"):
        assert layout.data_format() == "channels_last"
    assert sum("channels_first" in record.message for record in caplog.records) == 1


def test_data_format_keeps_channels_first_with_gpu(monkeypatch, keras_format):
    monkeypatch.setattr(layout, "_gpu_visible", lambda: True)
    keras_format("channels_first")
    assert layout.data_format() == "channels_first"
    assert keras.config.image_data_format() == "channels_first"
    assert layout.input_shape() == (1, 28, 28)


def test_data_format_rejects_an_unknown_setting(monkeypatch, keras_format):
    monkeypatch.setattr(layout, "_gpu_visible", lambda: True)
    keras_format("channels_last")
    monkeypatch.setattr(keras.config, "image_data_format", lambda: "nchw")
    with pytest.raises(KitError, match="Received: 'nchw'"):
        layout.data_format()


def test_data_format_reads_keras_setting_once(monkeypatch, keras_format):
    monkeypatch.setattr(layout, "_gpu_visible", lambda: True)
    keras_format("channels_last")
    assert layout.data_format() == "channels_last"
    keras.config.set_image_data_format("channels_first")
    assert layout.data_format() == "channels_last"  # decided once per process (until the cache is cleared)
    keras_format("channels_first")
    assert layout.data_format() == "channels_first"


# --- input_shape, layout_of, to_model_layout ------------------------------------------------------


def test_input_shape_follows_data_format(monkeypatch, keras_format):
    monkeypatch.setattr(layout, "_gpu_visible", lambda: False)
    keras_format("channels_last")
    assert layout.input_shape() == (28, 28, 1)
    assert layout.input_shape("channels_first") == (1, 28, 28)


@pytest.mark.parametrize(
    "shape, expected",
    [((28, 28, 1), "channels_last"), ((1, 28, 28), "channels_first"), ([1, 28, 28], "channels_first")],
)
def test_layout_of_names_the_layout_of_an_input_shape(shape, expected):
    assert layout.layout_of(shape) == expected
    assert layout.input_shape(layout.layout_of(shape)) == tuple(shape)


@pytest.mark.parametrize(
    "data_format, shape", [("channels_last", (3, 28, 28, 1)), ("channels_first", (3, 1, 28, 28))]
)
def test_to_model_layout_scales_and_shapes(data_format, shape):
    x = np.array([np.full((28, 28), value, np.uint8) for value in (0, 51, 255)])
    scaled = layout.to_model_layout(x, data_format)
    assert scaled.shape == shape and scaled.dtype == np.float32
    assert layout.input_shape(data_format) == shape[1:]
    np.testing.assert_allclose(scaled.reshape(3, -1).max(axis=1), [0.0, 0.2, 1.0], rtol=1e-6)
