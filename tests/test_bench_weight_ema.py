"""Tests of benchmarks/weight_ema.py: the kernel's optimizer given a weight EMA, and its flags."""

import importlib.util
import sys

import keras
import numpy as np
import pytest

from src import paths

sys.path.insert(0, str(paths.REPO_ROOT / "benchmarks"))  # it imports bench, its neighbour
spec = importlib.util.spec_from_file_location("weight_ema", paths.REPO_ROOT / "benchmarks" / "weight_ema.py")
weight_ema = importlib.util.module_from_spec(spec)
spec.loader.exec_module(weight_ema)


class RecordWeights(keras.callbacks.Callback):
    """Keeps the live kernel of the model's one layer after every step."""

    def __init__(self):
        super().__init__()
        self.kernels = []

    def on_train_batch_end(self, batch, logs=None):
        self.kernels.append(keras.ops.convert_to_numpy(self.model.layers[0].kernel))


def test_average_compiled_weights_leaves_the_fitted_model_with_the_average_of_its_steps(monkeypatch):
    monkeypatch.setattr(keras.Model, "compile", keras.Model.compile)  # put back after the test
    weight_ema.average_compiled_weights(0.5)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.5
    x, y = np.random.default_rng(0).normal(size=(16, 3)), np.ones((16, 2))
    recorder = RecordWeights()

    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, callbacks=[recorder], verbose=0)

    # The average starts at the first step's weights, then moves half way to each next step's.
    average = recorder.kernels[0]
    for kernel in recorder.kernels[1:]:
        average = 0.5 * average + 0.5 * kernel
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[0].kernel), average, rtol=1e-5)
    assert not np.allclose(average, recorder.kernels[-1])  # the live weights of the last step are not what is kept


def test_average_compiled_weights_of_zero_keeps_the_kernels_optimizer(monkeypatch):
    monkeypatch.setattr(keras.Model, "compile", keras.Model.compile)
    weight_ema.average_compiled_weights(0.0)
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(2)])

    model.compile(optimizer="adam", loss="mse")

    assert isinstance(model.optimizer, keras.optimizers.Adam) and not model.optimizer.use_ema


def test_parse_ema_keeps_the_kernels_flags_and_refuses_bad_values():
    assert weight_ema.parse_ema(["--momentum", "0.99", "--folds", "5"]) == (0.99, "mnist-fast", ["--folds", "5"])
    assert weight_ema.parse_ema(["--momentum", "0", "--kernel", "mnist-ensemble"])[1] == "mnist-ensemble"
    with pytest.raises(SystemExit, match="Received: momentum=1.0"):
        weight_ema.parse_ema(["--momentum", "1"])
    with pytest.raises(SystemExit, match="Received: kernel=mnist-cnn"):
        weight_ema.parse_ema(["--momentum", "0.9", "--kernel", "mnist-cnn"])
