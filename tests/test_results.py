"""Tests of src.results: accuracy, a fold's models averaged, the fold ensemble, and a finished fold's file."""

import json

import numpy as np
import pytest

from conftest import make_arrays, npz_with_lying_header
from src import data, folds, results
from src.errors import KitError


def tiny_dataset(test_labels=True):
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class=6, test_rows=12)
    return data.Dataset(x_train, y_train, x_test, y_test if test_labels else None, source=None, kind="npz")


def fake_fold(fold_index, validation_indices, rng, test_rows=12, seconds=1.0):
    return results.FoldResult(
        fold_index=fold_index, seconds=seconds, validation_indices=validation_indices,
        validation_probabilities=rng.dirichlet(np.ones(10), size=len(validation_indices)).astype(np.float32),
        validation_accuracy=0.5, test_probabilities=rng.dirichlet(np.ones(10), size=test_rows).astype(np.float32),
        test_accuracy=None, history={"loss": [1.0]},
    )


def test_accuracy_is_the_share_of_argmax_hits():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert results.accuracy(probabilities, np.array([0, 1, 1, 0])) == 0.5


def test_ensemble_averages_fold_probabilities_and_places_oof_rows():
    dataset = tiny_dataset()
    rng = np.random.default_rng(0)
    splits = folds.fold_splits(dataset.y_train, 3, seed=0)
    fold_results = [fake_fold(index, validation, rng) for index, (_, validation) in enumerate(splits)]
    result = results.ensemble(fold_results, dataset)
    np.testing.assert_allclose(result.test_probabilities,
                               np.mean([f.test_probabilities for f in fold_results], axis=0))
    for fold in fold_results:
        np.testing.assert_array_equal(result.oof_probabilities[fold.validation_indices], fold.validation_probabilities)
    expected_oof = np.mean(result.oof_probabilities.argmax(axis=1) == dataset.y_train)
    assert result.oof_accuracy == pytest.approx(expected_oof)
    assert result.test_accuracy == pytest.approx(np.mean(result.test_labels == dataset.y_test))
    assert result.cv_mean == 0.5 and result.cv_std == 0.0


def test_ensemble_of_one_fold_of_k_has_no_out_of_fold_predictions():
    dataset = tiny_dataset(test_labels=False)
    splits = folds.fold_splits(dataset.y_train, 3, seed=0)
    result = results.ensemble([fake_fold(1, splits[1][1], np.random.default_rng(1))], dataset)
    assert result.oof_probabilities is None and result.oof_accuracy is None and result.test_accuracy is None


def test_combine_members_averages_and_rescores():
    dataset = tiny_dataset()
    rng = np.random.default_rng(0)
    validation = np.arange(0, 60, 4)
    members = [fake_fold(1, validation, rng, seconds=2.0) for _ in range(3)]
    fold = results.combine_members(members, dataset)
    expected_test = np.mean([m.test_probabilities for m in members], axis=0)
    expected_validation = np.mean([m.validation_probabilities for m in members], axis=0)
    np.testing.assert_allclose(fold.test_probabilities, expected_test)
    np.testing.assert_allclose(fold.validation_probabilities, expected_validation)
    assert fold.validation_accuracy == results.accuracy(expected_validation, dataset.y_train[validation])
    assert fold.test_accuracy == results.accuracy(expected_test, dataset.y_test)
    assert fold.seconds == 6.0 and fold.fold_index == 1
    assert results.combine_members(members[:1], dataset) is members[0]


def test_save_fold_and_load_fold_round_trip(tmp_path):
    fold = fake_fold(2, np.array([3, 5, 7]), np.random.default_rng(4))
    results.save_fold(tmp_path / "fold-2.npz", fold)
    loaded = results.load_fold(tmp_path / "fold-2.npz")
    summary = (loaded.fold_index, loaded.seconds, loaded.validation_accuracy, loaded.history)
    assert summary == (2, 1.0, 0.5, {"loss": [1.0]})
    np.testing.assert_array_equal(loaded.validation_indices, fold.validation_indices)
    np.testing.assert_array_equal(loaded.test_probabilities, fold.test_probabilities)
    np.testing.assert_array_equal(loaded.validation_probabilities, fold.validation_probabilities)
    assert not list(tmp_path.glob(".*"))  # written under a temporary name, then renamed


def saved_fold_arrays(summary) -> dict:
    rng = np.random.default_rng(1)
    return {"summary": np.array(summary if isinstance(summary, str) else json.dumps(summary)),
            "test_probabilities": rng.dirichlet(np.ones(10), size=12).astype(np.float32),
            "validation_indices": np.array([3, 5, 7]),
            "validation_probabilities": rng.dirichlet(np.ones(10), size=3).astype(np.float32)}


GOOD_SUMMARY = {"fold_index": 1, "seconds": 2.5, "validation_accuracy": 0.5, "test_accuracy": None,
                "history": {"loss": [1.0, 0.5]}}


def test_load_fold_of_a_header_that_claims_terabytes_is_one_line(tmp_path):
    # What `make collect` downloads from a fold kernel: its test probabilities claim 10**9 x 1000 floats.
    path = npz_with_lying_header(tmp_path / "fold-1.npz", saved_fold_arrays(GOOD_SUMMARY), "test_probabilities",
                                 (10**9, 1000), compressed=True)
    with pytest.raises(KitError, match=r"fold-1.npz: test_probabilities claims shape \(1,000,000,000, 1,000\) "
                                       r"\(4,000,000,000,000 bytes\), more than the 1,073,741,824") as raised:
        results.load_fold(path)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("change, problem", [
    (lambda arrays: arrays.update(summary=np.array("[" * 100_000)), "its summary is not JSON text"),
    (lambda arrays: arrays.update(summary=np.array(json.dumps([1, 2]))), "its summary is not a JSON object"),
    (lambda arrays: arrays.update(summary=np.array(json.dumps({**GOOD_SUMMARY, "fold_index": "1"}))),
     "its fold_index is '1'"),
    (lambda arrays: arrays.update(summary=np.array(json.dumps({**GOOD_SUMMARY, "history": {"loss": "x"}}))),
     "its history is not lists of numbers by metric"),
    (lambda arrays: arrays.update(summary=np.zeros(3)), "its summary is not JSON text"),
    (lambda arrays: arrays.update(test_probabilities=np.zeros((12, 9), np.float32)),
     r"its test_probabilities have shape \(12, 9\)"),
    (lambda arrays: arrays.pop("validation_probabilities"), "validation indices or probabilities without the other"),
    (lambda arrays: arrays.update(validation_indices=np.array([1.5, 2.0, 3.0])), "do not match"),
    (lambda arrays: arrays.update(validation_indices=np.array([1, 2])), "do not match"),
])
def test_load_fold_refuses_a_damaged_fold_in_one_line(tmp_path, change, problem):
    arrays = saved_fold_arrays(GOOD_SUMMARY)
    change(arrays)
    np.savez(tmp_path / "fold-1.npz", **arrays)
    with pytest.raises(KitError, match=f"fold-1.npz is not a saved fold the kit can use: .*{problem}") as raised:
        results.load_fold(tmp_path / "fold-1.npz")
    assert "\n" not in str(raised.value) and "Delete it to train the fold again" in str(raised.value)


def test_load_fold_reads_a_good_summary(tmp_path):
    np.savez(tmp_path / "fold-1.npz", **saved_fold_arrays(GOOD_SUMMARY))
    loaded = results.load_fold(tmp_path / "fold-1.npz")
    assert (loaded.fold_index, loaded.seconds, loaded.validation_accuracy, loaded.history) == \
        (1, 2.5, 0.5, {"loss": [1.0, 0.5]})
