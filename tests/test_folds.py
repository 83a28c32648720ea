"""Tests of src.folds: the stratified split, the seeds of folds and their models, and their places on disk."""

import numpy as np
import pytest

from src import folds
from src.errors import KitError


def test_fold_splits_cover_every_row_once_stratified():
    labels = np.repeat(np.arange(10), 9)
    splits = folds.fold_splits(labels, 3, seed=0)
    held_out = np.concatenate([validation for _, validation in splits])
    assert sorted(held_out.tolist()) == list(range(90))
    for train, validation in splits:
        assert not set(train) & set(validation)
        assert np.bincount(labels[validation]).tolist() == [3] * 10
    assert [v.tolist() for _, v in folds.fold_splits(labels, 3, seed=0)] == [v.tolist() for _, v in splits]
    assert [v.tolist() for _, v in folds.fold_splits(labels, 3, seed=1)] != [v.tolist() for _, v in splits]


def test_fold_splits_single_fold_trains_on_everything():
    [(train, validation)] = folds.fold_splits(np.arange(10), 1, seed=0)
    assert train.tolist() == list(range(10)) and validation is None


def test_fold_splits_rejects_more_folds_than_rarest_digit():
    with pytest.raises(KitError, match="Received: folds=4"):
        folds.fold_splits(np.repeat(np.arange(10), 3), 4, seed=0)


def test_member_seed_of_the_first_model_is_the_folds_and_the_others_differ():
    assert folds.fold_seed(3, 2) == 3002
    assert folds.member_seed(3, 2, 0) == 3002
    seeds = {folds.member_seed(seed, fold, member) for seed in range(3) for fold in range(5) for member in range(3)}
    assert len(seeds) == 45


def test_member_dir_and_file_nest_seeds_inside_their_fold(tmp_path):
    assert folds.member_dir(tmp_path, 1, 0, 1) == tmp_path / "fold-1"
    assert folds.member_dir(tmp_path, 1, 2, 3) == tmp_path / "fold-1" / "seed-2"
    assert folds.member_file(tmp_path, 1, 0, 1) is None
    assert folds.member_file(tmp_path, 1, 2, 3) == tmp_path / "fold-1" / "seed-2.npz"
    assert folds.fold_file(tmp_path, 4) == tmp_path / "fold-4.npz"
    assert [folds.member_number(name) for name in ("fold-3", "seed-12", "fold-x", "backup")] == [3, 12, None, None]
