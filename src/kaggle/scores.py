"""The leaderboard's answer brought home (`make scores`): Kaggle's submissions matched to the kit's logs.

`kaggle competitions submissions -c digit-recognizer --csv` lists the account's submissions with their status and
public score. Each is matched to a line of a `kaggle-submissions.jsonl` (any folder under `submissions/`): by
Kaggle's submission number when the log kept it, else by file name and description within an hour of the time the
kit logged. The line gets `public_score`, `status` and `ref`; `make runs` shows the score beside the run's CV, and
`submissions/cv-vs-public.png` draws CV against public score for every submitted run.
"""

import csv
import datetime as dt
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from src import paths, plots, records, runs_table, submission
from src.errors import KitError
from src.kaggle.command import run_cli

logger = logging.getLogger(__name__)

# Kaggle's clock and the kit's may differ, and an upload takes a while: a submission is matched within this.
MATCH_WINDOW = dt.timedelta(hours=1)
PAGE_SIZE = 200
FIELDS = ("ref", "fileName", "date", "description", "status", "publicScore", "privateScore")


@dataclass(frozen=True)
class KaggleSubmission:
    """One submission as Kaggle lists it.

    Attributes:
        ref: its number on Kaggle.
        file_name: the file's name as uploaded.
        date: when Kaggle received it (UTC, naive), or None if unreadable.
        description: its description (the submit message).
        status: `pending`, `complete` or `error`.
        public_score: its public leaderboard score, once scored.
        private_score: its private score, when Kaggle shows one.
    """

    ref: int | None
    file_name: str
    date: dt.datetime | None
    description: str
    status: str
    public_score: float | None
    private_score: float | None


def _score(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None  # "None", "" or Kaggle's "-" while pending


def _utc(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(text).strip().rstrip("Z"))
    except ValueError:
        return None
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def parse_submissions(output: str) -> list[KaggleSubmission]:
    """Reads what `kaggle competitions submissions --csv` printed (lines before its header are skipped)."""
    lines = output.splitlines()
    start = next((index for index, line in enumerate(lines) if line.startswith("ref,")), None)
    if start is None:
        if "No submissions found" in output or not output.strip():
            return []
        raise KitError(f"Unexpected answer from `kaggle competitions submissions`: {output.strip()[:200]!r}; run it "
                       "by hand to see all it says.")
    found = []
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        missing = [name for name in FIELDS if name not in row]
        if missing:
            raise KitError(f"`kaggle competitions submissions` printed no {missing[0]} column; the kit reads "
                           f"{', '.join(FIELDS)} (check the kaggle CLI's version: `make setup`).")
        status = str(row["status"]).rsplit(".", 1)[-1].lower()  # `SubmissionStatus.COMPLETE`
        found.append(KaggleSubmission(
            ref=int(row["ref"]) if str(row["ref"]).isdigit() else None, file_name=row["fileName"],
            date=_utc(row["date"]), description=row["description"] if row["description"] != "None" else "",
            status=status, public_score=_score(row["publicScore"]), private_score=_score(row["privateScore"])))
    return found


def list_submissions() -> list[KaggleSubmission]:
    """Returns the account's submissions to the competition, newest first (its latest 200)."""
    return parse_submissions(run_cli(["competitions", "submissions", "-c", paths.COMPETITION, "--csv",
                                      "--page-size", str(PAGE_SIZE)], "list your submissions"))


def match(entries: list[dict], submitted: list[KaggleSubmission]) -> dict[int, KaggleSubmission]:
    """Matches log entries to Kaggle's submissions, each at most once.

    An entry with a `ref` matches the submission of that number; the others, submissions of their file name and
    description received within `MATCH_WINDOW` of their `submitted_at`, the closest pairs first.

    Args:
        entries: log lines (`submission.submissions_log_entries`), from every log at once.
        submitted: Kaggle's list.

    Returns:
        The index in `entries` of each matched entry, and its submission.
    """
    taken: set[int] = set()
    matched: dict[int, KaggleSubmission] = {}
    by_ref = {item.ref: position for position, item in enumerate(submitted) if item.ref is not None}
    for index, entry in enumerate(entries):
        position = by_ref.get(entry.get("ref"))
        if position is not None and position not in taken:
            taken.add(position)
            matched[index] = submitted[position]
    # The closest pairs first, over all entries at once: two alike submissions minutes apart each find their own.
    pairs = []
    for index, entry in enumerate(entries):
        when = _utc(str(entry.get("submitted_at")))
        if index in matched or when is None:
            continue
        pairs += [(abs(item.date - when), index, position) for position, item in enumerate(submitted)
                  if position not in taken and item.date is not None and item.file_name == entry["file"]
                  and item.description.strip() == str(entry.get("message", "")).strip()
                  and abs(item.date - when) <= MATCH_WINDOW]
    for _, index, position in sorted(pairs):
        if index not in matched and position not in taken:
            taken.add(position)
            matched[index] = submitted[position]
    return matched


@dataclass
class ScoresResult:
    """What `update_scores` did.

    Attributes:
        submissions: Kaggle's list.
        matched: `(log, entry)` of each submission the kit logged, its score filled in.
        unknown: the submissions no log holds (made on the website, from another machine, or logs deleted).
        updated_logs: the logs rewritten.
        picture: `cv-vs-public.png`, or None when no submitted run has both a CV and a public score.
        points: its `(run, CV, public score)` points.
    """

    submissions: list[KaggleSubmission]
    matched: list[tuple[Path, dict]] = field(default_factory=list)
    unknown: list[KaggleSubmission] = field(default_factory=list)
    updated_logs: list[Path] = field(default_factory=list)
    picture: Path | None = None
    points: list[tuple[str, float, float]] = field(default_factory=list)


def find_logs(root: Path) -> list[Path]:
    """Returns every `kaggle-submissions.jsonl` in `root` and below, in path order."""
    root = Path(root)
    return sorted(root.rglob(paths.KAGGLE_SUBMISSIONS_LOG_NAME)) if root.is_dir() else []


def update_scores(root: Path | None = None) -> ScoresResult:
    """Fetches Kaggle's submissions, fills the kit's logs with their scores, and draws CV against public score.

    Args:
        root: the folder whose logs (at any depth) are matched; default `submissions/` (`/kaggle/working` on
            Kaggle). The picture goes to `<root>/cv-vs-public.png`.

    Raises:
        KitError: Kaggle refused the call, or a log cannot be rewritten.
    """
    root = Path(root) if root is not None else paths.default_output_dir()
    result = ScoresResult(submissions=list_submissions())
    logs = find_logs(root)
    entries = [(log, entry) for log in logs for entry in submission.submissions_log_entries(log)]
    matched = match([entry for _, entry in entries], result.submissions)
    for index, item in matched.items():
        log, entry = entries[index]
        filled = {"public_score": item.public_score, "status": item.status, "ref": item.ref}
        if item.private_score is not None:
            filled["private_score"] = item.private_score
        if any(entry.get(key) != value for key, value in filled.items()):
            entry.update(filled)
            if log not in result.updated_logs:
                result.updated_logs.append(log)
        result.matched.append((log, entry))
    for log in result.updated_logs:
        submission.update_submissions_log(log, {submission.entry_key(entry): entry for owner, entry in entries
                                                if owner == log})
    taken = {id(item) for item in matched.values()}
    result.unknown = [item for item in result.submissions if id(item) not in taken]
    for log in logs:
        found = [record for _, record in records.find_records(log.parent)]
        rows = runs_table.runs_table(found, submission.read_submissions_log(log.parent))[1]
        result.points += runs_table.cv_public_points(rows)
    if result.points:
        result.picture = plots.draw_cv_vs_public(result.points, root / plots.CV_VS_PUBLIC)
    return result
