"""The competition on Kaggle: downloading its files (`make data`) and submitting to it (`make submit`)."""

import datetime as dt
import errno
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from src import paths, records, submission
from src.errors import KitError
from src.kaggle.command import LEADERBOARD_URL, RULES_URL, run_cli  # noqa: F401 (the URLs are part of this API)
from src.kaggle.credentials import redact
from src.mnist import COMPETITION_TEST_ROWS, SAMPLE_SUBMISSION_CSV, TEST_CSV, TRAIN_CSV

logger = logging.getLogger(__name__)


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
        log: the `kaggle-submissions.jsonl` the submission was added to; None when it could not be (a warning
            said so).
    """

    file: Path
    rows: int
    message: str
    submitted_at: str
    answer: str
    ref: int | None
    log: Path | None


def submit(file: str | os.PathLike, message: str, allow_leak: bool = False) -> SubmitResult:
    """Validates a submission, submits it with `kaggle competitions submit`, and logs it beside the file.

    The run record beside the file (`records.record_of_submission`) is read first: a run whose training data held
    test images (its `leaks`, see `src.leaks`) is refused unless `allow_leak`.

    Args:
        file: the submission CSV; it must have the competition's 28,000 rows.
        message: the submission's description on Kaggle.
        allow_leak: submit a leaking run anyway.

    Raises:
        KitError: no file or message, an invalid submission, a leaking run, a log that could not be written
            (checked before submitting), or Kaggle refused it. A log that fails once Kaggle accepted is a warning.
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
    submission.check_submissions_log(path)
    output = run_cli(["competitions", "submit", "-c", paths.COMPETITION, "-f", str(path), "-m", message.strip()],
                     f"submit {path}")
    submitted_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    found_ref = re.search(r"Submission ref: (\d+)", output)
    ref = int(found_ref.group(1)) if found_ref else None
    answer = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    try:
        log = submission.append_submissions_log(path, message.strip(), submitted_at,
                                                run=found[1]["run"] if found else None, ref=ref)
    except KitError as error:
        # Kaggle has it: saying "failed" would have the user submit again and spend another of the day's quota.
        entry = json.dumps({"file": path.name, "message": message.strip(), "submitted_at": submitted_at,
                            "public_score": None})
        logger.warning("warning: Kaggle accepted the submission of %s%s; do not submit it again. It could not be "
                       "logged: %s Add this line to %s by hand: %s", path, f" (ref {ref})" if ref else "",
                       error, path.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME, entry)
        log = None
    return SubmitResult(file=path, rows=rows, message=message.strip(), submitted_at=submitted_at,
                        answer=redact(answer), ref=ref, log=log)


# --- competition data -----------------------------------------------------------------------------

# What the competition has; nothing else in Kaggle's download is unpacked.
COMPETITION_FILES = (TRAIN_CSV, TEST_CSV, SAMPLE_SUBMISSION_CSV)
# The competition's zip holds three files, 123 MB unpacked: far more entries or bytes is not the competition's.
MAX_ZIP_ENTRIES = 100
MAX_UNPACKED_BYTES = 1 << 30
AGAIN = "run `make data` again"


def _unpack(archive: Path, unpacked: Path) -> None:
    """Unpacks the competition's files of one downloaded zip, checking its directory before writing a byte."""
    try:
        with zipfile.ZipFile(archive) as opened:
            entries = opened.infolist()
            if len(entries) > MAX_ZIP_ENTRIES:
                raise KitError(f"Kaggle's {archive.name} holds {len(entries):,} entries, not the competition's "
                               f"{len(COMPETITION_FILES)} files; refusing to unpack it. Check the download, then "
                               f"{AGAIN}.")
            chosen = [entry for entry in entries if entry.filename in COMPETITION_FILES]
            names = [entry.filename for entry in chosen]
            if len(set(names)) != len(names):
                raise KitError(f"Kaggle's {archive.name} holds {max(names, key=names.count)} twice; refusing to unpack "
                               f"it. Run `make data` again.")
            unpacked_bytes = sum(entry.file_size for entry in chosen)
            if unpacked_bytes > MAX_UNPACKED_BYTES:
                raise KitError(f"Kaggle's {archive.name} would unpack to {unpacked_bytes:,} bytes, more than the "
                               f"{MAX_UNPACKED_BYTES:,} the competition's files could take; refusing to unpack it. "
                               f"Run `make data` again.")
            for entry in chosen:
                # zipfile stops at the entry's declared size and checks its CRC-32 at the end.
                with opened.open(entry) as source, open(unpacked / entry.filename, "xb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as error:
        raise KitError(f"Kaggle's {archive.name} is not a valid zip ({str(error)[:120]}); {AGAIN}.") from None


def download_competition(target: Path) -> Path:
    """Downloads the competition's files into `target`, which appears only when complete.

    Only the competition's own files (`COMPETITION_FILES`) are taken from Kaggle's download; the zip's number of
    entries and its unpacked size are capped before anything is written.

    Returns:
        `target`.

    Raises:
        KitError: Kaggle refused, the download is not the competition's, or a write failed (a full disk, a
            non-empty `target`); one line, and `target` is as it was.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as scratch:
            scratch = Path(scratch)
            run_cli(["competitions", "download", "-c", paths.COMPETITION, "-p", str(scratch)],
                    f"download the {paths.COMPETITION} competition")
            unpacked = scratch / "unpacked"
            unpacked.mkdir()
            for archive in sorted(scratch.glob("*.zip")):
                _unpack(archive, unpacked)
            for loose in scratch.iterdir():  # files the CLI did not zip
                if loose.name in COMPETITION_FILES and loose.is_file() and not loose.is_symlink() and \
                        not (unpacked / loose.name).exists():
                    shutil.move(str(loose), unpacked / loose.name)
            missing = [name for name in (TRAIN_CSV, TEST_CSV) if not (unpacked / name).is_file()]
            if missing:
                raise KitError(f"Kaggle's download of {paths.COMPETITION} lacks {', '.join(missing)}; check that "
                               f"the competition's rules are accepted at {RULES_URL}, then {AGAIN}.")
            os.replace(unpacked, target)
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR) and target.exists():
            raise KitError(f"Cannot put the competition in {target}: it already exists and holds other files; move "
                           f"it away or remove it, then {AGAIN}.") from None
        raise KitError(f"Cannot write the competition into {target.parent}: {error.strerror or error}; free some "
                       f"disk space or make the folder writable, then {AGAIN}.") from None
    return target
