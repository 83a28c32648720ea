"""Tests of benchmarks/label_smoothing.py: the kernel's loss replaced by the smoothed one, and its flag."""

import importlib.util
import sys

import keras
import numpy as np
import pytest

from src import paths

sys.path.insert(0, str(paths.REPO_ROOT / "benchmarks"))  # it imports bench, its neighbour
spec = importlib.util.spec_from_file_location("label_smoothing",
                                              paths.REPO_ROOT / "benchmarks" / "label_smoothing.py")
label_smoothing = importlib.util.module_from_spec(spec)
spec.loader.exec_module(label_smoothing)


def test_smooth_compiled_loss_compiles_the_kernels_loss_smoothed(monkeypatch):
    monkeypatch.setattr(keras.Model, "compile", keras.Model.compile)  # put back after the test
    label_smoothing.smooth_compiled_loss(0.5)
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(10, activation="softmax")])

    model.compile(optimizer="adam", loss="categorical_crossentropy")

    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy) and model.loss.label_smoothing == 0.5
    # Against a one-hot target, the loss is the cross-entropy with 0.55 on the digit and 0.05 on each other.
    probabilities = np.full((1, 10), 0.01, dtype="float32")
    probabilities[0, 3] = 0.91
    target = np.eye(10, dtype="float32")[[3]]
    expected = -(0.55 * np.log(0.91) + 9 * 0.05 * np.log(0.01))
    assert float(model.loss(target, probabilities)) == pytest.approx(expected, rel=1e-4)
    model.compile(optimizer="adam", loss="mse")
    assert model.loss == "mse"


def test_parse_smoothing_keeps_the_kernels_flags_and_refuses_a_share_out_of_range():
    assert label_smoothing.parse_smoothing(["--smoothing", "0.1", "--budget", "quick"]) == (0.1, ["--budget", "quick"])
    with pytest.raises(SystemExit, match="Received: smoothing=1.0"):
        label_smoothing.parse_smoothing(["--smoothing", "1"])
