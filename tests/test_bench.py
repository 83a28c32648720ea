"""Tests of benchmarks/bench.py's parts that need no training: parsing, per-process measures, the table."""

import importlib.util
import json
import subprocess
import sys

import pytest

from src import paths

spec = importlib.util.spec_from_file_location("bench", paths.REPO_ROOT / "benchmarks" / "bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

PEER_OUTPUT = """\
epoch 1: 75.2s 798 img/s val_acc=0.9788
epoch 2: 70.6s 850 img/s val_acc=0.9851
fit_seconds=147.3
test_accuracy=0.9851
"""


def test_parse_peer_output_reads_epochs_and_accuracy():
    epoch_seconds, rates, accuracy = bench.parse_peer_output("noise\n" + PEER_OUTPUT)
    assert epoch_seconds == [75.2, 70.6]
    assert rates == [798.0, 850.0]
    assert accuracy == pytest.approx(0.9851)
    assert bench.parse_peer_output("no epochs here") == ([], [], None)


def test_measured_best_images_per_second_is_the_fastest_epoch():
    measured = bench.Measured("k", [], 1.0, 0, 0.0, 0, "", epoch_seconds=[20.0, 10.0, 12.5], train_images=1000)
    assert measured.fit_seconds == pytest.approx(42.5)
    assert measured.images_per_second == [50.0, 100.0, 80.0]
    assert measured.best_images_per_second == pytest.approx(100.0)
    single = bench.Measured("k", [], 1.0, 0, 0.0, 0, "", epoch_seconds=[20.0], train_images=1000)
    assert single.best_images_per_second == pytest.approx(50.0)


def peak_rss_from_a_small_parent(tmp_path, name, program):
    """Runs `program` through `run_program` in a fresh interpreter and returns (peak RSS, CPU seconds, output).

    Linux counts a parent's peak RSS into its children's, so the measuring process must be small, as the
    bench's is, and pytest's (with TensorFlow loaded) is not.
    """
    bench_path = str(paths.REPO_ROOT / "benchmarks" / "bench.py")
    measure = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('bench', {bench_path!r})\n"
        "bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)\n"
        f"m = bench.run_program({name!r}, [sys.executable, '-c', {program!r}], "
        f"bench.Path({str(tmp_path / name)!r} + '.log'), timeout=60)\n"
        "print(json.dumps([m.peak_rss_bytes, m.cpu_seconds, m.output]))\n"
    )
    result = subprocess.run([sys.executable, "-c", measure], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_run_program_measures_the_child_peak_rss(tmp_path):
    allocate = "block = bytearray(300 * 2**20); block[::4096] = b'x' * len(block[::4096]); print('ok')"
    big, cpu_seconds, output = peak_rss_from_a_small_parent(tmp_path, "allocate", allocate)
    small, _, _ = peak_rss_from_a_small_parent(tmp_path, "small", "print('ok')")
    assert output.strip() == "ok"
    assert big > 300 * 2**20 and cpu_seconds > 0
    assert small < big - 250 * 2**20


def test_run_program_failure_names_its_log(tmp_path):
    with pytest.raises(SystemExit, match=r"fails exited with status 3; see .*fails.log:\nboom"):
        bench.run_program("fails", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
                          tmp_path / "fails.log", timeout=60)


def test_run_peer_rejects_a_program_that_is_not_the_seed_kernel(tmp_path):
    impostor = tmp_path / "impostor.py"
    impostor.write_text("print('epoch 1: 1.0s 100 img/s val_acc=0.5')\n")
    with pytest.raises(SystemExit, match="printed 1 epoch lines, expected 2"):
        bench.run_peer(impostor, tmp_path / "mnist.npz", 2, "impostor", tmp_path, timeout=60)


def test_run_peer_recovers_precise_epoch_seconds_from_images_per_second(tmp_path):
    peer = tmp_path / "peer.py"
    peer.write_text(f"print({PEER_OUTPUT!r}, end='')\n")
    measured = bench.run_peer(peer, tmp_path / "mnist.npz", 2, "peer", tmp_path, timeout=60)
    assert measured.train_images == 60_010  # the median of 75.2 * 798 and 70.6 * 850, rounded
    assert measured.images_per_second == pytest.approx([798.0, 850.0])
    assert measured.test_accuracy == pytest.approx(0.9851)


def test_report_table_lists_rows_and_targets_with_verdicts():
    report = bench.Report()
    report.row("seed kernel", "12 epochs", "1100.0", "2150.0", "1099.0", "850", "0.9917", "1,300", "1.000")
    report.target("2. throughput", "0.990", True)
    report.target("3. memory", "2,100 MB", False)
    report.target("1. fit ratio", "no peer", None)
    table = report.table()
    assert "| seed kernel | 12 epochs | 1100.0 | 2150.0 | 1099.0 | 850 | 0.9917 | 1,300 | 1.000 |" in table
    assert "| 2. throughput | 0.990 | met |" in table
    assert "| 3. memory | 2,100 MB | NOT MET |" in table
    assert "| 1. fit ratio | no peer | not measured |" in table
    quick = bench.Report(quick=True)
    quick.target("t", "x", True)
    assert "met (on a slice: indicative only)" in quick.table()


def test_run_kernel_here_runs_the_kernel_in_this_process_with_its_flags(tmp_path, monkeypatch, capsys):
    kernel = tmp_path / "fake" / "kernel.py"
    kernel.parent.mkdir()
    kernel.write_text("import sys\nfrom pathlib import Path\n"
                      "Path(sys.argv[0]).with_name('ran.txt').write_text(' '.join(sys.argv[1:]) + ' ' + __name__)\n")
    monkeypatch.setattr(bench, "KERNELS", tmp_path)
    monkeypatch.setattr(bench, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # put back after the test

    bench.run_kernel_here("fake", ["--folds", "5"], "a lever")

    assert (kernel.parent / "ran.txt").read_text() == "--folds 5 __main__"
    assert capsys.readouterr().out == "a lever: fake/kernel.py --folds 5\n"
