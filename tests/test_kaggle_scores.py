"""src.kaggle.scores: Kaggle's submissions and their public scores, matched to the kit's submission logs.

The whole loop runs the real kaggle CLI against the fake Kaggle API: submit, let Kaggle score, `scores`, `runs`.
"""

import csv
import datetime as dt
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from src import cli, paths, plots
from src.kaggle import scores

pytest_plugins = ["kaggle_fixtures"]

# What `kaggle competitions submissions --csv` prints (kaggle 2.2.5): enum names and Python's str() of values.
CLI_CSV = """ref,fileName,date,description,status,publicScore,privateScore
31338,submission.csv,2025-03-02 10:00:05.123000,second,SubmissionStatus.PENDING,None,None
31337,mnist-cnn-20250301T000000Z.csv,2025-03-01 09:00:02,first try,SubmissionStatus.COMPLETE,0.99128,None
"""


def entry(file: str, message: str, submitted_at: str, **more) -> dict:
    return {"file": file, "message": message, "submitted_at": submitted_at, "public_score": None, **more}


def test_parse_submissions_reads_what_the_cli_prints():
    parsed = scores.parse_submissions("Warning: a newer kaggle CLI exists\n" + CLI_CSV)
    assert [(item.ref, item.file_name, item.status, item.public_score) for item in parsed] == [
        (31338, "submission.csv", "pending", None),
        (31337, "mnist-cnn-20250301T000000Z.csv", "complete", 0.99128),
    ]
    assert parsed[0].date == dt.datetime(2025, 3, 2, 10, 0, 5, 123000) and parsed[1].description == "first try"
    assert scores.parse_submissions("No submissions found\n") == []


def test_match_by_ref_else_by_file_message_and_time_each_submission_once():
    submitted = scores.parse_submissions(CLI_CSV + "31339,submission.csv,2025-03-02 10:20:00,second,"
                                                   "SubmissionStatus.COMPLETE,0.98,None\n")
    entries = [
        entry("mnist-cnn-20250301T000000Z.csv", "first try", "2025-03-01T09:00:00+00:00", ref=31337),
        entry("submission.csv", "second", "2025-03-02T10:19:58+00:00"),  # 2 s from 31339
        entry("submission.csv", "second", "2025-03-02T10:00:01+00:00"),  # 4 s from 31338, which is taken by:
        entry("submission.csv", "second", "2025-03-02T10:00:03+00:00"),  # 2 s from 31338
        entry("other.csv", "first try", "2025-03-01T09:00:00+00:00"),  # another file
        entry("mnist-cnn-20250301T000000Z.csv", "first try", "2025-03-01T12:00:00+00:00"),  # too late
    ]
    matched = scores.match(entries, submitted)
    assert {index: item.ref for index, item in matched.items()} == {0: 31337, 1: 31339, 3: 31338}


def write_run(folder: Path, run: str, cv_mean: float) -> Path:
    """A finished k-fold run's record and submission with the competition's 28,000 rows."""
    from src import mnist, submission

    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{run}.csv"
    csv_path.write_text(submission.submission_text([7] * mnist.COMPETITION_TEST_ROWS))
    record = {"run": run, "kernel": "mnist-cnn", "config": {"kernel": "mnist-cnn", "model": "seed_cnn", "folds": 5},
              "data": {"source": "input/digit-recognizer", "sha256": "ab" * 32}, "cv_mean": cv_mean,
              "cv_std": 0.001, "test_accuracy": None, "seconds": 60.0, "submission": csv_path.name}
    (folder / f"{run}.json").write_text(json.dumps(record))
    return csv_path


@pytest.mark.slow
def test_scores_fill_the_public_score_and_runs_show_it_beside_cv(fake_kaggle, tmp_path, capsys):
    runs_dir = tmp_path / "submissions"
    first = write_run(runs_dir, "mnist-cnn-20250301T000000Z", 0.9912)
    second = write_run(runs_dir / "kaggle" / "mnist-fast", "mnist-fast-20250302T000000Z", 0.9905)
    assert cli.main(["submit", str(first), "-m", "first"]) == 0
    assert cli.main(["submit", str(second), "-m", "second"]) == 0
    fake_kaggle.score_submissions("0.99128")
    fake_kaggle.submissions.append({"ref": 1, "fileName": "by-hand.csv", "date": "2025-01-01T00:00:00.000Z",
                                    "description": "from the website", "status": "COMPLETE", "publicScore": "0.9"})
    capsys.readouterr()

    assert cli.main(["scores", "--dir", str(runs_dir)]) == 0

    out = capsys.readouterr().out
    assert out.startswith("scores: 3 submissions on Kaggle, 2 of them in the kit's logs\n")
    assert "not in the kit's logs: 2025-01-01 00:00:00  by-hand.csv  'from the website'  public 0.90000" in out
    logged = json.loads((runs_dir / paths.KAGGLE_SUBMISSIONS_LOG_NAME).read_text())
    assert (logged["public_score"], logged["status"], logged["ref"]) == (0.99128, "complete", 31337)
    assert fake_kaggle.received("ListSubmissions")[0]["competitionName"] == paths.COMPETITION
    picture = runs_dir / plots.CV_VS_PUBLIC
    assert f"picture: {picture} (CV against public score, 2 runs)" in out
    with Image.open(picture) as image:
        assert image.size == plots.CV_VS_PUBLIC_PIXELS

    assert cli.main(["runs", "--dir", str(runs_dir), "--format", "csv"]) == 0
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (row["run"], row["cv_mean"], row["public_score"]) == ("mnist-cnn-20250301T000000Z", "0.9912", "0.99128")
    # A second time nothing changes on Kaggle, so no log is rewritten.
    before = (runs_dir / paths.KAGGLE_SUBMISSIONS_LOG_NAME).stat().st_mtime_ns
    assert cli.main(["scores", "--dir", str(runs_dir)]) == 0
    assert (runs_dir / paths.KAGGLE_SUBMISSIONS_LOG_NAME).stat().st_mtime_ns == before


def test_report_of_a_scored_run_shows_cv_against_public_score(tmp_path):
    from src import report

    write_run(tmp_path, "mnist-cnn-20250301T000000Z", 0.9912)
    write_run(tmp_path, "mnist-cnn-20250302T000000Z", 0.9930)
    (tmp_path / paths.KAGGLE_SUBMISSIONS_LOG_NAME).write_text(
        json.dumps(entry("mnist-cnn-20250301T000000Z.csv", "a", "2025-03-01T00:00:00+00:00", public_score=0.9903))
        + "\n" + json.dumps(entry("mnist-cnn-20250302T000000Z.csv", "b", "2025-03-02T00:00:00+00:00")) + "\n")

    scored = report.write_report(tmp_path / "mnist-cnn-20250301T000000Z.json").read_text()
    pending = report.write_report(tmp_path / "mnist-cnn-20250302T000000Z.json").read_text()
    assert plots.PICTURE_CAPTIONS[plots.CV_VS_PUBLIC] in scored and "public score 0.9903" in scored
    assert plots.PICTURE_CAPTIONS[plots.CV_VS_PUBLIC] not in pending and "public score pending" in pending
