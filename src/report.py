"""A run's report: one self-contained HTML page with its settings, scores, folds and pictures.

The pictures are embedded as `data:` URIs and the style is inline, so the page is a single file that opens
offline, can be mailed, and survives the run's folder being moved or deleted.
"""

import base64
import html
import logging
from collections.abc import Sequence
from pathlib import Path

from src import files, plots, records, runs_table, submission
from src.errors import KitError

logger = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.muted { color: #777; }
"""


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _table(header: Sequence[str] | None, rows: Sequence[Sequence]) -> str:
    parts = ["<table>"]
    if header:
        parts.append("<tr>" + "".join(f"<th>{html.escape(name)}</th>" for name in header) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _score(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _leaks_text(leaks) -> str:
    if not isinstance(leaks, dict):
        return "- (not checked: a run older than the check)"
    text = f"{leaks.get('test_in_train', 0):,} of the {leaks.get('test_rows', 0):,} test images in the training data"
    if leaks.get("test_in_train"):
        text += ": the scores are leaks, not skill"
    across = leaks.get("duplicates_across_folds")
    return text + ("" if across is None else f"; {across:,} training images with a copy in another fold")


def report_html(record: dict, pictures: Sequence[tuple[str, bytes]] = (), kaggle: dict | None = None) -> str:
    """Returns the HTML page of a run.

    Args:
        record: the run record.
        pictures: `(file name, PNG bytes)` pairs, embedded in this order.
        kaggle: the run's entry in `make submit`'s log, or None when it was not submitted.

    Returns:
        A complete HTML5 document that needs no other file.
    """
    config = record.get("config") or {}
    folds = record.get("folds") or []
    cross_validated = isinstance(config.get("folds"), int) and config["folds"] > 1 and record.get("cv_mean") is not None
    seconds = record.get("seconds")
    scores = [
        ("CV accuracy (mean ± std over folds)",
         f"{record['cv_mean']:.4f} ± {record.get('cv_std') or 0:.4f}" if cross_validated else "- (no k-fold)"),
        ("out-of-fold accuracy", _score(record.get("oof_accuracy"))),
        ("test accuracy", _score(record.get("test_accuracy")) if record.get("test_accuracy") is not None
         else "- (the test split has no labels)"),
        ("minutes", "-" if seconds is None else f"{seconds / 60:.1f}"),
        ("submission", record.get("submission")),
        ("leak check", _leaks_text(record.get("leaks"))),
        ("Kaggle", "not submitted" if kaggle is None else
         f"submitted {kaggle.get('submitted_at') or ''}, public score "
         f"{'pending' if kaggle.get('public_score') is None else kaggle['public_score']}"),
    ]
    data = record.get("data") or {}
    body = [
        f"<h1>{html.escape(record['run'])}</h1>",
        f"<p class=\"muted\">kernel {html.escape(str(record.get('kernel')))}, model "
        f"{html.escape(str(config.get('model')))}, created {html.escape(str(record.get('created', '?')))}</p>",
        "<h2>Scores</h2>",
        _table(None, scores),
    ]
    blend = record.get("blend")
    if blend:
        body += ["<h2>Blended runs</h2>",
                 _table(("run", "weight"), list(zip(blend.get("runs", []), blend.get("weights", []))))]
    body += ["<h2>Settings</h2>", _table(None, sorted(config.items()))]
    if folds:
        rows = []
        for fold in folds:
            history = fold.get("history") or {}
            rows.append((fold.get("fold", 0) + 1, _score(fold.get("validation_accuracy")),
                         _score(fold.get("test_accuracy")), fold.get("seconds"), len(history.get("loss", [])),
                         (history.get("loss") or [None])[-1], (history.get("val_loss") or [None])[-1]))
        body += ["<h2>Folds</h2>", _table(("fold", "validation accuracy", "test accuracy", "seconds", "epochs",
                                           "final loss", "final val_loss"), rows)]
    body += ["<h2>Data</h2>", _table(None, [
        ("source", data.get("source")), ("kind", data.get("kind")), ("sha256", data.get("sha256")),
        ("training rows", data.get("train_rows")), ("test rows", data.get("test_rows")),
        ("test labels", data.get("test_labels")),
    ])]
    body.append("<h2>Pictures</h2>")
    if not pictures:
        body.append("<p class=\"muted\">No pictures: the run was made with --no-plots, or its folder is gone.</p>")
    for name, content in pictures:
        caption = plots.PICTURE_CAPTIONS.get(name, name)
        encoded = base64.b64encode(content).decode("ascii")
        body.append(f"<figure><img src=\"data:image/png;base64,{encoded}\" alt=\"{html.escape(caption)}\">"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    versions = ", ".join(f"{name} {version}" for name, version in (record.get("versions") or {}).items())
    commit = record.get("git_commit") or "unknown"
    body += ["<h2>Provenance</h2>", _table(None, [
        ("versions", versions or None),
        ("git commit", f"{commit}{' (with uncommitted changes)' if record.get('git_dirty') else ''}"),
    ])]
    return "\n".join([
        "<!DOCTYPE html>",
        "<html lang=\"en\">",
        "<head>",
        "<meta charset=\"utf-8\">",
        f"<title>{html.escape(record['run'])}: digit-kit run</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
        "",
    ])


def run_pictures(record_path: Path, record: dict) -> list[tuple[str, bytes]]:
    """Reads the PNGs in a run's folder (`<out>/<run>/`), skipping any file that is not a PNG.

    Returns:
        `(file name, bytes)` pairs in `plots.picture_paths` order.
    """
    pictures = []
    for path in plots.picture_paths(Path(record_path).parent / record["run"]):
        content = path.read_bytes()
        if not content.startswith(PNG_SIGNATURE):
            logger.warning("report: skipping %s: not a PNG file", path)
            continue
        pictures.append((path.name, content))
    return pictures


def write_report(record_path: Path, out_path: Path | None = None) -> Path:
    """Writes a run's HTML page.

    The page is derived from the record and the pictures, so writing it again replaces it (atomically).

    Args:
        record_path: the run's `.json` record.
        out_path: the page; None for `<out>/<run>.html` beside the record.

    Returns:
        The page's path.

    Raises:
        KitError: the record is missing, is not a run record, or is damaged (`records.record_problem`).
    """
    record_path = Path(record_path)
    record = records.read_record(record_path)
    if not records.is_run_record(record):
        raise KitError(f"{record_path} is not a run record; give a run's .json as `python -m src runs` lists them.")
    problem = records.record_problem(record)
    if problem is not None:
        raise KitError(f"{record_path} is a damaged run record: {problem}; give a run's .json as the kit wrote it.")
    submissions = submission.read_submissions_log(record_path.parent)
    kaggle = runs_table.submission_of(record, submissions)
    pictures = run_pictures(record_path, record)
    if kaggle is not None and kaggle.get("public_score") is not None:
        # The folder's submitted runs, CV against public score, this run marked: does Kaggle agree with its CV?
        rows = runs_table.runs_table([found for _, found in records.find_records(record_path.parent)], submissions)[1]
        points = runs_table.cv_public_points(rows)
        if points:
            pictures.append((plots.CV_VS_PUBLIC, plots.png_bytes(plots.cv_vs_public_figure(points, record["run"]))))
    page = report_html(record, pictures, kaggle)
    target = Path(out_path) if out_path is not None else record_path.with_suffix(".html")
    return files.write_text(target, page)
