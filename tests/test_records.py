"""Tests of src/records.py: a run's record and probabilities, written once, and found and read back."""

import json
import logging

import numpy as np
import pytest

from conftest import npz_with_lying_header
from src import cli, console, records, results, runs
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


# Records as a download or a hand edit may leave them: deeply nested, wrongly typed, naming files elsewhere.
DAMAGED = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "data-list": {**fake_record("data-list"), "data": [1, 2]},
    "folds-dict": {**fake_record("folds-dict"), "folds": {"0": 1}},
    "fold-history": {**fake_record("fold-history"), "folds": [{"fold": 0, "history": {"loss": "low"}}]},
    "cv-text": {**fake_record("cv-text"), "cv_mean": "0.99"},
    "blend-list": {**fake_record("blend-list"), "blend": ["a", "b"]},
    "folds-text": fake_record("folds-text", folds="5"),
    "seed-list": fake_record("seed-list", seed=[1]),
    "huge-number": {**fake_record("huge-number"), "seconds": 10**400},
    "nested-config": fake_record("nested-config", model={"a": {"b": {"c": [[[[[[[[1]]]]]]]]}}}),
    "run-outside": {**fake_record("a"), "run": "../../elsewhere"},
    "probabilities-outside": {**fake_record("probabilities-outside"), "probabilities": "/etc/passwd"},
    "submission-outside": {**fake_record("submission-outside"), "submission": "../x.csv"},
    "run-escape": {**fake_record("a"), "run": "mnist-cnn-\x1b[2J"},
}


def write_damaged(folder, name, value) -> None:
    (folder / f"{name}.json").write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")


def test_find_records_skips_a_deep_or_wrongly_typed_record_with_one_warning_each(tmp_path, caplog):
    write_json(tmp_path / "good.json", fake_record("good"))
    nested = {**fake_record("nested-deep"), "extra": json.loads("[" * 20 + "]" * 20)}
    write_json(tmp_path / "nested-deep.json", nested)
    for name, value in DAMAGED.items():
        write_damaged(tmp_path, name, value)
    with caplog.at_level(logging.WARNING, logger="src.records"):
        found = records.find_records(tmp_path)
    assert [record["run"] for _, record in found] == ["good"]
    warned = sorted(message.split(":")[0].removeprefix(f"skipping {tmp_path}/") for message in caplog.messages)
    assert warned == sorted(f"{name}.json" for name in [*DAMAGED, "nested-deep"])
    assert all("\n" not in message and "\x1b" not in message for message in caplog.messages)


def test_runs_lists_the_good_runs_of_a_folder_with_damaged_records_and_no_traceback(tmp_path, capsys):
    write_json(tmp_path / "good.json", fake_record("good"))
    for name, value in DAMAGED.items():
        write_damaged(tmp_path, name, value)
    assert cli.main(["runs", "--dir", str(tmp_path)]) == 0
    printed = capsys.readouterr()
    assert [line.split()[0] for line in printed.out.splitlines()[2:]] == ["good"]
    assert "Traceback" not in printed.err and printed.err.count("skipping") == len(DAMAGED)


def test_record_problem_names_the_field(tmp_path):
    assert records.record_problem(fake_record("a")) is None
    assert records.record_problem(DAMAGED["data-list"]) == "data is [1, 2]"
    assert records.record_problem(DAMAGED["folds-text"]) == "config.folds is '5'"
    assert records.record_problem(DAMAGED["fold-history"]) == "folds[0].history is {'loss': 'low'}"
    assert records.record_problem(DAMAGED["probabilities-outside"]) == "probabilities is '/etc/passwd'"
    assert records.record_problem(DAMAGED["run-escape"]) == "run is 'mnist-cnn-\\x1b[2J'"
    assert records.record_problem(DAMAGED["nested-config"]) == "it nests more than 8 levels deep"


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
    with pytest.raises(KitError, match="r.npz is not a run's probabilities file or is damaged"):
        records.read_run(run.path(".json"))
    run.path(".npz").unlink()
    np.savez(run.path(".npz"), test_probabilities=np.zeros((3, 9)))
    with pytest.raises(KitError, match=r"test_probabilities must be floats of shape \(rows, 10\).*\(3, 9\)"):
        records.read_run(run.path(".json"))
    run.path(".npz").unlink()
    np.savez(run.path(".npz"), oof_probabilities=np.zeros((3, 10)))
    with pytest.raises(KitError, match="r.npz lacks test_probabilities; a run's probabilities file needs"):
        records.read_run(run.path(".json"))
    write_json(tmp_path / "other.json", {"id": "someone/kernel"})
    with pytest.raises(KitError, match="not a run record with saved probabilities"):
        records.read_run(tmp_path / "other.json")
    with pytest.raises(KitError, match="Cannot read run record"):
        records.read_record(tmp_path / "absent.json")


@pytest.mark.parametrize("name", ["deep", "probabilities-outside", "cv-text", "blend-list"])
def test_read_run_of_a_damaged_record_is_one_line(tmp_path, name):
    write_damaged(tmp_path, name, DAMAGED[name])
    with pytest.raises(KitError, match=f"{name}.json(: it is nested too deeply| is a damaged run record)") as raised:
        records.read_run(tmp_path / f"{name}.json")
    assert "\n" not in str(raised.value)


def test_blend_of_a_run_whose_probabilities_claim_terabytes_is_one_line(tmp_path, capsys):
    for name in ("a", "b"):
        run = runs.Run(out_dir=tmp_path, name=name)
        records.write_record(run, fake_record(name))
        records.write_probabilities(run, make_result())
    # b's test probabilities claim 10**9 rows of a thousand floats: 4 TB.
    npz_with_lying_header(tmp_path / "b.npz", {"test_probabilities": make_result().test_probabilities},
                          "test_probabilities", (10**9, 1000))

    assert cli.main(["blend", "a", "b", "--dir", str(tmp_path), "--no-plots"]) == console.EXIT_USAGE
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "b.npz: test_probabilities claims shape (1,000,000,000, 1,000) " \
        "(4,000,000,000,000 bytes), more than the 1,073,741,824 an array may have" in error
