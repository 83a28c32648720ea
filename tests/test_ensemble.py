"""Tests of the recipe's ensembles: several seeds per fold, and test-time augmentation."""

import keras
import numpy as np
import pytest

from src import data, models, training
from src.config import RunConfig


@pytest.fixture(scope="module")
def small_dataset():
    (x_train, y_train), (x_test, y_test) = data.sample_arrays()
    return data.Dataset(x_train[:200], y_train[:200], x_test[:60], y_test[:60], source=None, kind="npz")


def member(fold_index, validation_indices, rng, test_rows):
    return training.FoldResult(
        fold_index=fold_index, seconds=2.0, validation_indices=validation_indices,
        validation_probabilities=rng.dirichlet(np.ones(10), size=len(validation_indices)).astype(np.float32),
        validation_accuracy=0.0, test_probabilities=rng.dirichlet(np.ones(10), size=test_rows).astype(np.float32),
        test_accuracy=0.0, history={"loss": [1.0]},
    )


def test_combine_members_averages_and_rescores(small_dataset):
    rng = np.random.default_rng(0)
    validation = np.arange(0, 200, 4)
    members = [member(1, validation, rng, 60) for _ in range(3)]
    fold = training.combine_members(members, small_dataset)
    expected_test = np.mean([m.test_probabilities for m in members], axis=0)
    expected_validation = np.mean([m.validation_probabilities for m in members], axis=0)
    np.testing.assert_allclose(fold.test_probabilities, expected_test)
    np.testing.assert_allclose(fold.validation_probabilities, expected_validation)
    assert fold.validation_accuracy == training.accuracy(expected_validation, small_dataset.y_train[validation])
    assert fold.test_accuracy == training.accuracy(expected_test, small_dataset.y_test)
    assert fold.seconds == 6.0 and fold.fold_index == 1
    assert training.combine_members(members[:1], small_dataset) is members[0]


def test_cross_validate_with_seeds_averages_each_folds_models(small_dataset, tmp_path):
    config = RunConfig(kernel="test", model="mlp", optimizer="adam", epochs=1, batch_size=32, folds=2, seeds=2,
                       quiet=True)
    result = training.cross_validate(small_dataset, config, workdir=tmp_path, data_format="channels_last")
    for fold in result.folds:
        saved = [training._load_fold(tmp_path / f"fold-{fold.fold_index}" / f"seed-{s}.npz") for s in range(2)]
        assert not np.array_equal(saved[0].test_probabilities, saved[1].test_probabilities)
        np.testing.assert_allclose(fold.test_probabilities,
                                   (saved[0].test_probabilities + saved[1].test_probabilities) / 2, rtol=1e-6)
    np.testing.assert_allclose(result.test_probabilities,
                               np.mean([fold.test_probabilities for fold in result.folds], axis=0))
    # The first model of each fold is the one a single-seed run trains.
    single = training.cross_validate(small_dataset, RunConfig(**{**config.__dict__, "seeds": 1}),
                                     data_format="channels_last")
    first = training._load_fold(tmp_path / "fold-0" / "seed-0.npz")
    np.testing.assert_array_equal(single.folds[0].test_probabilities, first.test_probabilities)


@pytest.fixture(scope="module")
def trained_model(small_dataset):
    keras.utils.set_random_seed(0)
    model = models.compile_model(models.build_model("mlp", "channels_last"), "adam", 1e-3)
    model.fit(data.to_model_layout(small_dataset.x_train, "channels_last"),
              keras.utils.to_categorical(small_dataset.y_train, 10), epochs=1, verbose=0)
    return model


def test_predict_probabilities_with_tta_is_the_mean_of_augmented_copies(trained_model, small_dataset):
    images = small_dataset.x_test
    plain = training.predict_probabilities(trained_model, images, "channels_last")
    np.testing.assert_allclose(plain, trained_model.predict(data.to_model_layout(images, "channels_last"), verbose=0),
                               rtol=1e-5, atol=1e-6)
    augmented = training.predict_probabilities(trained_model, images, "channels_last", tta=3, seed=7)
    again = training.predict_probabilities(trained_model, images, "channels_last", tta=3, seed=7)
    np.testing.assert_array_equal(augmented, again)
    assert not np.allclose(augmented, plain)
    augmentation = models.build_augmentation("channels_last", seed=7)
    scaled = data.to_model_layout(images, "channels_last")
    copies = [trained_model.predict(augmentation(scaled, training=True).numpy(), verbose=0) for _ in range(3)]
    np.testing.assert_allclose(augmented, np.mean(copies, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(augmented.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_strong_cnn_builds_in_both_layouts(data_format):
    model = models.build_model("strong_cnn", data_format)
    assert model.input_shape == (None, *data.input_shape(data_format)) and model.output_shape == (None, 10)


def test_parse_kernel_args_applies_a_budget_and_explicit_flags_win(monkeypatch):
    from src import cli, config

    budgets = {"cpu": dict(folds=3, epochs=15), "gpu": dict(folds=5, epochs=45, seeds=3)}
    monkeypatch.setattr(config, "gpu_present", lambda: False)
    auto = cli.parse_kernel_args([], "k", budgets=budgets, model="strong_cnn")
    assert (auto.budget, auto.folds, auto.epochs, auto.seeds, auto.model) == ("cpu", 3, 15, 1, "strong_cnn")
    gpu = cli.parse_kernel_args(["--budget", "gpu", "--epochs", "2"], "k", budgets=budgets)
    assert (gpu.budget, gpu.folds, gpu.epochs, gpu.seeds) == ("gpu", 5, 2, 3)
    monkeypatch.setattr(config, "gpu_present", lambda: True)
    assert cli.parse_kernel_args([], "k", budgets=budgets).budget == "gpu"


def test_recipe_kernel_end_to_end_writes_a_valid_submission(tmp_path, sample_npz):
    import json
    import subprocess
    import sys

    from src import paths, submission

    kernel = paths.KERNELS_DIR / "mnist-ensemble" / "kernel.py"
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(kernel), "--data", str(sample_npz), "--out", str(out), "--budget", "cpu", "--folds", "2",
         "--epochs", "1", "--seeds", "2", "--tta", "2", "--no-plots", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    [csv_path] = out.glob("mnist-ensemble-*.csv")
    assert submission.validate_submission(csv_path) == 100
    record = json.loads(csv_path.with_suffix(".json").read_text())
    assert record["config"]["model"] == "strong_cnn"
    assert (record["config"]["seeds"], record["config"]["tta"], record["config"]["budget"]) == (2, 2, "cpu")
    assert len(record["folds"]) == 2 and "model 2/2" in result.stdout


def test_exponential_schedule_decays_once_per_epoch():
    schedule = models.build_learning_rate("exponential", 1e-3, total_steps=30, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 9, 10, 19, 20, 29, 30)]
    decay = 0.1 ** (1 / 3)
    expected = [1e-3, 1e-3, decay * 1e-3, decay * 1e-3, decay**2 * 1e-3, decay**2 * 1e-3, 1e-4]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)


def test_exponential_schedule_is_the_recipe_decay_over_45_epochs():
    assert models.epoch_decay(45) == pytest.approx(0.95, abs=2e-4)
    assert models.epoch_decay(30) == pytest.approx(0.926, abs=1e-3)
