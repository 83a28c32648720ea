"""Tests of src/runs_table.py: the runs table (`python -m src runs`), best CV first, with the settings that differ."""

import csv
import io
import json

import pytest

from src import cli, runs_table
from src.errors import KitError


def fake_record(run: str, *, kernel: str = "mnist-cnn", model: str = "seed_cnn", folds: int = 5,
                cv_mean: float | None = None, test_accuracy: float | None = None, seconds: float = 60.0,
                **config) -> dict:
    """A run record with only the keys the runs table reads."""
    return {
        "run": run,
        "kernel": kernel,
        "config": {"kernel": kernel, "model": model, "folds": folds, "epochs": 12, "seed": 0, "quiet": False,
                   "verbose": False, "out": None, "data": None, **config},
        "data": {"source": "input/mnist.npz", "sha256": "ab" * 32},
        "cv_mean": cv_mean,
        "cv_std": None if cv_mean is None else 0.001,
        "test_accuracy": test_accuracy,
        "seconds": seconds,
        "submission": f"{run}.csv",
    }


def write_json(path, value) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


# --- the runs table ------------------------------------------------------------------------------------


def test_runs_table_sorts_by_cv_then_runs_without_cv_by_test_accuracy():
    found = [
        fake_record("low-cv", cv_mean=0.95, test_accuracy=0.999),
        fake_record("one-fold-good", folds=1, cv_mean=0.985, test_accuracy=0.985),
        fake_record("high-cv", cv_mean=0.99),
        fake_record("one-fold-unknown", folds=1),
        fake_record("one-fold-bad", folds=1, cv_mean=0.9, test_accuracy=0.9),
    ]
    _, rows = runs_table.runs_table(found)
    assert [row["run"] for row in rows] == ["high-cv", "low-cv", "one-fold-good", "one-fold-bad", "one-fold-unknown"]
    # With one fold, the record's cv_mean is the test accuracy, not a cross-validation score.
    assert rows[2]["cv_mean"] is None and rows[2]["test_accuracy"] == 0.985


def test_runs_table_filters_by_kernel_and_model():
    found = [
        fake_record("a", cv_mean=0.9),
        fake_record("b", model="mlp", cv_mean=0.8),
        fake_record("c", kernel="other", model="mlp", cv_mean=0.7),
    ]
    assert [row["run"] for row in runs_table.runs_table(found, model="mlp")[1]] == ["b", "c"]
    assert [row["run"] for row in runs_table.runs_table(found, kernel="mnist-cnn")[1]] == ["a", "b"]
    assert [row["run"] for row in runs_table.runs_table(found, kernel="other", model="seed_cnn")[1]] == []


def test_runs_table_shows_only_the_settings_that_differ():
    found = [
        fake_record("a", cv_mean=0.9, optimizer="adam", batch_size=128),
        fake_record("b", cv_mean=0.8, optimizer="adadelta", batch_size=128, quiet=True, verbose=True),
        {**fake_record("c", cv_mean=0.7), "config": {"kernel": "blend", "model": "blend", "folds": 5}},
    ]
    settings, rows = runs_table.runs_table(found)
    # The blend lacks epochs and batch_size; quiet and verbose never count.
    assert settings == ["optimizer"]
    assert rows[0]["settings"] == {"optimizer": "adam"}
    assert rows[2]["settings"] == {"optimizer": None}
    other_data = {**fake_record("d", cv_mean=0.6), "data": {"source": "input/digit-recognizer", "sha256": "cd" * 32}}
    settings, rows = runs_table.runs_table([*found, other_data])
    assert settings == ["optimizer", "data"]
    assert rows[3]["settings"]["data"] == "digit-recognizer:cdcdcdcd"


def test_runs_table_marks_kaggle_submissions_and_their_scores():
    found = [fake_record("a", cv_mean=0.9), fake_record("b", cv_mean=0.8), fake_record("c", cv_mean=0.7)]
    submissions = {"a.csv": {"file": "a.csv", "public_score": 0.98714},
                   "b.csv": {"file": "b.csv", "public_score": None}}
    _, rows = runs_table.runs_table(found, submissions)
    assert [(row["submitted"], row["public_score"]) for row in rows] == [(True, 0.98714), (True, None), (False, None)]


def test_format_runs_table_in_each_format():
    settings, rows = runs_table.runs_table([
        fake_record("a", cv_mean=0.99123, test_accuracy=0.9925, seconds=90, optimizer="adam|x"),
        fake_record("b", folds=1, seconds=30, optimizer="adadelta"),
    ], {"a.csv": {"file": "a.csv", "public_score": 0.98714}})

    parsed = list(csv.DictReader(io.StringIO(runs_table.format_runs_table(settings, rows, "csv"))))
    assert [row["run"] for row in parsed] == ["a", "b"]
    assert float(parsed[0]["cv_mean"]) == pytest.approx(0.99123)
    assert float(parsed[0]["minutes"]) == pytest.approx(1.5)
    assert (parsed[0]["kaggle_submitted"], parsed[0]["public_score"]) == ("yes", "0.98714")
    assert (parsed[1]["cv_mean"], parsed[1]["test_accuracy"], parsed[1]["optimizer"]) == ("", "", "adadelta")

    markdown = runs_table.format_runs_table(settings, rows, "markdown").splitlines()
    assert markdown[0] == ("| run | kernel | model | optimizer | folds | cv accuracy | test accuracy | minutes "
                           "| kaggle |")
    assert markdown[1] == "| --- " * 9 + "|"
    assert markdown[2] == ("| a | mnist-cnn | seed_cnn | adam\\|x | 5 | 0.9912 ± 0.0010 | 0.9925 | 1.5 "
                           "| yes 0.98714 |")
    assert markdown[3] == "| b | mnist-cnn | seed_cnn | adadelta | 1 | - | - | 0.5 | no |"

    table = runs_table.format_runs_table(settings, rows, "table").splitlines()
    assert len(table) == 4
    assert table[0].split() == ["run", "kernel", "model", "optimizer", "folds", "cv", "accuracy", "test", "accuracy",
                                "minutes", "kaggle"]
    # Aligned: every column starts where its header does.
    start = table[0].index("cv accuracy")
    assert table[2][start:].startswith("0.9912 ± 0.0010") and table[3][start:].startswith("-")
    with pytest.raises(KitError, match="Unknown format"):
        runs_table.format_runs_table(settings, rows, "html")


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


def test_runs_table_marks_runs_whose_training_data_held_test_images():
    clean = fake_record("clean", cv_mean=0.99)
    leaking = {**fake_record("leaking", cv_mean=0.9999), "leaks": {"test_in_train": 27990, "test_rows": 28000}}
    settings, rows = runs_table.runs_table([clean, leaking])
    assert [(row["run"], row["test_leaks"]) for row in rows] == [("leaking", 27990), ("clean", 0)]

    table = runs_table.format_runs_table(settings, rows, "table").splitlines()
    assert table[0].split()[-1] == "leak"
    assert table[2].endswith("27,990 test images") and not table[3].endswith("images")
    parsed = list(csv.DictReader(io.StringIO(runs_table.format_runs_table(settings, rows, "csv"))))
    assert [row["test_leaks"] for row in parsed] == ["27990", "0"]
    # Without a leaking run the table has no leak column.
    assert "leak" not in runs_table.format_runs_table(*runs_table.runs_table([clean]), "table")


def test_runs_table_finds_a_kernel_outputs_submission_by_its_run():
    record = fake_record("mnist-cnn-20250101T000000Z", cv_mean=0.99)
    submissions = {"submission.csv": {"file": "submission.csv", "run": record["run"], "public_score": 0.99128}}
    _, rows = runs_table.runs_table([record], submissions)
    assert (rows[0]["submitted"], rows[0]["public_score"]) == (True, 0.99128)
    assert runs_table.cv_public_points(rows) == [(record["run"], 0.99, 0.99128)]


CONTROLS = "\x1b[2J\x1b]0;owned\x07\r\u202e\u2028\x00"  # clear screen, set title, carriage return, RTL override...


@pytest.mark.parametrize("output_format", runs_table.RUNS_FORMATS)
def test_runs_table_prints_no_control_characters_a_record_holds(tmp_path, capsys, output_format):
    write_json(tmp_path / "a.json", fake_record("a", cv_mean=0.9, model=f"seed_cnn{CONTROLS}",
                                                optimizer=f"adam{CONTROLS}", **{f"note{CONTROLS}": "x"}))
    write_json(tmp_path / "b.json", fake_record("b", cv_mean=0.8, optimizer="adadelta", **{f"note{CONTROLS}": "y"}))
    assert cli.main(["runs", "--dir", str(tmp_path), "--format", output_format]) == 0
    out = capsys.readouterr().out
    assert "seed_cnn[2J]0;owned" in out and "adam[2J]0;owned" in out and "note[2J]0;owned" in out
    assert [character for character in out if not character.isprintable() and character != "\n"] == []
