"""src.leaks: test images found in the training data, and training duplicates that fall in different folds."""

import logging

import numpy as np

from conftest import make_arrays
from src import data, folds, leaks


def test_count_leaks_finds_test_images_in_the_training_data_by_their_exact_bytes():
    (x_train, _), (x_test, _) = make_arrays(train_per_class=5, test_rows=12)
    x_test[[2, 5, 7]] = x_train[[0, 10, 49]]
    nearly = x_train[3].copy()
    nearly[0, 0] ^= 1  # one pixel off: another image
    x_test[9] = nearly

    counts = leaks.count_leaks(x_train, x_test)

    assert (counts.test_in_train, counts.test_rows) == (3, 12)
    assert (counts.train_duplicates, counts.duplicates_across_folds) == (0, None)


def test_count_leaks_counts_training_copies_held_out_in_other_folds():
    (x_train, _), (x_test, _) = make_arrays(train_per_class=4, test_rows=5)
    x_train[[10, 20]] = x_train[1]  # rows 1, 10, 20: one image three times
    x_train[31] = x_train[30]  # rows 30, 31: twice, in the same fold below
    fold_of_row = np.arange(len(x_train)) % 4
    fold_of_row[31] = fold_of_row[30]
    fold_of_row[[1, 10, 20]] = [0, 0, 2]

    counts = leaks.count_leaks(x_train, x_test, fold_of_row)

    assert counts.train_duplicates == 3  # rows 10, 20 and 31 repeat an earlier row
    assert counts.duplicates_across_folds == 3  # rows 1, 10 and 20: a copy is held out in another fold
    assert counts.test_in_train == 0


def test_fold_of_rows_reads_the_held_out_rows_of_each_fold():
    y = np.repeat(np.arange(10, dtype=np.uint8), 6)
    splits = folds.fold_splits(y, 3, seed=0)
    fold_of_row = leaks.fold_of_rows(len(y), splits)
    for fold_index, (_, validation) in enumerate(splits):
        assert set(np.flatnonzero(fold_of_row == fold_index)) == set(validation)
    assert leaks.fold_of_rows(len(y), folds.fold_splits(y, 1, seed=0)) is None
    assert leaks.fold_of_rows(len(y), []) is None


def test_check_leaks_warns_in_one_line_with_the_counts(caplog):
    (x_train, y_train), (x_test, _) = make_arrays(train_per_class=6, test_rows=10)
    x_test[:4] = x_train[:4]
    dataset = data.Dataset(x_train, y_train, x_test, None, source=None, kind="npz")
    with caplog.at_level(logging.INFO, logger="src"):
        entry = leaks.check_leaks(dataset, folds.fold_splits(y_train, 3, seed=0))

    assert entry == {"test_in_train": 4, "test_rows": 10, "train_duplicates": 0, "duplicates_across_folds": 0}
    assert [record.getMessage() for record in caplog.records] == [
        "warning: 4 of the 10 test images are also in the training data: scores of this run are leaks, not skill"]


def test_check_leaks_says_in_one_line_when_it_found_nothing(caplog):
    (x_train, y_train), (x_test, _) = make_arrays(train_per_class=3, test_rows=6)
    dataset = data.Dataset(x_train, y_train, x_test, None, source=None, kind="npz")
    with caplog.at_level(logging.INFO, logger="src"):
        assert leaks.check_leaks(dataset)["test_in_train"] == 0
    assert [record.getMessage() for record in caplog.records] == [
        "leak check: none of the 6 test images is in the training data"]
