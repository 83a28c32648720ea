"""Tests of benchmarks/threads.py: a configuration measured in its own process, and the table of passes."""

import importlib.util

import pytest

from src import paths

spec = importlib.util.spec_from_file_location("threads", paths.REPO_ROOT / "benchmarks" / "threads.py")
threads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(threads)


def test_threads_measures_a_configuration_in_a_process_of_its_own(npz_path, capsys):
    status = threads.main([str(npz_path), "--only", "intra-op 1", "--rounds", "2", "--passes", "1",
                           "--scale", "0.001"])

    assert status == 0
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("| intra-op 1 |")]
    assert row.count(" (") == 2  # a cell per model: the mean (each pass)
    assert "pass 1, intra-op 1: fast_cnn (" in out and "strong_cnn_affine (float32)" in out


def test_threads_table_gives_each_configuration_its_mean_and_ratio_to_the_default():
    passes = {"default": [{"m": 100.0}, {"m": 300.0}], "oneDNN off": [{"m": 100.0}, {"m": 100.0}]}

    lines = threads.table(passes)

    assert lines[0] == "| configuration | m images/s |"
    assert lines[2] == "| default | 200 (100 / 300, 1.00x) |"
    assert lines[3] == "| oneDNN off | 100 (100 / 100, 0.50x) |"


def test_threads_names_a_failed_configuration_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"configuration 'default' failed \(exit 2\): error: .*missing\.npz"):
        threads.main([str(tmp_path / "missing.npz"), "--only", "default", "--passes", "1"])


@pytest.mark.parametrize("flags", [["--rounds", "1"], ["--scale", "0"], ["--passes", "0"]])
def test_threads_refuses_bad_flags(flags, capsys):
    with pytest.raises(SystemExit) as raised:
        threads.parse_args(flags)

    assert raised.value.code == 2 and "Received:" in capsys.readouterr().err
