"""src.kaggle.competition: submitting to the competition and downloading its files, through the real kaggle CLI
talking to a fake Kaggle API on a loopback port."""

import datetime as dt
import errno
import io
import json
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from src import cli, console, paths, submission
from src.errors import KitError
from src.kaggle import competition

pytest_plugins = ["kaggle_fixtures"]


@pytest.mark.slow
def test_submit_uploads_the_file_and_logs_each_submission(fake_kaggle, competition_csv, capsys):
    assert cli.main(["submit", str(competition_csv), "--message", "first try"]) == 0
    assert cli.main(["submit", str(competition_csv), "-m", "second try"]) == 0

    assert fake_kaggle.uploads["blob-1"] == competition_csv.read_bytes()
    started = fake_kaggle.received("StartSubmissionUpload")[0]
    assert started["competitionName"] == paths.COMPETITION
    assert started["fileName"] == competition_csv.name
    assert started["contentLength"] == competition_csv.stat().st_size
    created = fake_kaggle.received("CreateSubmission")
    assert [body["submissionDescription"] for body in created] == ["first try", "second try"]
    assert created[0]["blobFileTokens"] == "blob-1"
    assert "(ref 31337): Successfully submitted to Digit Recognizer" in capsys.readouterr().out

    lines = (competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [list(entry) for entry in entries] == [["file", "message", "submitted_at", "public_score", "ref"]] * 2
    assert [entry["message"] for entry in entries] == ["first try", "second try"]
    assert [entry["ref"] for entry in entries] == [31337, 31338]
    assert all(entry["file"] == competition_csv.name and entry["public_score"] is None for entry in entries)
    stamp = dt.datetime.fromisoformat(entries[0]["submitted_at"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - stamp) < dt.timedelta(minutes=5)


@pytest.mark.slow
def test_submit_without_accepted_rules_points_at_them(fake_kaggle, competition_csv, capsys):
    fake_kaggle.fail("StartSubmissionUpload", 403)

    assert cli.main(["submit", str(competition_csv), "-m", "rules"]) == console.EXIT_USAGE
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.count("\n") == 1 and printed.err.startswith("error: Kaggle could not submit")
    assert "403 Forbidden" in printed.err and f"accept them at {competition.RULES_URL}" in printed.err


@pytest.mark.slow
def test_submit_with_a_failed_upload_logs_nothing(fake_kaggle, competition_csv):
    fake_kaggle.fail("PUT", 503)
    with pytest.raises(KitError, match="upload"):
        competition.submit(competition_csv, "upload fails")
    assert fake_kaggle.received("CreateSubmission") == []
    assert not (competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).exists()


@pytest.mark.parametrize("text, named", [
    ("ImageId,Digit\n1,3\n", "header"),
    (submission.submission_text(np.zeros(100, dtype=int)), "28,000"),
])
def test_submit_validates_the_file_before_calling_kaggle(fake_kaggle, tmp_path, text, named):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(KitError, match=named):
        competition.submit(path, "bad")
    assert fake_kaggle.requests == []


def test_submit_needs_a_file_and_a_message(fake_kaggle, competition_csv):
    with pytest.raises(KitError, match="FILE="):
        competition.submit("", "message")
    with pytest.raises(KitError, match="MESSAGE="):
        competition.submit(competition_csv, "  ")
    assert fake_kaggle.requests == []


@pytest.mark.slow
def test_download_competition_unzips_into_target(fake_kaggle, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("train.csv", "test.csv", "sample_submission.csv"):
            archive.writestr(name, f"{name}\n")
    fake_kaggle.downloads[f"{paths.COMPETITION}.zip"] = buffer.getvalue()
    target = tmp_path / "input" / paths.COMPETITION

    assert competition.download_competition(target) == target
    assert sorted(path.name for path in target.iterdir()) == ["sample_submission.csv", "test.csv", "train.csv"]
    assert fake_kaggle.received("DownloadDataFiles") == [{"competitionName": paths.COMPETITION}]

    fake_kaggle.fail("DownloadDataFiles", 403)
    other = tmp_path / "other" / paths.COMPETITION
    with pytest.raises(KitError, match="rules"):
        competition.download_competition(other)
    assert list(other.parent.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(Path(sys.prefix).resolve() != (paths.REPO_ROOT / ".venv").resolve(),
                    reason="make uses the repository's .venv; run the suite from it (make test)")
def test_make_submit_works_against_the_fake_server(fake_kaggle, competition_csv):
    def make(*arguments: str) -> subprocess.CompletedProcess:
        # `-o`: a stale install stamp never reinstalls .venv from a test.
        return subprocess.run(["make", "--no-print-directory", "-s", "-o", ".venv/.installed", *arguments],
                              cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=120)

    submitted = make("submit", f"FILE={competition_csv}", "MESSAGE=from make")
    assert submitted.returncode == 0, submitted.stderr
    assert fake_kaggle.received("CreateSubmission")[0]["submissionDescription"] == "from make"
    refused = make("submit", "FILE=", "MESSAGE=x")
    assert refused.returncode != 0 and refused.stderr.startswith("error: No submission file given")


# --- the leak guard ---------------------------------------------------------------------------------


def leaking_record(csv_path: Path, test_in_train: int = 27_990) -> dict:
    """Writes beside `csv_path` the record of the run that wrote it, its training data holding test images."""
    run = csv_path.stem
    record = {"run": run, "kernel": "mnist-cnn", "config": {"kernel": "mnist-cnn", "folds": 5},
              "submission": csv_path.name, "cv_mean": 0.9995,
              "leaks": {"test_in_train": test_in_train, "test_rows": 28_000, "train_duplicates": 0,
                        "duplicates_across_folds": 0}}
    (csv_path.parent / f"{run}.json").write_text(json.dumps(record))
    return record


def test_submit_refuses_a_leaking_run_in_one_line_before_calling_kaggle(fake_kaggle, competition_csv, capsys):
    leaking_record(competition_csv)
    # Kaggle's copy of the run's CSV in its output folder is found by its bytes.
    kernel_output = competition_csv.parent / paths.KAGGLE_SUBMISSION_NAME
    kernel_output.write_bytes(competition_csv.read_bytes())

    for path in (competition_csv, kernel_output):
        assert cli.main(["submit", str(path), "-m", "leak"]) == console.EXIT_USAGE
        err = capsys.readouterr().err
        expected = (f"error: Refusing to submit {path}: run {competition_csv.stem} trained on data holding 27,990 of "
                    "the 28,000 test images")
        assert err.count("\n") == 1 and err.startswith(expected)
        assert "--allow-leak" in err and "ALLOW_LEAK=1" in err
    assert fake_kaggle.requests == []
    assert not (competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).exists()


def test_submit_of_a_run_without_leaks_is_not_refused(fake_kaggle, competition_csv, monkeypatch):
    leaking_record(competition_csv, test_in_train=0)
    monkeypatch.setattr(competition, "run_cli", lambda arguments, what: "Submission ref: 7\nSuccessfully submitted")
    result = competition.submit(competition_csv, "clean")
    assert result.ref == 7
    logged = json.loads((competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).read_text())
    assert (logged["run"], logged["ref"]) == (competition_csv.stem, 7)


def test_submit_with_allow_leak_submits_and_logs_the_run(fake_kaggle, competition_csv, monkeypatch, capsys):
    leaking_record(competition_csv)
    asked = []
    # The kaggle CLI's part of a submission is tested above; here, only that the refusal is lifted.
    monkeypatch.setattr(competition, "run_cli", lambda arguments, what: asked.append(arguments) or
                        "Submission ref: 31337\nSuccessfully submitted to Digit Recognizer")
    assert cli.main(["submit", str(competition_csv), "-m", "leak, knowingly", "--allow-leak"]) == 0

    assert asked[0][-2:] == ["-m", "leak, knowingly"]
    logged = json.loads((competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).read_text())
    assert (logged["run"], logged["ref"], logged["public_score"]) == (competition_csv.stem, 31337, None)
    assert "`make scores` brings its public score home" in capsys.readouterr().out


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(zipfile.ZipInfo(name), content)  # the name as given: `..`, `/` and all
    return buffer.getvalue()


COMPETITION = {"train.csv": b"label,pixel0\n", "test.csv": b"pixel0\n", "sample_submission.csv": b"ImageId,Label\n"}


def kaggle_sends(monkeypatch, content: bytes) -> None:
    """Plays the kaggle CLI's `competitions download`: Kaggle's zip lands in the folder it is given."""
    def run_cli(arguments, what, forbidden=None, not_found=None):
        (Path(arguments[arguments.index("-p") + 1]) / f"{paths.COMPETITION}.zip").write_bytes(content)
        return ""

    monkeypatch.setattr(competition, "run_cli", run_cli)


# Entries of a zip that is not only the competition's: names outside the folder, in sub-folders, other files.
FOREIGN_ENTRIES = {"../../escape.csv": b"x", "/tmp/digit-kit-absolute.csv": b"x", "sub/train.csv": b"x",
                   "notes.txt": b"x", "run.sh": b"x"}


def test_download_competition_unpacks_only_the_competition_s_files(credentials, monkeypatch, tmp_path):
    kaggle_sends(monkeypatch, zip_bytes({**COMPETITION, **FOREIGN_ENTRIES}))
    target = tmp_path / "input" / paths.COMPETITION
    competition.download_competition(target)
    assert sorted(path.name for path in target.rglob("*")) == sorted(COMPETITION)
    assert all((target / name).read_bytes() == content for name, content in COMPETITION.items())
    assert sorted(path.name for path in (tmp_path / "input").rglob("*")) == sorted([paths.COMPETITION, *COMPETITION])
    assert list(tmp_path.rglob("escape.csv")) == []
    assert not Path("/tmp/digit-kit-absolute.csv").exists()


@pytest.mark.parametrize("entries, cap, message", [
    ({**COMPETITION, **{f"extra-{index}.txt": b"" for index in range(100)}}, None,
     r"holds 103 entries, not the competition's 3 files; refusing to unpack it"),
    ({**COMPETITION, "train.csv": b"0" * 5000}, 4000,
     "would unpack to 5,021 bytes, more than the 4,000 the competition's files could take"),
    ({"test.csv": b"pixel0\n"}, None, "lacks train.csv; check that the competition's rules are accepted"),
])
def test_download_competition_refuses_a_zip_that_is_not_the_competition_s(credentials, monkeypatch, tmp_path,
                                                                          entries, cap, message):
    kaggle_sends(monkeypatch, zip_bytes(entries))
    if cap is not None:
        monkeypatch.setattr(competition, "MAX_UNPACKED_BYTES", cap)
    with pytest.raises(KitError, match=message) as raised:
        competition.download_competition(tmp_path / "input" / paths.COMPETITION)
    assert "\n" not in str(raised.value)
    assert list((tmp_path / "input").iterdir()) == []


def test_download_competition_checks_the_declared_sizes_before_writing(credentials, monkeypatch, tmp_path):
    content = bytearray(zip_bytes(COMPETITION))
    directory = content.index(b"PK\x01\x02")
    struct.pack_into("<I", content, directory + 24, 2**32 - 1)  # train.csv claims 4 GB unpacked
    kaggle_sends(monkeypatch, bytes(content))
    with pytest.raises(KitError, match="would unpack to 4,294,967,3[0-9,]+ bytes, more than the 1,073,741,824"):
        competition.download_competition(tmp_path / "input" / paths.COMPETITION)
    assert list((tmp_path / "input").iterdir()) == []


def full_disk(source, destination, length=0):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("fault, message", [
    ("non-empty target", "Cannot put the competition in {target}: it already exists and holds other files; move it "
                         "away or remove it, then run `make data` again."),
    ("full disk", "Cannot write the competition into {parent}: No space left on device; free some disk space"),
])
def test_download_competition_write_failures_are_one_line(credentials, monkeypatch, tmp_path, fault, message):
    kaggle_sends(monkeypatch, zip_bytes(COMPETITION))
    target = tmp_path / "input" / paths.COMPETITION
    target.parent.mkdir()
    if fault == "non-empty target":
        target.mkdir()
        (target / "mine.txt").write_text("the user's\n")
    else:
        monkeypatch.setattr(shutil, "copyfileobj", full_disk)
    with pytest.raises(KitError) as raised:
        competition.download_competition(target)
    assert str(raised.value).startswith(message.format(target=target, parent=target.parent))
    assert "\n" not in str(raised.value)
    # Nothing lost, nothing left: the user's folder as it was, no scratch folder beside it.
    left = sorted(path.relative_to(target.parent).as_posix() for path in target.parent.rglob("*"))
    assert left == ([paths.COMPETITION, f"{paths.COMPETITION}/mine.txt"] if fault == "non-empty target" else [])


def kaggle_accepts(monkeypatch) -> list[list[str]]:
    """Plays the kaggle CLI's `competitions submit` that Kaggle accepts; returns its calls."""
    calls = []

    def run_cli(arguments, what, forbidden=None, not_found=None):
        calls.append(arguments)
        return "100%|##########| 1.00/1.00\nSubmission ref: 4242\nSuccessfully submitted to Digit Recognizer\n"

    monkeypatch.setattr(competition, "run_cli", run_cli)
    return calls


def test_submit_checks_the_log_before_submitting(credentials, monkeypatch, competition_csv, capsys):
    calls = kaggle_accepts(monkeypatch)
    log = competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME
    log.write_bytes(b"\xff not text\n")

    assert cli.main(["submit", str(competition_csv), "-m", "a log it cannot read"]) == console.EXIT_USAGE
    assert calls == []  # nothing reached Kaggle: no quota spent
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"Cannot log submissions in {log}" in error and "nothing was submitted" in error


def test_submit_whose_log_fails_after_kaggle_accepted_warns_that_it_was_accepted(credentials, monkeypatch,
                                                                                 competition_csv, capsys):
    calls = kaggle_accepts(monkeypatch)

    def full_disk(path, text, **kwargs):
        raise KitError(f"Cannot write {path}: No space left on device; free some disk space.")

    monkeypatch.setattr(submission.files, "write_text", full_disk)
    assert cli.main(["submit", str(competition_csv), "-m", "accepted"]) == 0
    assert len(calls) == 1
    printed = capsys.readouterr()
    assert "submitted" in printed.out and "(ref 4242): Successfully submitted to Digit Recognizer" in printed.out
    warning = next(line for line in printed.out.splitlines() if line.startswith("warning:"))
    assert f"Kaggle accepted the submission of {competition_csv} (ref 4242); do not submit it again" in warning
    assert "No space left on device" in warning and f'"file": "{competition_csv.name}"' in warning
    assert "logged in" not in printed.out
