"""Tests of benchmarks/bench_pseudo_labels.py: one small comparison, its report, and the report again with --from."""

import importlib.util
import sys

from src import paths

sys.path.insert(0, str(paths.REPO_ROOT / "benchmarks"))  # bench_pseudo_labels imports bench, its neighbour
spec = importlib.util.spec_from_file_location("bench_pseudo_labels",
                                              paths.REPO_ROOT / "benchmarks" / "bench_pseudo_labels.py")
bench_pseudo_labels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_pseudo_labels)


def test_bench_pseudo_labels_reports_both_runs_and_every_label_of_a_small_comparison(tmp_path, npz_path):
    results = tmp_path / "results.md"
    out = tmp_path / "out"
    # At threshold 0 each fold labels its whole pool: the 12 test images and its 30 held-out rows.
    status = bench_pseudo_labels.main(["--data", str(npz_path), "--out", str(out), "--only", "mnist-fast",
                                       "--threshold", "0", "--results", str(results), "--epochs", "2",
                                       "--batch-size", "16", "--folds", "2"])

    assert status == 0
    text = results.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| mnist-fast")]
    assert [row.split(" | ")[0] for row in rows] == ["| mnist-fast", "| mnist-fast pseudo 0"]
    assert rows[0].endswith("|  |") and rows[1].count("42 of 42 (") == 2
    assert "- mnist-fast: `--pseudo-label 0` changes CV by" in text
    # Random digits: the labels read back are checked against the bench's, so some are wrong and counted.
    [errors_fold_0, _] = bench_pseudo_labels.label_errors(
        bench_pseudo_labels.read_run(out, "mnist-fast pseudo 0", "mnist-fast"), *npz_labels(npz_path))
    assert errors_fold_0[:2] == (42, 42) and errors_fold_0[2] + errors_fold_0[3] > 0

    again = tmp_path / "again.md"
    assert bench_pseudo_labels.main(["--data", str(npz_path), "--from", str(out), "--only", "mnist-fast",
                                     "--threshold", "0", "--results", str(again)]) == 0
    assert again.read_text().split("\n\n", 2)[2] == text.split("\n\n", 2)[2]
    assert "written again from them with `--from`" in again.read_text()


def npz_labels(path):
    from src import loaders

    (_, y_train), (_, y_test) = loaders.load_npz(path)
    return y_train, y_test
