"""The competition on Kaggle: downloading its files (`make data`) and submitting to it (`make submit`)."""

import datetime as dt
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from src import paths, records, submission
from src.errors import KitError
from src.kaggle.command import LEADERBOARD_URL, RULES_URL, run_cli  # noqa: F401 (the URLs are part of this API)
from src.kaggle.credentials import redact
from src.mnist import COMPETITION_TEST_ROWS


@dataclass(frozen=True)
class SubmitResult:
    """A submission Kaggle accepted.

    Attributes:
        file: the submitted CSV.
        rows: its rows.
        message: the submission's description.
        submitted_at: UTC ISO time of the submission.
        answer: Kaggle's answer, e.g. `Successfully submitted to Digit Recognizer`.
        ref: the submission's number on Kaggle, when it said it.
        log: the `kaggle-submissions.jsonl` the submission was added to.
    """

    file: Path
    rows: int
    message: str
    submitted_at: str
    answer: str
    ref: int | None
    log: Path


def submit(file: str | os.PathLike, message: str, allow_leak: bool = False) -> SubmitResult:
    """Validates a submission, submits it with `kaggle competitions submit`, and logs it beside the file.

    The run record beside the file (`records.record_of_submission`) is read first: a run whose training data held
    test images (its `leaks`, see `src.leaks`) is refused unless `allow_leak`.

    Args:
        file: the submission CSV; it must have the competition's 28,000 rows.
        message: the submission's description on Kaggle.
        allow_leak: submit a leaking run anyway.

    Raises:
        KitError: no file or message, an invalid submission, a leaking run, or Kaggle refused it.
    """
    if not str(file).strip():
        raise KitError("No submission file given; run `make submit FILE=<csv> MESSAGE=\"...\"`.")
    if not message or not message.strip():
        raise KitError("No submission message given; describe the submission with MESSAGE=\"...\" (or --message).")
    path = Path(file)
    rows = submission.validate_submission(path)
    if rows != COMPETITION_TEST_ROWS:
        raise KitError(f"{path}: has {rows} rows but the competition scores {COMPETITION_TEST_ROWS:,}; "
                       "train on the competition's data (`make data` with Kaggle credentials) and submit that run.")
    found = records.record_of_submission(path)
    leaked = records.leaked_test_images(found[1]) if found else 0
    if leaked and not allow_leak:
        raise KitError(f"Refusing to submit {path}: run {found[1]['run']} trained on data holding {leaked:,} of the "
                       f"{found[1]['leaks'].get('test_rows', rows):,} test images, so its score would be a leak, not "
                       "skill; train on data without them, or pass --allow-leak (make submit ALLOW_LEAK=1) to submit "
                       "it anyway.")
    output = run_cli(["competitions", "submit", "-c", paths.COMPETITION, "-f", str(path), "-m", message.strip()],
                     f"submit {path}")
    submitted_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    found_ref = re.search(r"Submission ref: (\d+)", output)
    ref = int(found_ref.group(1)) if found_ref else None
    answer = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    log = submission.append_submissions_log(path, message.strip(), submitted_at, run=found[1]["run"] if found else None,
                                            ref=ref)
    return SubmitResult(file=path, rows=rows, message=message.strip(), submitted_at=submitted_at,
                        answer=redact(answer), ref=ref, log=log)


# --- competition data -----------------------------------------------------------------------------


def download_competition(target: Path) -> Path:
    """Downloads and unzips the competition's files into `target`, which appears only when complete.

    Returns:
        `target`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as scratch:
        scratch = Path(scratch)
        run_cli(["competitions", "download", "-c", paths.COMPETITION, "-p", str(scratch)],
                f"download the {paths.COMPETITION} competition")
        unpacked = scratch / "unpacked"
        unpacked.mkdir()
        for archive in scratch.glob("*.zip"):
            try:
                with zipfile.ZipFile(archive) as opened:
                    opened.extractall(unpacked)
            except zipfile.BadZipFile:
                raise KitError(f"Kaggle's {archive.name} is not a valid zip; run `make data` again.") from None
        for loose in scratch.glob("*.csv"):
            shutil.move(str(loose), unpacked / loose.name)
        os.replace(unpacked, target)
    return target
