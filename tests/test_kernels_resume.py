"""Kernels killed with SIGKILL and rerun resume to the uninterrupted result; SIGTERM, a full disk and a read-only
folder in the middle of a run lose nothing (run identity and locks: test_runs.py)."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_kernel
from src import console, files, fitting, paths, results, runs, submission
from src.errors import KitError

# --- kernels killed and rerun ---------------------------------------------------------------------

# Runs a kernel whose every training batch waits DELAY seconds (values untouched), so that a kill lands
# inside an epoch rather than between two, and waits while the file HOLD exists.
SLOW_KERNEL = """
import os, runpy, sys, time
import tensorflow as tf
from src import pipelines

DELAY = {delay}
HOLD = {hold!r}
epoch_batches = pipelines.epoch_batches


def wait():
    time.sleep(DELAY)
    while HOLD and os.path.exists(HOLD):
        time.sleep(0.01)
    return 0


def slow_epoch_batches(*args, **kwargs):
    def pause(images, labels):
        waited = tf.py_function(wait, [], tf.int32)
        with tf.control_dependencies([waited]):
            return tf.identity(images), tf.identity(labels)

    return epoch_batches(*args, **kwargs).map(pause)


pipelines.epoch_batches = slow_epoch_batches
sys.argv = [{kernel!r}, *sys.argv[1:]]
runpy.run_path({kernel!r}, run_name="__main__")
"""


class Kernel:
    """Starts a kernel in subprocesses, one at a time, each with its own log file."""

    def __init__(self, tmp_path, kernel, args, delay=0.04, hold=None, name="run"):
        self.tmp_path = tmp_path
        self.name = name
        self.out = tmp_path / "out"
        self.args = [*args, "--out", str(self.out)]
        self.script = tmp_path / f"{name}_kernel.py"
        self.script.write_text(SLOW_KERNEL.format(delay=delay, hold=str(hold) if hold else None,
                                                  kernel=str(paths.KERNELS_DIR / kernel / "kernel.py")))
        self.env = {**os.environ, paths.LOGS_ENV: str(tmp_path / "logs"), "TF_CPP_MIN_LOG_LEVEL": "2",
                    "KERAS_BACKEND": "tensorflow"}
        self.starts = 0

    def start(self):
        self.starts += 1
        self.log = self.tmp_path / f"{self.name}-{self.starts}.log"
        with open(self.log, "w") as log:
            return subprocess.Popen([sys.executable, str(self.script), *self.args], cwd=paths.REPO_ROOT,
                                    env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def output(self):
        return self.log.read_text()

    def progress(self):
        """Returns `(folds finished, epochs saved of the fold in progress)` of the run in `out/`."""
        workdirs = [path for path in self.out.glob("*") if path.is_dir()] if self.out.is_dir() else []
        if not workdirs:
            return 0, 0
        workdir = workdirs[0]
        finished = len(list(workdir.glob("fold-*.npz")))
        fold = workdir / f"fold-{finished}"
        saved = 0
        metadata = fold / "backup" / "training_metadata.json"
        state = fold / "checkpoints" / "checkpoint"
        if metadata.is_file():
            saved = json.loads(metadata.read_text())["epoch"]
        elif state.is_file():
            saved = int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', state.read_text()).group(1))
        return finished, saved

    def kill_when(self, process, condition, timeout=120):
        deadline = time.monotonic() + timeout
        while not condition(self.progress()):
            assert process.poll() is None, f"the run ended before it could be killed:\n{self.output()}"
            assert time.monotonic() < deadline, f"the run made no progress:\n{self.output()}"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL


def read_outputs(out_dir, run_name):
    """Returns a finished run's record, submission text and probabilities."""
    record = json.loads((out_dir / f"{run_name}.json").read_text())
    submission = (out_dir / record["submission"]).read_text()
    with np.load(out_dir / record["probabilities"]) as saved:
        probabilities = {name: saved[name] for name in saved.files}
    return record, submission, probabilities


def wait_for_line(runner, process, text, timeout=120):
    deadline = time.monotonic() + timeout
    while text not in runner.output():
        assert process.poll() is None and time.monotonic() < deadline, runner.output()
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kernel, args",
    [
        ("mnist-cnn", ["--model", "mlp", "--optimizer", "adam", "--batch-size", "30"]),
        ("mnist-mlp", ["--batch-size", "20"]),
    ],
    ids=["fit", "custom"],
)
def test_kernel_killed_twice_resumes_to_the_uninterrupted_result(kernel, args, sample_npz, tmp_path, monkeypatch,
                                                                 capsys):
    folds, epochs = 3, 2
    args = ["--data", str(sample_npz), "--folds", str(folds), "--epochs", str(epochs), "--quiet", *args]
    hold = tmp_path / "hold"
    runner = Kernel(tmp_path, kernel, args, hold=hold)

    # First kill: as soon as the first fold is saved.
    runner.kill_when(runner.start(), lambda progress: progress[0] >= 1)
    [workdir] = [path for path in runner.out.iterdir() if path.is_dir()]
    # Second kill: inside an epoch, once the rerun has saved an epoch of a fold it has not finished.
    second = runner.start()
    at_start = runner.progress()
    runner.kill_when(second, lambda progress: progress != at_start and 0 < progress[1] < epochs)
    assert "resuming the unfinished run" in runner.output()
    assert runner.progress()[0] < folds and not list(runner.out.glob("*.json"))

    # The same command again resumes the run; it waits in its first batch (HOLD) while the same command,
    # started in this process meanwhile, finds the run locked and trains its own, uninterrupted run.
    hold.touch()
    third = runner.start()
    wait_for_line(runner, third, "resuming the unfinished run")
    monkeypatch.setenv(paths.LOGS_ENV, str(tmp_path / "reference-logs"))
    run_kernel(kernel, [*args, "--out", str(runner.out)])
    assert "is running in another process" in capsys.readouterr().out
    hold.unlink()
    assert third.wait(timeout=300) == 0, runner.output()
    assert "finished earlier, reusing" in runner.output()

    resumed, resumed_submission, resumed_probabilities = read_outputs(runner.out, workdir.name)
    [reference_name] = [path.stem for path in runner.out.glob("*.json") if path.stem != workdir.name]
    reference, reference_submission, reference_probabilities = read_outputs(runner.out, reference_name)
    assert resumed_submission == reference_submission
    assert [untimed(fold) for fold in resumed["folds"]] == [untimed(fold) for fold in reference["folds"]]
    for name in ("cv_mean", "cv_std", "oof_accuracy", "test_accuracy"):
        assert resumed[name] == reference[name]
    for name, array in reference_probabilities.items():
        np.testing.assert_array_equal(resumed_probabilities[name], array)


def untimed(fold_record):
    """A fold's record without its wall-clock seconds, which no two runs share."""
    history = {name: values for name, values in fold_record["history"].items() if name != "epoch_seconds"}
    return {**fold_record, "seconds": None, "fit_seconds": None, "history": history}


# --- SIGTERM, a full disk and a read-only folder in the middle of a real run --------------------------------------

TINY_RUN = ["--folds", "2", "--epochs", "1", "--model", "mlp", "--optimizer", "adam", "--batch-size", "30", "--quiet",
            "--no-plots"]


def temporaries(folder):
    """The kit's temporary files anywhere under `folder`."""
    return [path for path in folder.rglob(".*") if files.TEMPORARY_NAME.match(path.name)]


@pytest.mark.slow
def test_sigterm_while_a_fold_trains_is_ctrl_cs_line_and_the_run_resumes(sample_npz, tmp_path, monkeypatch, capsys):
    args = ["--data", str(sample_npz), *TINY_RUN, "--folds", "1"]
    hold = tmp_path / "hold"
    hold.touch()  # the run waits in its first batch until the signal is sent
    runner = Kernel(tmp_path, "mnist-cnn", args, hold=hold)
    process = runner.start()
    wait_for_line(runner, process, "fold 1/1: training on")
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # what Kaggle's time limit, a scheduler or `timeout` sends
    hold.unlink()  # Python handles a signal once TensorFlow's step hands back; so does Ctrl-C

    assert process.wait(timeout=120) == 128 + signal.SIGTERM, runner.output()
    output = runner.output()
    assert output.splitlines()[-1] == console.TRAINING_INTERRUPTED and "Traceback" not in output
    [workdir] = [path for path in runner.out.iterdir() if path.is_dir()]
    assert json.loads((workdir / runs.RUN_FILE).read_text())["state"] == "running"
    assert temporaries(runner.out) == [] and not list(runner.out.glob("*.csv"))

    monkeypatch.setenv(paths.LOGS_ENV, str(tmp_path / "logs"))
    record = run_kernel("mnist-cnn", [*args, "--out", str(runner.out)])
    assert record["run"] == workdir.name and "resuming the unfinished run" in capsys.readouterr().out


def _failing_at(code, real, destination_matches):
    def call(source, destination, *args, **kwargs):
        if destination_matches(Path(destination)):
            raise OSError(code, os.strerror(code))
        return real(source, destination, *args, **kwargs)
    return call


@pytest.mark.slow
def test_a_full_disk_then_a_read_only_folder_in_the_middle_of_a_run_lose_nothing(
        sample_npz, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["--data", str(sample_npz), "--out", str(out), *TINY_RUN]

    # The disk fills as the second fold's model is renamed into place, after its epoch.
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", _failing_at(errno.ENOSPC, os.replace,
                                                 lambda path: path.parts[-2:] == ("fold-1", fitting.MODEL_FILE)))
        with pytest.raises(KitError) as raised:
            run_kernel("mnist-cnn", argv)
    [workdir] = [path for path in out.iterdir() if path.is_dir()]
    assert str(raised.value) == (f"Cannot write {workdir / 'fold-1' / fitting.MODEL_FILE}: No space left on device; "
                                 "free some disk space or choose another folder with --out.")
    first_fold = (workdir / "fold-0.npz").read_bytes()
    results.load_fold(workdir / "fold-0.npz")
    assert not (workdir / "fold-1" / fitting.MODEL_FILE).exists() and temporaries(out) == []
    assert sorted(path.name for path in out.iterdir()) == [workdir.name]

    # The folder turns read-only as the rerun links its submission into place, at the run's end.
    with monkeypatch.context() as patch:
        patch.setattr(os, "link", _failing_at(errno.EROFS, os.link, lambda path: path.suffix == ".csv"))
        with pytest.raises(KitError, match=r"\.csv: Read-only file system; make the folder writable"):
            run_kernel("mnist-cnn", argv)
    assert not list(out.glob("*.csv")) and not list(out.glob("*.json")) and temporaries(out) == []
    assert (workdir / "fold-0.npz").read_bytes() == first_fold and (workdir / "fold-1.npz").is_file()
    capsys.readouterr()

    # Space and write access back: the same command finishes the run from both saved folds.
    record = run_kernel("mnist-cnn", argv)
    printed = capsys.readouterr().out
    assert record["run"] == workdir.name and printed.count("finished earlier, reusing") == 2
    folds = [results.load_fold(workdir / f"fold-{index}.npz") for index in range(2)]
    with np.load(record["outputs"]["probabilities"]) as saved:
        np.testing.assert_allclose(saved["test_probabilities"],
                                   np.mean([fold.test_probabilities for fold in folds], axis=0), atol=1e-7)
    assert (workdir / "fold-0.npz").read_bytes() == first_fold and temporaries(out) == []
    assert submission.validate_submission(Path(record["outputs"]["submission"])) == 100
