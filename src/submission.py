"""Submissions: labels to `ImageId,Label`, validation, atomic never-overwriting writes, and the log of submits.

`make submit` adds a line to `kaggle-submissions.jsonl` beside the submitted file (one JSON object a line:
`{"file": <csv name>, "message": ..., "submitted_at": <UTC ISO>, "public_score": null}`, and `"run"` when the
file's run record is known); `make scores` fills in `public_score` and Kaggle's `status` and `ref`; `make runs`
reads it.
"""

import contextlib
import csv
import fcntl
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from src import files, paths
from src.errors import KitError

logger = logging.getLogger(__name__)

HEADER = ("ImageId", "Label")


def submission_text(labels: np.ndarray) -> str:
    """Returns the CSV text of a submission.

    Args:
        labels: `(M,)` predicted digits, in test-row order.

    Returns:
        `ImageId,Label` then one row per image, ImageId counted from 1.
    """
    labels = np.asarray(labels).astype(np.int64)
    buffer = io.StringIO()
    buffer.write(",".join(HEADER) + "\n")
    for image_id, label in enumerate(labels, start=1):
        buffer.write(f"{image_id},{label}\n")
    return buffer.getvalue()


def count_rows(path: str | os.PathLike) -> int:
    """Returns the data rows of a CSV with a header (e.g. `sample_submission.csv` or `test.csv`)."""
    try:
        with open(path, "rb") as stream:
            return max(sum(1 for line in stream if line.strip()) - 1, 0)
    except OSError as error:
        raise KitError(f"Cannot read {path}: {error.strerror}; check the path.") from None


def check_submission_text(text: str, expected_rows: int | None = None, name: str = "submission") -> int:
    """Checks a submission's text.

    Args:
        text: the CSV text.
        expected_rows: the test split's rows; None accepts any positive count.
        name: how messages name the file.

    Returns:
        The number of rows.

    Raises:
        KitError: naming the first problem: header, a row that is not two integers, an ImageId out of
            sequence, a label outside 0-9, or the wrong number of rows.
    """
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or tuple(cell.strip() for cell in header) != HEADER:
        raise KitError(f"{name}: the header must be 'ImageId,Label'. Received: {','.join(header or [])!r}.")
    count = 0
    for line_number, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != 2:
            raise KitError(f"{name}: line {line_number} must have 2 fields (ImageId,Label). Received: {row!r}.")
        try:
            image_id, label = int(row[0]), int(row[1])
        except ValueError:
            raise KitError(f"{name}: line {line_number} must hold two integers. Received: {','.join(row)!r}.") from None
        count += 1
        if image_id != count:
            raise KitError(
                f"{name}: ImageId must run 1, 2, 3, ... without gaps; line {line_number} should have "
                f"ImageId {count}. Received: {image_id}."
            )
        if not 0 <= label <= 9:
            raise KitError(f"{name}: line {line_number} has a label outside 0-9. Received: Label={label}.")
    if count == 0:
        raise KitError(f"{name}: no rows after the header.")
    if expected_rows is not None and count != expected_rows:
        raise KitError(f"{name}: has {count} rows but the test split has {expected_rows}; predict every test image.")
    return count


def validate_submission(path: str | os.PathLike, sample: str | os.PathLike | None = None) -> int:
    """Validates a submission file for the Digit Recognizer.

    Args:
        path: the CSV to check.
        sample: `sample_submission.csv` (or `test.csv`) whose row count the file must match; None
            expects the competition's 28,000 rows unless the file is a local run's.

    Returns:
        The number of rows.

    Raises:
        KitError: the file is missing, unreadable or invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KitError(f"Submission not found: {path}; give the path of a CSV a kernel wrote.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise KitError(f"Cannot read {path} as text ({error}); give a CSV file.") from None
    expected = count_rows(sample) if sample is not None else None
    return check_submission_text(text, expected, name=str(path))


def write_submission(labels: np.ndarray, path: str | os.PathLike, expected_rows: int | None = None) -> Path:
    """Validates and writes a submission; an existing file is never replaced.

    Args:
        labels: `(M,)` predicted digits.
        path: the final file name.
        expected_rows: the test split's rows, checked before writing.

    Returns:
        `path`.
    """
    text = submission_text(labels)
    check_submission_text(text, expected_rows, name=str(path))
    return files.write_text(Path(path), text, overwrite=False)


# --- the log of submissions -----------------------------------------------------------------------


def _is_score(value) -> bool:
    """Returns whether a logged public score is one: none yet, or a number a float holds."""
    return value is None or isinstance(value, float) or \
        isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def submissions_log_entries(log: Path) -> list[dict]:
    """Returns every entry of a `kaggle-submissions.jsonl`, oldest first; lines that are not one are skipped
    with a one-line warning. Empty when the log does not exist."""
    log = Path(log)
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        logger.warning("skipping %s: not readable (%s)", log, error)
        return []
    entries = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
            entry = None
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or \
                not _is_score(entry.get("public_score")):
            logger.warning("skipping %s line %d: not a submission entry (a file name, a score or none)", log,
                           line_number)
            continue
        entries.append(entry)
    return entries


def read_submissions_log(folder: Path) -> dict[str, dict]:
    """Reads what `make submit` recorded in `<folder>/kaggle-submissions.jsonl`.

    Returns:
        The submission of each CSV file name: its latest entry with a public score, else its latest entry.
        Empty when nothing was submitted.
    """
    submissions: dict[str, dict] = {}
    for entry in submissions_log_entries(Path(folder) / paths.KAGGLE_SUBMISSIONS_LOG_NAME):
        earlier = submissions.get(entry["file"])
        if earlier is None or entry.get("public_score") is not None or earlier.get("public_score") is None:
            submissions[entry["file"]] = entry
    return submissions


def check_submissions_log(file: Path) -> Path:
    """Checks, before anything is submitted, that the log beside `file` can be read and written.

    A submission Kaggle accepted counts against the day's quota: the log must not be found broken only after it.

    Returns:
        The log's path (it need not exist yet).

    Raises:
        KitError: the log is not readable UTF-8 text, not writable, or its folder takes no new file.
    """
    log = Path(file).parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME
    try:
        if log.exists() or log.is_symlink():
            log.read_text(encoding="utf-8")
            with open(log, "r+b"):
                pass
        # Each entry rewrites the log by a rename in its folder: the folder must take a new file.
        handle, probe = tempfile.mkstemp(prefix=f".{log.name}.", suffix=".tmp", dir=log.parent)
        os.close(handle)
        os.unlink(probe)
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)[:120]
        raise KitError(f"Cannot log submissions in {log} ({reason}); nothing was submitted: make it a readable text "
                       "file in a writable folder (or move it away), then submit.") from None
    return log


@contextlib.contextmanager
def _locked(log: Path) -> Iterator[None]:
    """Holds an exclusive `fcntl.flock` on the log (created empty if absent) while the block runs.

    The log is replaced by a rename on each write, so a lock that was granted on a file since replaced is taken
    again on the new one: two writers at once write one after the other, and neither loses a line.
    """
    while True:
        stream = open(log, "ab")
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
            if os.fstat(stream.fileno()).st_ino == os.stat(log).st_ino:
                break
        except FileNotFoundError:
            pass
        except BaseException:
            stream.close()
            raise
        stream.close()
    try:
        yield
    finally:
        stream.close()


def _rewrite_locked(log: Path, change) -> Path:
    """Rewrites the log under its lock: `change(existing text) -> new text`, written atomically.

    Raises:
        KitError: the log cannot be read or written.
    """
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with _locked(log):
            return files.write_text(log, change(log.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)[:120]
        raise KitError(f"Cannot write {log} ({reason}).") from None


def entry_key(entry: dict) -> tuple:
    """Returns what tells one logged submission from another: its file, time and message."""
    return entry.get("file"), entry.get("submitted_at"), entry.get("message")


def update_submissions_log(log: Path, updates: dict[tuple, dict]) -> Path:
    """Sets fields of logged submissions, under the log's lock, rewriting it atomically.

    The log is read again under the lock, so a line a submit added meanwhile is kept as it is.

    Args:
        log: a `kaggle-submissions.jsonl`.
        updates: the fields to set (e.g. `public_score`), by `entry_key` of the entries they go to.

    Raises:
        KitError: the log cannot be read or written.
    """
    def filled(existing: str) -> str:
        lines = []
        for line in existing.splitlines():
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                entry = None
            if isinstance(entry, dict) and entry_key(entry) in updates:
                line = json.dumps({**entry, **updates[entry_key(entry)]})
            if line.strip():
                lines.append(line + "\n")
        return "".join(lines)

    return _rewrite_locked(Path(log), filled)


def append_submissions_log(file: Path, message: str, submitted_at: str, run: str | None = None,
                           ref: int | None = None) -> Path:
    """Adds a submission to `<folder of file>/kaggle-submissions.jsonl`, under a lock, rewriting it atomically.

    Each line is `{"file": <csv name>, "message": ..., "submitted_at": <UTC ISO>, "public_score": null}`, with
    `"run"` when the file's run is known and `"ref"` when Kaggle numbered the submission; the score is null until
    `make scores` fetches it.

    Returns:
        The log's path.

    Raises:
        KitError: the log cannot be read or written.
    """
    entry = {"file": Path(file).name, "message": message, "submitted_at": submitted_at, "public_score": None}
    if run is not None:
        entry["run"] = run
    if ref is not None:
        entry["ref"] = ref

    def appended(existing: str) -> str:
        return existing + ("" if not existing or existing.endswith("\n") else "\n") + json.dumps(entry) + "\n"

    return _rewrite_locked(Path(file).parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME, appended)
