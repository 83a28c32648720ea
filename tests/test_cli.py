"""Tests of the command line: kernel flags, one-line errors, and an end-to-end kernel run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from src import cli, data, paths, submission
from src.config import RunConfig
from src.errors import KitError

KERNEL = paths.KERNELS_DIR / "mnist-cnn" / "kernel.py"


def run(arguments, cwd=None, env=None, timeout=300):
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=timeout)


def test_parse_kernel_args_applies_kernel_defaults_and_flags():
    config = cli.parse_kernel_args(["--epochs", "3", "--learning-rate", "0.5", "--folds", "1"], "k", folds=5)
    assert (config.epochs, config.learning_rate, config.folds, config.batch_size) == (3, 0.5, 1, 128)
    assert cli.parse_kernel_args([], "k", folds=5, epochs=7).folds == 5
    assert cli.parse_kernel_args([], "k", epochs=7).epochs == 7


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "Received: epochs=0"),
        (["--batch-size", "-1"], "Received: batch_size=-1"),
        (["--folds", "0"], "Received: folds=0"),
        (["--learning-rate", "-0.1"], "Received: learning_rate=-0.1"),
        (["--model", "resnet"], "choose one of seed_cnn, tfwiki_cnn, mlp"),
        (["--optimizer", "sgdx"], "choose one of adadelta, adam, rmsprop"),
        (["--epochs", "two"], "invalid int value: 'two'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_parse_kernel_args_rejects_bad_flags(flags, message):
    with pytest.raises(KitError, match=message):
        cli.parse_kernel_args(flags, "k")


def test_run_config_resolves_learning_rate_per_optimizer():
    assert RunConfig(kernel="k").effective_learning_rate == 1.0
    assert RunConfig(kernel="k", optimizer="rmsprop").effective_learning_rate == 1e-3
    assert RunConfig(kernel="k", optimizer="adam", learning_rate=0.01).to_dict()["learning_rate"] == 0.01


def test_cli_help_does_not_import_tensorflow():
    code = ("import sys; from src import cli; cli.build_parser(); cli.kernel_parser('k'); "
            "print('tensorflow' in sys.modules)")
    result = run(["-c", code], cwd=paths.REPO_ROOT)
    assert result.stdout.strip() == "False", result.stderr


def test_kernel_bad_flag_is_one_line_and_status_2(tmp_path):
    result = run([str(KERNEL), "--epochs", "0", "--out", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: epochs must be an integer from 1 to 10000. Received: epochs=0.")
    assert not list(tmp_path.iterdir())


def test_kernel_bad_data_is_one_line_and_writes_nothing(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "out"
    result = run([str(KERNEL), "--data", str(broken), "--out", str(out)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "broken.npz" in result.stderr
    assert not out.exists()


def test_validate_command(tmp_path):
    good = submission.write_submission(np.array([1, 2]), tmp_path / "good.csv")
    result = run(["-m", "src", "validate", str(good)], cwd=paths.REPO_ROOT)
    assert result.returncode == 0 and "valid submission, 2 rows" in result.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,Label\n1,12\n")
    result = run(["-m", "src", "validate", str(bad)], cwd=paths.REPO_ROOT)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "outside 0-9" in result.stderr


def test_unknown_command_is_one_line(tmp_path):
    result = run(["-m", "src", "frobnicate"], cwd=paths.REPO_ROOT)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "invalid choice" in result.stderr


def test_kernel_end_to_end_writes_valid_submission_record_and_probabilities(tmp_path, sample_npz):
    out = tmp_path / "out"
    result = run([str(KERNEL), "--data", str(sample_npz), "--out", str(out), "--epochs", "1", "--folds", "2",
                  "--quiet"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    final = result.stdout.strip().splitlines()[-1]
    assert final.startswith("submission: ") and "cv_accuracy=" in final and "test_accuracy=" in final
    [csv_path] = out.glob("mnist-cnn-*.csv")
    assert csv_path.name in final
    assert submission.validate_submission(csv_path) == 100
    record = json.loads(csv_path.with_suffix(".json").read_text())
    assert record["config"]["folds"] == 2 and record["config"]["learning_rate"] == 1.0
    assert record["data"]["sha256"] == data.source_sha256(sample_npz)
    assert len(record["folds"]) == 2 and record["test_accuracy"] is not None
    with np.load(csv_path.with_suffix(".npz")) as saved:
        assert saved["oof_probabilities"].shape == (300, 10)
        labels = saved["test_probabilities"].argmax(axis=1)
    assert csv_path.read_text().splitlines()[1:4] == [f"{i + 1},{label}" for i, label in enumerate(labels[:3])]
    assert "fold 1/2" in result.stdout and "fold 2/2" in result.stdout


def test_kernel_trains_under_channels_first_setting(tmp_path, sample_npz):
    keras_home = tmp_path / "keras"
    keras_home.mkdir()
    settings = {"image_data_format": "channels_first", "backend": "tensorflow", "floatx": "float32", "epsilon": 1e-07}
    (keras_home / "keras.json").write_text(json.dumps(settings))
    result = run([str(KERNEL), "--data", str(sample_npz), "--out", str(tmp_path / "out"), "--epochs", "1",
                  "--folds", "1", "--quiet"], env={"KERAS_HOME": str(keras_home)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("channels_first") == 1
    assert "test_accuracy=" in result.stdout
