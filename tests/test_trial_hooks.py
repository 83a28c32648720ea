"""Tests of src.trial_hooks: a search's trial sees no test labels and hears every epoch; outside one, nothing
changes."""

from pathlib import Path

import numpy as np
import pytest

from src import data, results, trial_hooks


def dataset(test_labels=True):
    images = np.zeros((4, 28, 28), np.uint8)
    labels = np.arange(4, dtype=np.uint8)
    return data.Dataset(images, labels, images, labels.copy() if test_labels else None, source=Path("x.npz"),
                        kind="npz")


def test_outside_a_trial_the_run_gets_the_data_as_it_is_and_no_listener():
    given = dataset()
    assert not trial_hooks.in_trial()
    assert trial_hooks.visible_dataset(given) is given
    assert trial_hooks.epoch_listener(object()) is None


def test_a_trial_hides_the_test_labels_and_binds_its_listener_to_the_fold():
    heard = []
    given, fold = dataset(), object()
    with trial_hooks.trial(lambda *arguments: heard.append(arguments)):
        visible = trial_hooks.visible_dataset(given)
        trial_hooks.epoch_listener(fold)(3, {"val_accuracy": 0.5})
        assert trial_hooks.in_trial()
    assert visible.y_test is None and not visible.has_test_labels
    np.testing.assert_array_equal(visible.x_test, given.x_test)
    np.testing.assert_array_equal(visible.y_train, given.y_train)
    assert given.y_test is not None  # the kernel's own data is left as it was
    assert heard == [(fold, 3, {"val_accuracy": 0.5})]


def test_a_trial_ends_with_its_block_even_when_the_run_raises():
    with pytest.raises(RuntimeError):
        with trial_hooks.trial(lambda *arguments: None):
            raise RuntimeError("a pruned trial")
    assert not trial_hooks.in_trial() and trial_hooks.epoch_listener(object()) is None


def test_a_run_inside_a_trial_computes_no_test_accuracy(fake_run, sample_npz, tmp_path, monkeypatch):
    scored = []
    accuracy = results.accuracy

    def spy(probabilities, labels):
        scored.append(len(labels))
        return accuracy(probabilities, labels)

    monkeypatch.setattr(results, "accuracy", spy)
    with trial_hooks.trial(lambda *arguments: None):
        record = fake_run(["--data", str(sample_npz), "--out", str(tmp_path / "trial"), "--folds", "2",
                           "--no-plots"])
    # 300 training images in 2 folds of 150 (and their 300 out-of-fold rows); the 100 test images are never scored.
    assert record["test_accuracy"] is None and record["data"]["test_labels"] is False
    assert scored and 100 not in scored and set(scored) <= {150, 300}

    outside = fake_run(["--data", str(sample_npz), "--out", str(tmp_path / "run"), "--folds", "2", "--no-plots"])
    assert outside["test_accuracy"] is not None and outside["data"]["test_labels"] is True
