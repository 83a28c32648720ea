"""Tests of src.cli (`python -m src ...`): its commands answer fast, in one line when they fail, and Ctrl-C says
what each command kept."""

import numpy as np
import pytest

from conftest import run_process
from src import cli, submission


def test_help_and_flag_errors_do_not_import_tensorflow():
    code = ("import sys; from src import cli\n"
            "assert cli.main(['runs', '--format', 'yaml']) == 2\n"
            "print('tensorflow' in sys.modules)")
    result = run_process(["-c", code])
    assert result.stdout.strip() == "False", result.stderr
    assert "invalid choice: 'yaml'" in result.stderr and result.stderr.count("\n") == 1


def test_validate_command(tmp_path):
    good = submission.write_submission(np.array([1, 2]), tmp_path / "good.csv")
    result = run_process(["-m", "src", "validate", str(good)])
    assert result.returncode == 0 and "valid submission, 2 rows" in result.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,Label\n1,12\n")
    result = run_process(["-m", "src", "validate", str(bad)])
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "outside 0-9" in result.stderr
    assert result.stderr.count("\n") == 1


def test_unknown_command_is_one_line():
    result = run_process(["-m", "src", "frobnicate"])
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "invalid choice" in result.stderr


@pytest.mark.parametrize("target, argv, kept", [
    ("src.kaggle.kernels.push", ["push", "kernels/mnist-cnn"], "may or may not have reached Kaggle"),
    ("src.kaggle.competition.submit", ["submit", "x.csv", "-m", "m"], "before submitting again"),
    ("src.kaggle.kernels.download_output", ["output", "kernels/mnist-cnn"], "previous download is as it was"),
    ("src.prepare.prepare_input", ["data"], "input/ is as it was"),
    ("src.records.find_records", ["runs"], "nothing was changed"),
    ("src.tune.tune", ["tune", "kernels/mnist-fast", "--trials", "1"], "the running one runs again"),
])
def test_ctrl_c_says_what_the_interrupted_command_kept(target, argv, kept, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)

    assert cli.main(argv) == 130
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and kept in error and "folds and epochs" not in error
