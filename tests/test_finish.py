"""Tests of src/finish.py: the one way a run ends (probabilities, submission, record, finished, Kaggle's copy,
pictures), the kernels ending through it, and a run's last line."""

import fcntl
import json
from pathlib import Path

import numpy as np
import pytest

from src import config, data, files, finish, paths, plots, records, results, runs, submission
from src.errors import KitError

CODE = {"versions": {"python": "3"}, "git_commit": None, "git_dirty": None}


def make_dataset(train_rows: int = 40, test_rows: int = 12) -> data.Dataset:
    rng = np.random.default_rng(0)
    return data.Dataset(
        x_train=rng.integers(0, 256, size=(train_rows, 28, 28), dtype=np.uint8),
        y_train=np.arange(train_rows, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, size=(test_rows, 28, 28), dtype=np.uint8),
        y_test=np.arange(test_rows, dtype=np.uint8) % 10,
        source=Path("made-up.npz"),
        kind="npz",
    )


def make_result(dataset: data.Dataset, num_folds: int = 2) -> results.CrossValidation:
    """A k-fold result, right on most rows, with a fold history the learning curves can draw."""
    rng = np.random.default_rng(1)

    def probabilities(labels):
        logits = rng.normal(size=(len(labels), 10))
        logits[np.arange(len(labels)), labels] += 3.0
        return (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)

    oof, test = probabilities(dataset.y_train), probabilities(dataset.y_test)
    history = {"loss": [1.0, 0.5], "accuracy": [0.6, 0.8], "val_loss": [1.1, 0.6], "val_accuracy": [0.5, 0.7]}
    folds = [results.FoldResult(index, 1.5, validation, oof[validation],
                                results.accuracy(oof[validation], dataset.y_train[validation]), test,
                                results.accuracy(test, dataset.y_test), history)
             for index, validation in enumerate(np.array_split(np.arange(len(dataset.y_train)), num_folds))]
    return results.CrossValidation(folds=folds, oof_probabilities=oof, test_probabilities=test,
                                   oof_accuracy=results.accuracy(oof, dataset.y_train),
                                   test_accuracy=results.accuracy(test, dataset.y_test))


def start(tmp_path, kernel: str = "k") -> runs.Run:
    identity = runs.run_identity(config.RunConfig(kernel=kernel), "a" * 64)
    return runs.start_run(kernel, tmp_path, identity=identity)


def finish_run(run, trained_on: data.Dataset, **overrides) -> dict:
    """Finishes `run` with a result on `trained_on`; `overrides` replace `finish.finish_run`'s other arguments."""
    arguments = {"config": {"kernel": "k", "model": "seed_cnn", "folds": 2},
                 "data": records.data_summary(trained_on, "a" * 64), "seconds": 3.0, "code": CODE,
                 "dataset": trained_on, "draw_pictures": False, **overrides}
    return finish.finish_run(run, make_result(trained_on), **arguments)


def lock_is_free(run: runs.Run) -> bool:
    """Whether another handle (as another process would) takes the run's lock at once."""
    with open(run.workdir / runs.LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def run_state(run: runs.Run) -> str:
    return json.loads((run.workdir / runs.RUN_FILE).read_text())["state"]


# --- finish_run -----------------------------------------------------------------------------------


def test_finish_run_writes_probabilities_submission_record_in_order_then_marks_the_run_finished(
        tmp_path, monkeypatch):
    run = start(tmp_path)
    events = []

    def on_disk():
        return sorted(path.name for path in tmp_path.iterdir() if path.is_file())

    def spy(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            events.append((name, on_disk(), run_state(run), lock_is_free(run)))
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for module, name in ((records, "write_probabilities"), (submission, "write_submission"),
                         (records, "write_record"), (runs, "mark_finished")):
        spy(module, name)
    assert not lock_is_free(run)

    record = finish_run(run, make_dataset())

    # Each file is complete under its final name before the next begins; the run is running until the record is.
    npz, csv, json_name = run.path(".npz").name, run.path(".csv").name, run.path(".json").name
    assert events == [
        ("write_probabilities", [], "running", False),
        ("write_submission", [npz], "running", False),
        ("write_record", sorted([npz, csv]), "running", False),
        ("mark_finished", sorted([npz, csv, json_name]), "running", False),
    ]
    assert run_state(run) == "finished" and lock_is_free(run)
    assert runs.unfinished_runs("k", tmp_path, runs.read_run_file(run.workdir)["identity"]) == []
    assert record["outputs"] == {"submission": str(run.path(".csv")), "record": str(run.path(".json")),
                                 "probabilities": str(run.path(".npz")), "pictures": []}
    assert {key: value for key, value in record.items() if key != "outputs"} == records.read_record(run.path(".json"))
    assert submission.validate_submission(run.path(".csv")) == 12


def test_finish_run_keeps_the_configuration_data_and_extra_entries_in_the_record(tmp_path):
    dataset = make_dataset()
    run = start(tmp_path)
    record = finish_run(run, dataset, extra={"restored_from": "somewhere"}, seconds=12.345)
    result = make_result(dataset)

    assert record["run"] == run.name and record["kernel"] == "k"
    assert record["config"] == {"kernel": "k", "model": "seed_cnn", "folds": 2}
    assert record["data"] == {"source": "made-up.npz", "kind": "npz", "sha256": "a" * 64, "train_rows": 40,
                              "test_rows": 12, "test_labels": True}
    assert record["restored_from"] == "somewhere" and record["seconds"] == 12.35
    assert record["cv_mean"] == pytest.approx(result.cv_mean, abs=1e-6)
    assert record["oof_accuracy"] == pytest.approx(result.oof_accuracy, abs=1e-6)
    assert [fold["fold"] for fold in record["folds"]] == [0, 1]
    assert (record["submission"], record["probabilities"]) == (run.path(".csv").name, run.path(".npz").name)
    assert {key: record[key] for key in CODE} == CODE
    _, arrays = records.read_run(run.path(".json"))
    np.testing.assert_array_equal(arrays["test_probabilities"], result.test_probabilities)
    np.testing.assert_array_equal(arrays["oof_probabilities"], result.oof_probabilities)


def test_finish_run_with_an_invalid_submission_writes_no_record_and_leaves_the_run_to_resume(tmp_path):
    dataset = make_dataset()
    run = start(tmp_path)
    summary = {**records.data_summary(dataset, "a" * 64), "test_rows": 13}
    with pytest.raises(KitError, match="has 12 rows but the test split has 13"):
        finish_run(run, dataset, data=summary)
    assert not run.path(".json").exists() and not run.path(".csv").exists()
    assert run_state(run) == "running"
    runs.release(run)
    # The same command again resumes it and writes its outputs afresh.
    again = start(tmp_path)
    assert again.resumed and again.name == run.name and not run.path(".npz").exists()
    finish_run(again, dataset)
    assert run_state(again) == "finished"


def test_finish_run_copies_the_submission_to_kaggles_working_folder_on_kaggle(tmp_path, monkeypatch):
    dataset = make_dataset()
    working = tmp_path / "kaggle-working"
    monkeypatch.setenv(paths.KAGGLE_WORKING_ENV, str(working))
    local = finish_run(start(tmp_path / "local"), dataset)
    assert "kaggle_submission" not in local["outputs"] and not working.exists()

    monkeypatch.setenv(paths.KAGGLE_INPUT_ENV, str(tmp_path / "kaggle-input"))
    copy = working / paths.KAGGLE_SUBMISSION_NAME
    first = finish_run(start(tmp_path / "out"), dataset)
    assert first["outputs"]["kaggle_submission"] == str(copy)
    assert copy.read_bytes() == Path(first["outputs"]["submission"]).read_bytes()

    # A rerun's submission replaces it (the kit's own files are never replaced).
    files.write_text(copy, "ImageId,Label\n1,0\n")
    second = finish_run(start(tmp_path / "out", kernel="k2"), dataset)
    assert copy.read_bytes() == Path(second["outputs"]["submission"]).read_bytes()


def test_finish_run_draws_pictures_only_when_asked_and_given_the_data(tmp_path, monkeypatch):
    dataset = make_dataset()
    drawn = []
    draw = plots.draw_run_pictures

    def spy(folder, *args):
        drawn.append(folder)
        return draw(folder, *args)

    monkeypatch.setattr(plots, "draw_run_pictures", spy)
    skipped = [finish_run(start(tmp_path / "no-plots"), dataset, draw_pictures=False),
               finish_run(start(tmp_path / "no-data"), dataset, draw_pictures=True, dataset=None)]
    assert drawn == [] and [record["outputs"]["pictures"] for record in skipped] == [[], []]
    assert list(tmp_path.rglob("*.png")) == []

    run = start(tmp_path / "plots")
    record = finish_run(run, dataset, draw_pictures=True)
    assert drawn == [run.workdir]
    assert [Path(path).name for path in record["outputs"]["pictures"]] == list(plots.PICTURE_PIXELS)
    assert all(Path(path).parent == run.workdir and Path(path).is_file() for path in record["outputs"]["pictures"])


def test_finish_run_draws_the_pictures_last_so_a_failed_picture_loses_nothing(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("matplotlib broke")

    monkeypatch.setattr(plots, "draw_run_pictures", broken)
    run = start(tmp_path)
    with pytest.raises(RuntimeError, match="matplotlib broke"):
        finish_run(run, make_dataset(), draw_pictures=True)
    assert run.path(".npz").is_file() and run.path(".csv").is_file() and run.path(".json").is_file()
    assert run_state(run) == "finished" and lock_is_free(run)


# --- kernels end through it -----------------------------------------------------------------------


def test_kernel_run_ends_through_finish_run_and_leaves_its_run_finished(fake_run, npz_path, tmp_path, monkeypatch):
    finished = []
    finish_run = finish.finish_run

    def spy(run, *args, **kwargs):
        finished.append(run)
        return finish_run(run, *args, **kwargs)

    monkeypatch.setattr(finish, "finish_run", spy)
    record = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])

    [run] = finished
    assert run.name == record["run"] and run_state(run) == "finished" and lock_is_free(run)
    assert record["outputs"]["record"] == str(tmp_path / f"{run.name}.json")
    assert set(record["distribution"]) == {"strategy", "requested", "replicas", "workers", "global_batch_size"}


# --- the last line --------------------------------------------------------------------------------


def summary_record(**entries) -> dict:
    record = {"config": {"folds": 5}, "cv_mean": 0.98765, "cv_std": 0.00123, "oof_accuracy": 0.9876,
              "test_accuracy": 0.99, "outputs": {"submission": "out/k-1.csv"}}
    return {**record, **entries}


def test_summary_line_names_the_submission_and_the_scores_a_run_has():
    assert finish.summary_line(summary_record()) == (
        "submission: out/k-1.csv  cv_accuracy=0.9877±0.0012  oof_accuracy=0.9876  test_accuracy=0.9900")
    assert finish.summary_line(summary_record(config={"folds": 5, "fold_index": 2}, test_accuracy=None)) == (
        "submission: out/k-1.csv  fold 2 of 5: validation_accuracy=0.9877")
    assert finish.summary_line(summary_record(config={"folds": 1}, oof_accuracy=None)) == (
        "submission: out/k-1.csv  test_accuracy=0.9900")
    assert finish.summary_line(summary_record(cv_mean=None, test_accuracy=None)) == (
        "submission: out/k-1.csv  accuracy=unknown (no labelled data held out)")
    assert finish.summary_line({"worker": {"index": 1, "count": 2}, "outputs": {}}) == (
        "worker 1 of 2: trained; the chief (worker 0) wrote the submission")
