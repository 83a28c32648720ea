"""Tests of k-fold cross-validation and the fold ensemble in src.training."""

import numpy as np
import pytest

from conftest import make_arrays
from src import data, training
from src.config import RunConfig
from src.errors import KitError


def tiny_dataset(test_labels=True):
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class=6, test_rows=12)
    return data.Dataset(x_train, y_train, x_test, y_test if test_labels else None, source=None, kind="npz")


def test_fold_splits_cover_every_row_once_stratified():
    labels = np.repeat(np.arange(10), 9)
    splits = training.fold_splits(labels, 3, seed=0)
    held_out = np.concatenate([validation for _, validation in splits])
    assert sorted(held_out.tolist()) == list(range(90))
    for train, validation in splits:
        assert not set(train) & set(validation)
        assert np.bincount(labels[validation]).tolist() == [3] * 10
    assert [v.tolist() for _, v in training.fold_splits(labels, 3, seed=0)] == [v.tolist() for _, v in splits]
    assert [v.tolist() for _, v in training.fold_splits(labels, 3, seed=1)] != [v.tolist() for _, v in splits]


def test_fold_splits_single_fold_trains_on_everything():
    [(train, validation)] = training.fold_splits(np.arange(10), 1, seed=0)
    assert train.tolist() == list(range(10)) and validation is None


def test_fold_splits_rejects_more_folds_than_rarest_digit():
    with pytest.raises(KitError, match="Received: folds=4"):
        training.fold_splits(np.repeat(np.arange(10), 3), 4, seed=0)


def fake_fold(fold_index, validation_indices, rng):
    probabilities = rng.dirichlet(np.ones(10), size=len(validation_indices)).astype(np.float32)
    return training.FoldResult(
        fold_index=fold_index,
        seconds=1.0,
        validation_indices=validation_indices,
        validation_probabilities=probabilities,
        validation_accuracy=0.5,
        test_probabilities=rng.dirichlet(np.ones(10), size=12).astype(np.float32),
        test_accuracy=None,
    )


def test_ensemble_averages_fold_probabilities_and_places_oof_rows():
    dataset = tiny_dataset()
    rng = np.random.default_rng(0)
    splits = training.fold_splits(dataset.y_train, 3, seed=0)
    folds = [fake_fold(index, validation, rng) for index, (_, validation) in enumerate(splits)]
    result = training.ensemble(folds, dataset)
    np.testing.assert_allclose(result.test_probabilities, np.mean([f.test_probabilities for f in folds], axis=0))
    for fold in folds:
        np.testing.assert_array_equal(result.oof_probabilities[fold.validation_indices], fold.validation_probabilities)
    expected_oof = np.mean(result.oof_probabilities.argmax(axis=1) == dataset.y_train)
    assert result.oof_accuracy == pytest.approx(expected_oof)
    assert result.test_accuracy == pytest.approx(np.mean(result.test_labels == dataset.y_test))


@pytest.fixture(scope="module")
def sample_dataset():
    (x_train, y_train), (x_test, y_test) = data.sample_arrays()
    return data.Dataset(x_train[:300], y_train[:300], x_test[:100], y_test[:100], source=None, kind="npz")


def run_folds(dataset, workdir=None, **overrides):
    settings = dict(kernel="test", epochs=1, batch_size=32, folds=3, quiet=True, optimizer="adam", model="mlp")
    settings.update(overrides)
    return training.cross_validate(dataset, RunConfig(**settings), workdir=workdir, data_format="channels_last")


def test_cross_validate_reports_folds_oof_and_ensemble(sample_dataset):
    result = run_folds(sample_dataset, epochs=2)
    assert [fold.fold_index for fold in result.folds] == [0, 1, 2]
    assert result.oof_probabilities.shape == (300, 10)
    assert np.all(result.oof_probabilities.sum(axis=1) > 0.99)
    assert result.test_probabilities.shape == (100, 10)
    assert result.cv_mean == pytest.approx(np.mean([f.validation_accuracy for f in result.folds]))
    # Above chance (0.1) after two short epochs on real digits: the folds really learn.
    assert result.oof_accuracy > 0.5 and result.test_accuracy > 0.5
    assert all(len(fold.history["val_accuracy"]) == 2 for fold in result.folds)


def test_cross_validate_is_deterministic(sample_dataset):
    first = run_folds(sample_dataset, model="seed_cnn", optimizer="adadelta", folds=2)
    second = run_folds(sample_dataset, model="seed_cnn", optimizer="adadelta", folds=2)
    np.testing.assert_array_equal(first.test_probabilities, second.test_probabilities)
    assert [f.validation_accuracy for f in first.folds] == [f.validation_accuracy for f in second.folds]


def test_cross_validate_reuses_saved_folds(sample_dataset, tmp_path):
    first = run_folds(sample_dataset, workdir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("fold-*.npz")) == ["fold-0.npz", "fold-1.npz", "fold-2.npz"]
    # A different seed would train different models: reusing the saved folds gives the first run's numbers.
    again = run_folds(sample_dataset, workdir=tmp_path)
    np.testing.assert_array_equal(first.oof_probabilities, again.oof_probabilities)
    assert [f.seconds for f in first.folds] == [f.seconds for f in again.folds]


def test_cross_validate_single_fold_validates_on_labelled_test(sample_dataset):
    result = run_folds(sample_dataset, folds=1)
    [fold] = result.folds
    assert result.oof_probabilities is None and result.oof_accuracy is None
    assert fold.validation_accuracy == fold.test_accuracy == result.test_accuracy
    assert "val_accuracy" in fold.history
