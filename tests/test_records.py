"""Tests of src/records.py: the runs table (`python -m src runs`) and blends (`python -m src blend`)."""

import csv
import io
import json
import logging

import numpy as np
import pytest

from src import cli, data, paths, plots, records, training
from src.errors import KitError


def fake_record(run: str, *, kernel: str = "mnist-cnn", model: str = "seed_cnn", folds: int = 5,
                cv_mean: float | None = None, test_accuracy: float | None = None, seconds: float = 60.0,
                **config) -> dict:
    """A run record with only the keys the runs table reads."""
    return {
        "run": run,
        "kernel": kernel,
        "config": {"kernel": kernel, "model": model, "folds": folds, "epochs": 12, "seed": 0, "quiet": False,
                   "out": None, "data": None, **config},
        "data": {"source": "input/mnist.npz", "sha256": "ab" * 32},
        "cv_mean": cv_mean,
        "cv_std": None if cv_mean is None else 0.001,
        "test_accuracy": test_accuracy,
        "seconds": seconds,
        "submission": f"{run}.csv",
    }


def write_json(path, value) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


# --- reading records and submissions -------------------------------------------------------------------


def test_find_records_skips_broken_and_foreign_json_with_one_warning_each(tmp_path, caplog):
    write_json(tmp_path / "a.json", fake_record("a", cv_mean=0.99))
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


def test_read_kaggle_submissions_keeps_the_scored_entry_of_each_file(tmp_path, caplog):
    lines = [
        {"file": "a.csv", "message": "first", "submitted_at": "t1", "public_score": 0.97},
        {"file": "a.csv", "message": "again", "submitted_at": "t2", "public_score": None},
        {"file": "b.csv", "message": "pending", "submitted_at": "t3", "public_score": None},
        "not an entry",
    ]
    (tmp_path / paths.KAGGLE_SUBMISSIONS_LOG_NAME).write_text(
        "\n".join(json.dumps(line) for line in lines) + "\n{broken\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="src.records"):
        submissions = records.read_kaggle_submissions(tmp_path)
    assert submissions["a.csv"]["public_score"] == 0.97
    assert submissions["b.csv"]["message"] == "pending"
    assert set(submissions) == {"a.csv", "b.csv"}
    assert len(caplog.messages) == 2
    assert records.read_kaggle_submissions(tmp_path / "elsewhere") == {}


# --- the runs table ------------------------------------------------------------------------------------


def test_runs_table_sorts_by_cv_then_runs_without_cv_by_test_accuracy():
    found = [
        fake_record("low-cv", cv_mean=0.95, test_accuracy=0.999),
        fake_record("one-fold-good", folds=1, cv_mean=0.985, test_accuracy=0.985),
        fake_record("high-cv", cv_mean=0.99),
        fake_record("one-fold-unknown", folds=1),
        fake_record("one-fold-bad", folds=1, cv_mean=0.9, test_accuracy=0.9),
    ]
    _, rows = records.runs_table(found)
    assert [row["run"] for row in rows] == ["high-cv", "low-cv", "one-fold-good", "one-fold-bad", "one-fold-unknown"]
    # With one fold, the record's cv_mean is the test accuracy, not a cross-validation score.
    assert rows[2]["cv_mean"] is None and rows[2]["test_accuracy"] == 0.985


def test_runs_table_filters_by_kernel_and_model():
    found = [
        fake_record("a", cv_mean=0.9),
        fake_record("b", model="mlp", cv_mean=0.8),
        fake_record("c", kernel="other", model="mlp", cv_mean=0.7),
    ]
    assert [row["run"] for row in records.runs_table(found, model="mlp")[1]] == ["b", "c"]
    assert [row["run"] for row in records.runs_table(found, kernel="mnist-cnn")[1]] == ["a", "b"]
    assert [row["run"] for row in records.runs_table(found, kernel="other", model="seed_cnn")[1]] == []


def test_runs_table_shows_only_the_settings_that_differ():
    found = [
        fake_record("a", cv_mean=0.9, optimizer="adam", batch_size=128),
        fake_record("b", cv_mean=0.8, optimizer="adadelta", batch_size=128, quiet=True),
        {**fake_record("c", cv_mean=0.7), "config": {"kernel": "blend", "model": "blend", "folds": 5}},
    ]
    settings, rows = records.runs_table(found)
    # The blend lacks epochs and batch_size; quiet never counts.
    assert settings == ["optimizer"]
    assert rows[0]["settings"] == {"optimizer": "adam"}
    assert rows[2]["settings"] == {"optimizer": None}
    other_data = {**fake_record("d", cv_mean=0.6), "data": {"source": "input/digit-recognizer", "sha256": "cd" * 32}}
    settings, rows = records.runs_table([*found, other_data])
    assert settings == ["optimizer", "data"]
    assert rows[3]["settings"]["data"] == "digit-recognizer:cdcdcdcd"


def test_runs_table_marks_kaggle_submissions_and_their_scores():
    found = [fake_record("a", cv_mean=0.9), fake_record("b", cv_mean=0.8), fake_record("c", cv_mean=0.7)]
    submissions = {"a.csv": {"file": "a.csv", "public_score": 0.98714},
                   "b.csv": {"file": "b.csv", "public_score": None}}
    _, rows = records.runs_table(found, submissions)
    assert [(row["submitted"], row["public_score"]) for row in rows] == [(True, 0.98714), (True, None), (False, None)]


def test_format_runs_table_in_each_format():
    settings, rows = records.runs_table([
        fake_record("a", cv_mean=0.99123, test_accuracy=0.9925, seconds=90, optimizer="adam|x"),
        fake_record("b", folds=1, seconds=30, optimizer="adadelta"),
    ], {"a.csv": {"file": "a.csv", "public_score": 0.98714}})

    parsed = list(csv.DictReader(io.StringIO(records.format_runs_table(settings, rows, "csv"))))
    assert [row["run"] for row in parsed] == ["a", "b"]
    assert float(parsed[0]["cv_mean"]) == pytest.approx(0.99123)
    assert float(parsed[0]["minutes"]) == pytest.approx(1.5)
    assert (parsed[0]["kaggle_submitted"], parsed[0]["public_score"]) == ("yes", "0.98714")
    assert (parsed[1]["cv_mean"], parsed[1]["test_accuracy"], parsed[1]["optimizer"]) == ("", "", "adadelta")

    markdown = records.format_runs_table(settings, rows, "markdown").splitlines()
    assert markdown[0] == ("| run | kernel | model | optimizer | folds | cv accuracy | test accuracy | minutes "
                           "| kaggle |")
    assert markdown[1] == "| --- " * 9 + "|"
    assert markdown[2] == ("| a | mnist-cnn | seed_cnn | adam\\|x | 5 | 0.9912 ± 0.0010 | 0.9925 | 1.5 "
                           "| yes 0.98714 |")
    assert markdown[3] == "| b | mnist-cnn | seed_cnn | adadelta | 1 | - | - | 0.5 | no |"

    table = records.format_runs_table(settings, rows, "table").splitlines()
    assert len(table) == 4
    assert table[0].split() == ["run", "kernel", "model", "optimizer", "folds", "cv", "accuracy", "test", "accuracy",
                                "minutes", "kaggle"]
    # Aligned: every column starts where its header does.
    start = table[0].index("cv accuracy")
    assert table[2][start:].startswith("0.9912 ± 0.0010") and table[3][start:].startswith("-")
    with pytest.raises(KitError, match="Unknown format"):
        records.format_runs_table(settings, rows, "html")


def test_runs_command_prints_the_table_and_warns_on_stderr(tmp_path, capsys):
    write_json(tmp_path / "a.json", fake_record("a", cv_mean=0.9))
    write_json(tmp_path / "b.json", fake_record("b", model="mlp", cv_mean=0.95))
    (tmp_path / "broken.json").write_text("nope", encoding="utf-8")
    assert cli.main(["runs", "--dir", str(tmp_path), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert [row["run"] for row in csv.DictReader(io.StringIO(out))] == ["b", "a"]
    assert "broken.json" in err and "broken.json" not in out
    assert cli.main(["runs", "--dir", str(tmp_path), "--model", "nothing"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "match the filter" in err
    assert cli.main(["runs", "--dir", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: No such folder")


# --- blends --------------------------------------------------------------------------------------------


def read_arrays(out_dir, record) -> dict:
    with np.load(out_dir / record["probabilities"]) as saved:
        return {key: saved[key] for key in saved.files}


def test_find_record_takes_a_name_or_any_of_the_runs_paths(tmp_path):
    write_json(tmp_path / "mnist-cnn-20250101T000000Z.json", fake_record("mnist-cnn-20250101T000000Z"))
    expected = tmp_path / "mnist-cnn-20250101T000000Z.json"
    for given in ("mnist-cnn-20250101T000000Z", str(expected), str(expected.with_suffix(".csv")),
                  "elsewhere/mnist-cnn-20250101T000000Z.npz", str(tmp_path / "mnist-cnn-20250101T000000Z")):
        assert records.find_record(given, tmp_path) == expected
    with pytest.raises(KitError, match="Run not found.*Received: 'mnist-cnn-1999'"):
        records.find_record("mnist-cnn-1999", tmp_path)


def test_blend_of_a_run_with_itself_equals_the_run(fake_run, npz_path, tmp_path):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    path = tmp_path / f"{run['run']}.json"
    blend = records.blend_runs([path, path])

    assert blend["kernel"] == "blend" and blend["run"].startswith("blend-")
    original, blended = read_arrays(tmp_path, run), read_arrays(tmp_path, blend)
    np.testing.assert_allclose(blended["test_probabilities"], original["test_probabilities"], rtol=1e-6)
    np.testing.assert_allclose(blended["oof_probabilities"], original["oof_probabilities"], rtol=1e-6)
    assert (tmp_path / blend["submission"]).read_text() == (tmp_path / run["submission"]).read_text()
    for key in ("cv_mean", "cv_std", "oof_accuracy", "test_accuracy"):
        assert blend[key] == pytest.approx(run[key], abs=1e-6), key
    assert [fold["validation_accuracy"] for fold in blend["folds"]] == pytest.approx(
        [fold["validation_accuracy"] for fold in run["folds"]], abs=1e-6)
    assert blend["blend"] == {"runs": [run["run"], run["run"]], "weights": [0.5, 0.5], "out_of_fold": True}
    # A record of its own, which the runs table lists.
    assert records.read_record(tmp_path / f"{blend['run']}.json")["submission"] == blend["submission"]
    assert blend["run"] in [record["run"] for _, record in records.find_records(tmp_path)]
    assert {name for name in plots.PICTURE_PIXELS if (tmp_path / blend["run"] / name).is_file()} == {
        plots.CONFUSION_OOF, plots.MISTAKES_OOF, plots.CONFUSION_TEST}


def test_blend_weights_average_the_probabilities_and_never_overwrite(fake_run, npz_path, tmp_path):
    first = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    second = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path), "--model", "mlp"])
    paths = [tmp_path / f"{run['run']}.json" for run in (first, second)]
    blend = records.blend_runs(paths, [3, 1], plots=False)

    a, b, mixed = (read_arrays(tmp_path, record) for record in (first, second, blend))
    for key in ("test_probabilities", "oof_probabilities"):
        assert not np.allclose(a[key], b[key])
        np.testing.assert_allclose(mixed[key], 0.75 * a[key] + 0.25 * b[key], rtol=1e-5)
    (_, y_train), (_, y_test) = data.load_npz(npz_path)
    assert blend["oof_accuracy"] == pytest.approx(training.accuracy(mixed["oof_probabilities"], y_train), abs=1e-6)
    assert blend["test_accuracy"] == pytest.approx(training.accuracy(mixed["test_probabilities"], y_test), abs=1e-6)
    assert blend["outputs"]["pictures"] == [] and list((tmp_path / blend["run"]).glob("*.png")) == []

    again = records.blend_runs(paths, [3, 1], plots=False)
    assert again["run"] != blend["run"]
    assert (tmp_path / again["submission"]).read_text() == (tmp_path / blend["submission"]).read_text()


def test_blend_of_runs_with_different_folds_blends_the_test_split_only(fake_run, npz_path, tmp_path):
    first = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    other_seed = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path), "--seed", "1"])
    blend = records.blend_runs([tmp_path / f"{run['run']}.json" for run in (first, other_seed)], plots=False)
    arrays = read_arrays(tmp_path, blend)
    assert set(arrays) == {"test_probabilities"}
    assert blend["oof_accuracy"] is None and blend["cv_mean"] is None and blend["folds"] == []
    assert blend["config"]["folds"] is None
    assert blend["test_accuracy"] is not None


def test_blend_with_its_data_gone_writes_the_blend_without_accuracies(fake_run, npz_path, tmp_path):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path / "out")])
    moved = npz_path.rename(tmp_path / "moved.npz")
    path = tmp_path / "out" / f"{run['run']}.json"
    blend = records.blend_runs([path, path])
    assert blend["oof_accuracy"] is None and blend["test_accuracy"] is None
    assert blend["outputs"]["pictures"] == []
    found_again = records.blend_runs([path, path], data_path=str(moved))
    assert found_again["oof_accuracy"] == pytest.approx(run["oof_accuracy"], abs=1e-6)


def test_blend_rejects_bad_weights_one_run_and_runs_of_other_data(fake_run, npz_path, competition_dir, tmp_path):
    first = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    other = fake_run(["--no-plots", "--data", str(competition_dir), "--out", str(tmp_path)])
    path, other_path = (tmp_path / f"{run['run']}.json" for run in (first, other))
    cases = [
        (([path, path], [1]), "one weight per run: 2 runs, 1 weights"),
        (([path, path], [1, -1]), "non-negative"),
        (([path, path], [0, 0]), "not all zero"),
        (([path, path], [1, float("nan")]), "finite"),
        (([path], None), "at least two runs"),
        (([path, other_path], None), "different data"),
    ]
    before = sorted(tmp_path.iterdir())
    for (record_paths, weights), message in cases:
        with pytest.raises(KitError, match=message):
            records.blend_runs(record_paths, weights)
    assert sorted(tmp_path.iterdir()) == before  # nothing half-written


def test_blend_of_a_run_whose_probabilities_are_missing_names_the_file(fake_run, npz_path, tmp_path):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    (tmp_path / run["probabilities"]).unlink()
    with pytest.raises(KitError, match=f"{run['run']}.npz is missing"):
        records.blend_runs([tmp_path / f"{run['run']}.json"] * 2)


def test_blend_command_prints_the_submission_line(fake_run, npz_path, tmp_path, capsys):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    capsys.readouterr()
    assert cli.main(["blend", run["run"], run["run"], "--dir", str(tmp_path), "--weights", "1", "2",
                     "--no-plots"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"submission: {tmp_path}/blend-") and f"cv_accuracy={run['cv_mean']:.4f}" in last
    assert cli.main(["blend", run["run"], "missing-run", "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: Run not found")
