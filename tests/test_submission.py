"""Tests of src.submission: writing and validating ImageId,Label files, and the log of submissions."""

import json
import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from src import paths, submission
from src.errors import KitError


def test_submission_text_counts_image_ids_from_one():
    assert submission.submission_text(np.array([7, 2, 1])) == "ImageId,Label\n1,7\n2,2\n3,1\n"


def test_write_submission_validates_and_never_overwrites(tmp_path):
    path = submission.write_submission(np.array([3, 4]), tmp_path / "s.csv", expected_rows=2)
    assert submission.validate_submission(path) == 2
    with pytest.raises(KitError, match="never overwrites"):
        submission.write_submission(np.array([5, 6]), path)
    assert path.read_text() == "ImageId,Label\n1,3\n2,4\n"
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_write_submission_refuses_wrong_row_count(tmp_path):
    with pytest.raises(KitError, match="has 2 rows but the test split has 3"):
        submission.write_submission(np.array([3, 4]), tmp_path / "s.csv", expected_rows=3)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "text, message",
    [
        ("Id,Label\n1,3\n", "header"),
        ("", "header"),
        ("ImageId,Label\n", "no rows"),
        ("ImageId,Label\n1,3\n3,4\n", "without gaps"),
        ("ImageId,Label\n0,3\n", "without gaps"),
        ("ImageId,Label\n1,10\n", "outside 0-9"),
        ("ImageId,Label\n1,-1\n", "outside 0-9"),
        ("ImageId,Label\n1,3.5\n", "two integers"),
        ("ImageId,Label\n1,3,4\n", "2 fields"),
    ],
)
def test_validate_submission_rejects_broken_files(tmp_path, text, message):
    path = tmp_path / "broken.csv"
    path.write_text(text)
    with pytest.raises(KitError, match=message):
        submission.validate_submission(path)


def test_validate_submission_checks_rows_against_sample(tmp_path):
    path = submission.write_submission(np.array([1, 2, 3]), tmp_path / "s.csv")
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("ImageId,Label\n1,0\n2,0\n3,0\n4,0\n")
    with pytest.raises(KitError, match="3 rows but the test split has 4"):
        submission.validate_submission(path, sample=sample)
    sample.write_text("ImageId,Label\n1,0\n2,0\n3,0\n")
    assert submission.validate_submission(path, sample=sample) == 3


def test_validate_submission_names_missing_file(tmp_path):
    with pytest.raises(KitError, match="Submission not found"):
        submission.validate_submission(tmp_path / "absent.csv")


# --- the log of submissions -----------------------------------------------------------------------


def test_read_submissions_log_keeps_the_scored_entry_of_each_file(tmp_path, caplog):
    lines = [
        {"file": "a.csv", "message": "first", "submitted_at": "t1", "public_score": 0.97},
        {"file": "a.csv", "message": "again", "submitted_at": "t2", "public_score": None},
        {"file": "b.csv", "message": "pending", "submitted_at": "t3", "public_score": None},
        "not an entry",
        {"file": "c.csv", "public_score": "0.99"},
        {"file": "d.csv", "public_score": 10**400},
    ]
    (tmp_path / paths.KAGGLE_SUBMISSIONS_LOG_NAME).write_text(
        "\n".join(json.dumps(line) for line in lines) + "\n{broken\n" + "[" * 100_000 + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="src.submission"):
        submissions = submission.read_submissions_log(tmp_path)
    assert submissions["a.csv"]["public_score"] == 0.97
    assert submissions["b.csv"]["message"] == "pending"
    assert set(submissions) == {"a.csv", "b.csv"}
    assert len(caplog.messages) == 5 and all("\n" not in message for message in caplog.messages)
    assert submission.read_submissions_log(tmp_path / "elsewhere") == {}


def test_read_submissions_log_takes_the_latest_entry_of_a_file_without_a_score(tmp_path):
    log = tmp_path / paths.KAGGLE_SUBMISSIONS_LOG_NAME
    log.write_text(json.dumps({"file": "a.csv", "message": "first", "public_score": None}) + "\n\n"
                   + json.dumps({"file": "a.csv", "message": "second", "public_score": None}) + "\n")
    assert submission.read_submissions_log(tmp_path)["a.csv"]["message"] == "second"


def test_append_submissions_log_adds_a_line_beside_the_file_that_reads_back(tmp_path):
    csv_path = tmp_path / "runs" / "mnist-cnn-1.csv"
    csv_path.parent.mkdir()
    log = submission.append_submissions_log(csv_path, "first try", "2026-01-02T03:04:05+00:00")
    assert log == csv_path.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME
    # A log whose last line lacks its newline (edited by hand) still gets one entry per line.
    log.write_text(log.read_text().rstrip("\n"))
    submission.append_submissions_log(tmp_path / "elsewhere" / "mnist-cnn-2.csv", "other folder", "t0")
    submission.append_submissions_log(csv_path.with_name("mnist-cnn-2.csv"), "second", "2026-01-02T04:00:00+00:00")

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries == [
        {"file": "mnist-cnn-1.csv", "message": "first try", "submitted_at": "2026-01-02T03:04:05+00:00",
         "public_score": None},
        {"file": "mnist-cnn-2.csv", "message": "second", "submitted_at": "2026-01-02T04:00:00+00:00",
         "public_score": None},
    ]
    assert set(submission.read_submissions_log(csv_path.parent)) == {"mnist-cnn-1.csv", "mnist-cnn-2.csv"}
    assert sorted(p.name for p in csv_path.parent.iterdir()) == [paths.KAGGLE_SUBMISSIONS_LOG_NAME]


def test_append_submissions_log_refuses_a_log_it_cannot_read(tmp_path):
    log = tmp_path / paths.KAGGLE_SUBMISSIONS_LOG_NAME
    log.write_bytes(b"\xff\xfe not text")
    with pytest.raises(KitError, match="Cannot write .*kaggle-submissions.jsonl .*can't decode"):
        submission.append_submissions_log(tmp_path / "a.csv", "m", "t")
    assert log.read_bytes() == b"\xff\xfe not text"


@pytest.mark.parametrize("break_it, reason", [
    (lambda log: log.write_bytes(b"\xff\xfe not text"), "can't decode byte 0xff"),
    (lambda log: log.mkdir(), "Is a directory"),
])
def test_check_submissions_log_refuses_a_log_it_could_not_add_to(tmp_path, break_it, reason):
    log = tmp_path / paths.KAGGLE_SUBMISSIONS_LOG_NAME
    break_it(log)
    with pytest.raises(KitError, match=f"Cannot log submissions in {log} \\(.*{reason}.*\\); nothing was submitted"):
        submission.check_submissions_log(tmp_path / "a.csv")


def test_check_submissions_log_refuses_a_folder_that_takes_no_file(tmp_path, monkeypatch):
    # As root (CI), a read-only folder is still writable: the failure is injected where the folder is written.
    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(submission.tempfile, "mkstemp", read_only)
    with pytest.raises(KitError, match=r"\(Read-only file system\); nothing was submitted"):
        submission.check_submissions_log(tmp_path / "a.csv")
    assert list(tmp_path.iterdir()) == []


APPENDER = """
import sys
from pathlib import Path
from src import submission
folder, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for index in range(count):
    submission.append_submissions_log(folder / f"run-{worker}-{index}.csv", f"from {worker}", "t")
"""


def test_append_submissions_log_loses_no_line_when_submits_run_at_once(tmp_path):
    workers, count = 3, 10
    processes = [subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path), str(worker), str(count)],
                                  cwd=paths.REPO_ROOT, env={**os.environ, "PYTHONPATH": str(paths.REPO_ROOT)})
                 for worker in range(workers)]
    assert [process.wait(timeout=120) for process in processes] == [0] * workers
    lines = (tmp_path / paths.KAGGLE_SUBMISSIONS_LOG_NAME).read_text().splitlines()
    assert sorted(json.loads(line)["file"] for line in lines) == \
        sorted(f"run-{worker}-{index}.csv" for worker in range(workers) for index in range(count))


def test_append_submissions_log_waits_for_a_submit_that_holds_the_log(tmp_path, monkeypatch):
    # One submit reads the log and is about to write it back when another arrives: the second waits (a lock),
    # where before it read the same old log and one of the two lines was lost.
    write_text = submission.files.write_text
    second_done = threading.Event()
    started = []

    def slow_write(path, text, **kwargs):
        if not started:
            started.append(True)
            other.start()
            second_done.wait(timeout=1.0)  # the second submit cannot finish while this one holds the lock
        return write_text(path, text, **kwargs)

    monkeypatch.setattr(submission.files, "write_text", slow_write)
    other = threading.Thread(target=lambda: (submission.append_submissions_log(tmp_path / "b.csv", "b", "t"),
                                             second_done.set()))
    submission.append_submissions_log(tmp_path / "a.csv", "a", "t")
    other.join(timeout=30)
    lines = (tmp_path / paths.KAGGLE_SUBMISSIONS_LOG_NAME).read_text().splitlines()
    assert sorted(json.loads(line)["file"] for line in lines) == ["a.csv", "b.csv"]
