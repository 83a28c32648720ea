"""Tests of src.optimizers: optimizers by name, the learning-rate schedules, precision, compiling."""

import keras
import numpy as np
import pytest

from src import optimizers
from src.config import RunConfig
from src.errors import KitError
from src.models import classic


@pytest.fixture(autouse=True)
def float32_after():
    """Keras keeps the dtype policy globally: leave it float32 for the tests that follow."""
    yield
    keras.config.set_dtype_policy("float32")


def test_build_optimizer_defaults_adadelta_to_one():
    run = RunConfig(kernel="k")
    optimizer = optimizers.build_optimizer(run.optimizer, run.effective_learning_rate)
    assert isinstance(optimizer, keras.optimizers.Adadelta)
    assert float(optimizer.learning_rate) == pytest.approx(1.0)
    assert optimizer.rho == pytest.approx(0.95)
    adam = optimizers.build_optimizer("adam", RunConfig(kernel="k", optimizer="adam").effective_learning_rate)
    assert isinstance(adam, keras.optimizers.Adam) and float(adam.learning_rate) == pytest.approx(1e-3)
    with pytest.raises(KitError, match="Received: optimizer='sgdx'"):
        optimizers.build_optimizer("sgdx", 0.1)


def test_build_learning_rate_constant_is_the_rate():
    assert optimizers.build_learning_rate("constant", 0.5, total_steps=10) == 0.5


def test_build_learning_rate_warmup_cosine_ramps_up_then_decays_to_zero():
    schedule = optimizers.build_learning_rate("warmup_cosine", 0.003, total_steps=100)
    rates = np.array([float(schedule(step)) for step in range(101)])
    warmup = round(optimizers.WARMUP_FRACTION * 100)
    assert rates[0] == 0.0
    assert np.all(np.diff(rates[: warmup + 1]) > 0)
    assert rates[warmup] == pytest.approx(0.003)
    assert rates.max() == pytest.approx(0.003)
    assert np.all(np.diff(rates[warmup:]) < 0)
    assert rates[100] == pytest.approx(0.0, abs=1e-9)
    # Halfway through the decay the cosine is at half the peak.
    assert rates[warmup + (100 - warmup) // 2] == pytest.approx(0.0015, rel=1e-3)


def test_build_learning_rate_warmup_cosine_survives_one_step():
    schedule = optimizers.build_learning_rate("warmup_cosine", 0.01, total_steps=1)
    assert np.isfinite(float(schedule(0))) and np.isfinite(float(schedule(1)))


def test_build_learning_rate_rejects_unknown_schedule_and_no_steps():
    with pytest.raises(KitError, match="choose one of constant, warmup_cosine, .*Received: schedule='linear'"):
        optimizers.build_learning_rate("linear", 0.1, total_steps=10)
    with pytest.raises(KitError, match="Received: total_steps=0"):
        optimizers.build_learning_rate("warmup_cosine", 0.1, total_steps=0)


def test_exponential_schedule_decays_once_per_epoch():
    schedule = optimizers.build_learning_rate("exponential", 1e-3, total_steps=30, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 9, 10, 19, 20, 29, 30)]
    decay = 0.1 ** (1 / 3)
    expected = [1e-3, 1e-3, decay * 1e-3, decay * 1e-3, decay**2 * 1e-3, decay**2 * 1e-3, 1e-4]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)


def test_exponential_schedule_is_the_recipe_decay_over_45_epochs():
    assert optimizers.epoch_decay(45) == pytest.approx(0.95, abs=2e-4)
    assert optimizers.epoch_decay(30) == pytest.approx(0.926, abs=1e-3)


def test_compile_model_schedule_moves_the_rate_with_each_step():
    keras.utils.set_random_seed(0)
    # 40 steps warm up over the first 4, so the first three steps see a rising rate.
    model = optimizers.compile_model(classic.build_fast_cnn(), "adam", 0.003, schedule="warmup_cosine",
                                     total_steps=40)
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    y = keras.utils.to_categorical(np.arange(8) % 10, 10)
    rates = []
    for _ in range(3):
        model.train_on_batch(x, y)
        rates.append(float(model.optimizer.learning_rate))
    assert rates == pytest.approx([0.00075, 0.0015, 0.00225])


def test_set_precision_builds_bfloat16_layers_with_float32_weights_and_output():
    optimizers.set_precision("mixed_bfloat16")
    model = classic.build_fast_cnn()
    assert model.layers[0].compute_dtype == "bfloat16" and model.layers[0].kernel.dtype == "float32"
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    probabilities = keras.ops.convert_to_numpy(model(x))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    optimizers.set_precision("float32")
    assert classic.build_fast_cnn().layers[0].compute_dtype == "float32"
    with pytest.raises(KitError, match="Received: precision='auto'"):
        optimizers.set_precision("auto")
