"""Tests of src/records.py: a run's record and probabilities, written once, and found and read back."""

import json
import logging

import numpy as np
import pytest

from src import records, results, runs
from src.errors import KitError


def fake_record(run: str, **config) -> dict:
    """A run record with only the keys that make it one, and where its probabilities are."""
    return {
        "run": run,
        "kernel": "mnist-cnn",
        "config": {"kernel": "mnist-cnn", "model": "seed_cnn", "folds": 5, **config},
        "data": {"source": "input/mnist.npz", "sha256": "ab" * 32},
        "submission": f"{run}.csv",
        "probabilities": f"{run}.npz",
    }


def write_json(path, value) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


def make_result(test_rows: int = 4, train_rows: int | None = 6) -> results.CrossValidation:
    rng = np.random.default_rng(0)
    oof = None if train_rows is None else rng.dirichlet(np.ones(10), size=train_rows).astype(np.float32)
    return results.CrossValidation(folds=[], oof_probabilities=oof,
                                   test_probabilities=rng.dirichlet(np.ones(10), size=test_rows).astype(np.float32),
                                   oof_accuracy=None, test_accuracy=None)


# --- finding records ------------------------------------------------------------------------------


def test_find_records_skips_broken_and_foreign_json_with_one_warning_each(tmp_path, caplog):
    write_json(tmp_path / "a.json", fake_record("a"))
    write_json(tmp_path / "kernel-metadata.json", {"id": "someone/mnist-cnn", "title": "mnist-cnn"})
    write_json(tmp_path / "list.json", [1, 2, 3])
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with caplog.at_level(logging.WARNING, logger="src.records"):
        found = records.find_records(tmp_path)
    assert [record["run"] for _, record in found] == ["a"]
    warned = sorted(message.split(":")[0] for message in caplog.messages)
    assert warned == sorted(f"skipping {tmp_path / name}" for name in
                            ("kernel-metadata.json", "list.json", "broken.json", "binary.json"))
    assert all("\n" not in message for message in caplog.messages)


def test_find_records_of_a_missing_folder_is_a_kit_error(tmp_path):
    with pytest.raises(KitError, match="No such folder"):
        records.find_records(tmp_path / "nowhere")


def test_find_record_takes_a_name_or_any_of_the_runs_paths(tmp_path):
    write_json(tmp_path / "mnist-cnn-20250101T000000Z.json", fake_record("mnist-cnn-20250101T000000Z"))
    expected = tmp_path / "mnist-cnn-20250101T000000Z.json"
    for given in ("mnist-cnn-20250101T000000Z", str(expected), str(expected.with_suffix(".csv")),
                  "elsewhere/mnist-cnn-20250101T000000Z.npz", str(tmp_path / "mnist-cnn-20250101T000000Z")):
        assert records.find_record(given, tmp_path) == expected
    with pytest.raises(KitError, match="Run not found.*Received: 'mnist-cnn-1999'"):
        records.find_record("mnist-cnn-1999", tmp_path)


def test_is_run_record_needs_run_kernel_and_config():
    assert records.is_run_record(fake_record("a"))
    for broken in ({**fake_record("a"), "run": 1}, {**fake_record("a"), "config": None}, [fake_record("a")],
                   {"run": "a", "config": {}}):
        assert not records.is_run_record(broken)


# --- writing and reading records and probabilities ------------------------------------------------


def test_write_record_and_probabilities_never_replace_and_read_back(tmp_path):
    run = runs.Run(out_dir=tmp_path, name="mnist-cnn-1")
    result = make_result()
    record = fake_record(run.name)
    assert records.write_record(run, record) == tmp_path / "mnist-cnn-1.json"
    assert records.write_probabilities(run, result) == tmp_path / "mnist-cnn-1.npz"
    with pytest.raises(KitError, match="never overwrites"):
        records.write_record(run, {**record, "run": "other"})
    with pytest.raises(KitError, match="never overwrites"):
        records.write_probabilities(run, make_result(test_rows=2))

    read, arrays = records.read_run(tmp_path / "mnist-cnn-1.json")
    assert read == record == records.read_record(tmp_path / "mnist-cnn-1.json")
    assert set(arrays) == {"test_probabilities", "oof_probabilities"}
    np.testing.assert_array_equal(arrays["test_probabilities"], result.test_probabilities)
    np.testing.assert_array_equal(arrays["oof_probabilities"], result.oof_probabilities)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mnist-cnn-1.json", "mnist-cnn-1.npz"]


def test_write_probabilities_of_one_fold_holds_the_test_split_only(tmp_path):
    run = runs.Run(out_dir=tmp_path, name="mnist-cnn-1")
    records.write_probabilities(run, make_result(train_rows=None))
    with np.load(run.path(".npz")) as saved:
        assert saved.files == ["test_probabilities"]


def test_read_run_names_what_is_missing_or_damaged(tmp_path):
    run = runs.Run(out_dir=tmp_path, name="r")
    records.write_record(run, fake_record("r"))
    with pytest.raises(KitError, match="r.npz is missing: run r's probabilities"):
        records.read_run(run.path(".json"))
    run.path(".npz").write_bytes(b"not a zip")
    with pytest.raises(KitError, match="Cannot read .*r.npz.*damaged"):
        records.read_run(run.path(".json"))
    run.path(".npz").unlink()
    np.savez(run.path(".npz"), test_probabilities=np.zeros((3, 9)))
    with pytest.raises(KitError, match=r"test_probabilities must have shape \(rows, 10\).*\(3, 9\)"):
        records.read_run(run.path(".json"))
    run.path(".npz").unlink()
    np.savez(run.path(".npz"), oof_probabilities=np.zeros((3, 10)))
    with pytest.raises(KitError, match="holds no test_probabilities"):
        records.read_run(run.path(".json"))
    write_json(tmp_path / "other.json", {"id": "someone/kernel"})
    with pytest.raises(KitError, match="not a run record with saved probabilities"):
        records.read_run(tmp_path / "other.json")
    with pytest.raises(KitError, match="Cannot read run record"):
        records.read_record(tmp_path / "absent.json")
