"""Tests of the kernels (kernels/<name>/kernel.py): each tells the training story, and each runs, as a user runs
it, to a valid submission, a record and probabilities; bad input is one line; a normal run is quiet."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import KERNELS, PROCESS_TIMEOUT, kernel_script, run_process
from src import data, submission

# What a newcomer reading mnist-cnn's kernel sees, in this order (issue 15): the data, the Sequential CNN from
# the one input shape, Adadelta at 1.0, the loop over the folds that fits and evaluates, the ensemble, the
# submission.
MNIST_CNN_STORY = [
    r"learning_rate=1\.0",
    r"dataset = data\.load_dataset\(flags\.data\)",
    r"input_shape = layout\.input_shape\(\)",
    r"keras\.Sequential\(",
    r"keras\.Input\(shape=input_shape\)",
    r"layers\.Conv2D\(32",
    r"keras\.optimizers\.Adadelta\(learning_rate=learning_rate",
    r"with training\.start_run\(flags, dataset\) as run:",
    r"for fold in run\.folds\(\):",
    r"model = build_model\(\)",
    r"model\.compile\(",
    r"fold\.fit\(model",
    r"fold\.evaluate\(model\)",
    r"run\.ensemble\(\)",
    r"run\.finish\(",
    r"print\(finish\.summary_line\(record\)",
]


def line_of(source: str, pattern: str) -> int:
    match = re.search(pattern, source)
    assert match, f"the kernel lacks {pattern!r}"
    return source[: match.start()].count("\n")


def test_mnist_cnn_reads_as_the_training_story():
    source = kernel_script("mnist-cnn").read_text()
    lines = [line_of(source, pattern) for pattern in MNIST_CNN_STORY]
    assert lines == sorted(lines), list(zip(MNIST_CNN_STORY, lines))


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_is_short_and_shows_its_loop_over_the_folds(kernel):
    source = kernel_script(kernel).read_text()
    assert source.count("\n") <= 120
    for pattern in (r"flags\.parse_flags\(", r"data\.load_dataset\(", r"for fold in run\.folds\(\):",
                    r"model\.compile\(", r"fold\.fit\(model", r"fold\.evaluate\(model\)", r"run\.finish\("):
        line_of(source, pattern)


def test_mnist_mlp_shows_its_gradient_tape_step():
    source = kernel_script("mnist-mlp").read_text()
    for pattern in (r"keras\.Sequential\(", r"def train_step\(model, images, labels\):", r"tf\.GradientTape\(\)",
                    r"tape\.gradient\(", r"apply_gradients\(", r"fold\.fit\(model, train_step\)"):
        line_of(source, pattern)


def run_kernel_process(kernel, arguments, **kwargs):
    return run_process([str(kernel_script(kernel)), *arguments], **kwargs)


@pytest.mark.slow
def test_mnist_cnn_end_to_end_writes_valid_submission_record_and_probabilities(tmp_path, sample_npz):
    out = tmp_path / "out"
    result = run_kernel_process("mnist-cnn", ["--data", str(sample_npz), "--out", str(out), "--epochs", "1",
                                              "--folds", "2", "--quiet"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    final = result.stdout.strip().splitlines()[-1]
    assert final.startswith("submission: ") and "cv_accuracy=" in final and "test_accuracy=" in final
    [csv_path] = out.glob("mnist-cnn-*.csv")
    assert csv_path.name in final
    assert submission.validate_submission(csv_path) == 100
    record = json.loads(csv_path.with_suffix(".json").read_text())
    assert record["config"]["folds"] == 2 and record["config"]["learning_rate"] == 1.0
    assert record["config"]["optimizer"] == "adadelta" and record["config"]["model"] == "seed_cnn"
    assert record["data"]["sha256"] == data.source_sha256(sample_npz)
    assert len(record["folds"]) == 2 and record["test_accuracy"] is not None
    with np.load(csv_path.with_suffix(".npz")) as saved:
        assert saved["oof_probabilities"].shape == (300, 10)
        labels = saved["test_probabilities"].argmax(axis=1)
    assert csv_path.read_text().splitlines()[1:4] == [f"{i + 1},{label}" for i, label in enumerate(labels[:3])]
    assert "fold 1/2" in result.stdout and "fold 2/2" in result.stdout
    assert len(list((out / record["run"]).glob("*.png"))) == 4


@pytest.mark.slow
def test_a_normal_run_is_quiet(tmp_path, sample_npz):
    # Three folds of the custom loop: each fold traces its new model's steps, which TensorFlow warns of.
    result = run_kernel_process("mnist-mlp", ["--data", str(sample_npz), "--out", str(tmp_path), "--epochs", "1",
                                              "--folds", "3", "--no-plots"], env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert not re.search(r"retracing|oneDNN|absl|cpu_feature_guard|WARNING", result.stdout), result.stdout
    verbose = run_kernel_process("mnist-mlp", ["--data", str(sample_npz), "--out", str(tmp_path), "--epochs", "1",
                                               "--no-plots", "--quiet", "--verbose"], env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert verbose.returncode == 0 and "cpu_feature_guard" in verbose.stderr


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU lists AMX-BF16 or AVX512-BF16 in /proc/cpuinfo, read here, not by src.machine."""
    try:
        return re.search(r"^flags\s*:.*\b(amx_bf16|avx512_bf16)\b", Path("/proc/cpuinfo").read_text(), re.M) is not None
    except OSError:
        return False


@pytest.mark.slow
def test_mnist_fast_kernel_trains_with_its_defaults(tmp_path, sample_npz):
    out = tmp_path / "out"
    result = run_kernel_process("mnist-fast", ["--data", str(sample_npz), "--out", str(out), "--epochs", "1",
                                               "--folds", "1", "--quiet"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [csv_path] = out.glob("mnist-fast-*.csv")
    assert submission.validate_submission(csv_path) == 100
    record = json.loads(csv_path.with_suffix(".json").read_text())
    expected = {"model": "fast_cnn", "optimizer": "adam", "learning_rate": 0.003, "schedule": "warmup_cosine",
                "precision": "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32", "batch_size": 128,
                "epochs": 1, "folds": 1}
    assert {key: record["config"][key] for key in expected} == expected
    assert record["folds"][0]["fit_seconds"] > 0
    assert "test_accuracy=" in result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_mnist_ensemble_kernel_end_to_end_writes_a_valid_submission(tmp_path, sample_npz):
    out = tmp_path / "out"
    result = run_kernel_process("mnist-ensemble", [
        "--data", str(sample_npz), "--out", str(out), "--budget", "cpu", "--folds", "2", "--epochs", "1",
        "--seeds", "2", "--tta", "2", "--no-plots", "--quiet"], timeout=600)
    assert result.returncode == 0, result.stderr
    [csv_path] = out.glob("mnist-ensemble-*.csv")
    assert submission.validate_submission(csv_path) == 100
    record = json.loads(csv_path.with_suffix(".json").read_text())
    assert record["config"]["model"] == "strong_cnn" and record["config"]["schedule"] == "exponential"
    assert (record["config"]["seeds"], record["config"]["tta"], record["config"]["budget"]) == (2, 2, "cpu")
    assert len(record["folds"]) == 2 and "model 2/2" in result.stdout


def test_kernel_help_shows_its_defaults_and_a_bad_flag_is_one_line(tmp_path):
    help_text = run_kernel_process("mnist-fast", ["--help"], cwd=tmp_path)
    assert help_text.returncode == 0
    assert "fast_cnn" in help_text.stdout and "warmup_cosine" in help_text.stdout
    result = run_kernel_process("mnist-fast", ["--schedule", "cyclic", "--out", str(tmp_path / "out")], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Unknown schedule; choose one of constant, warmup_cosine, exponential. Received: schedule='cyclic'."
    ]
    assert not (tmp_path / "out").exists()


def test_kernel_bad_flag_is_one_line_and_status_2(tmp_path):
    result = run_kernel_process("mnist-cnn", ["--epochs", "0", "--out", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr == "error: epochs must be an integer from 1 to 10000. Received: epochs=0.\n"
    assert not list(tmp_path.iterdir())


def test_kernel_bad_data_is_one_line_and_writes_nothing(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "out"
    result = run_kernel_process("mnist-cnn", ["--data", str(broken), "--out", str(out)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "broken.npz" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_kernel_trains_under_channels_first_setting(tmp_path, sample_npz):
    keras_home = tmp_path / "keras"
    keras_home.mkdir()
    settings = {"image_data_format": "channels_first", "backend": "tensorflow", "floatx": "float32", "epsilon": 1e-07}
    (keras_home / "keras.json").write_text(json.dumps(settings))
    result = run_kernel_process("mnist-cnn", ["--data", str(sample_npz), "--out", str(tmp_path / "out"),
                                              "--epochs", "1", "--folds", "1", "--quiet"],
                                env={"KERAS_HOME": str(keras_home)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("channels_first") == 1
    assert "test_accuracy=" in result.stdout


@pytest.mark.slow
def test_ctrl_c_during_training_is_one_line_and_status_130(tmp_path, sample_npz):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(kernel_script("mnist-cnn")), "--data", str(sample_npz), "--out",
                                str(out), "--epochs", "3", "--folds", "2", "--quiet", "--no-plots"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # A background job's shell (`make test &`) ignores SIGINT, and the kernel would
                               # inherit that; a terminal's Ctrl-C reaches a process that does not ignore it.
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not list(out.glob("*/fold-0/backup/training_metadata.json")) and time.monotonic() < deadline:
        time.sleep(0.1)  # the first epoch is saved: the run is well inside training
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
    assert process.returncode == 130
    assert stderr.strip().splitlines() == ["interrupted: finished folds and epochs are kept in the run's folder; run "
                                           "the same command again to resume."]
    [workdir] = [path for path in out.iterdir() if path.is_dir()]
    assert json.loads((workdir / "run.json").read_text())["state"] == "running"
    # What the line says is kept is still there for the same command to resume from: the running fold's backup.
    assert (workdir / "fold-0" / "backup" / "training_metadata.json").is_file()
    assert not list(out.glob("*.csv")) and not list(out.glob("*.json"))
