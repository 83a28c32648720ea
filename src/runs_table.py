"""The runs table (`make runs`): every run record of a folder, best CV first, with the settings that differ.

It reads what runs leave behind (records and the submissions log), so it lists runs of any kernel or version.
"""

import csv
import io
import json
import math
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from src import config
from src.records import leaked_test_images
from src.errors import KitError

RUNS_FORMATS = ("table", "csv", "markdown")
# Config keys never shown among the differing settings: they have a column of their own (kernel, model, folds), or
# say where a run read and wrote and how it talked rather than what it computed.
HIDDEN_SETTINGS = frozenset(config.field_names("shown", False))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _data_label(record: dict) -> str:
    data = record.get("data") or {}
    return f"{Path(str(data.get('source', '?'))).name}:{str(data.get('sha256') or '?')[:8]}"


def _printable(text: str) -> str:
    """Returns `text` without control, format and separator characters: a record may hold escape sequences or
    bidirectional overrides that would rewrite the terminal or reorder the table."""
    return "".join(character for character in text
                   if not unicodedata.category(character).startswith("C") and unicodedata.category(character)
                   not in ("Zl", "Zp"))


def _setting_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else _printable(str(value))


def runs_table(records: Sequence[dict], submissions: dict[str, dict] | None = None, *, kernel: str | None = None,
               model: str | None = None) -> tuple[list[str], list[dict]]:
    """Builds the rows of the runs table, best first.

    Args:
        records: run records (`find_records`).
        submissions: `read_kaggle_submissions`' answer; None when unknown.
        kernel: keep only runs of this kernel.
        model: keep only runs of this model.

    Returns:
        `(settings, rows)`: the config keys whose values differ between the kept runs (`"data"` too when
        they read different data), and one dict per run with `run`, `kernel`, `model`, `settings`
        (key -> value), `folds`, `cv_mean`, `cv_std` (None without k-fold), `test_accuracy`, `minutes`,
        `submitted` (bool), `public_score` and `test_leaks` (test images its training data held, see
        `src.leaks`). Runs with a CV score come first, by CV mean; then the others by test accuracy.
    """
    submissions = submissions or {}
    kept = [record for record in records
            if (kernel is None or record["kernel"] == kernel)
            and (model is None or record["config"].get("model") == model)]
    keys = sorted({key for record in kept for key in record["config"]} - HIDDEN_SETTINGS)
    # A key only some runs have (a blend has no epochs) differs only if the runs that have it disagree.
    settings = [key for key in keys
                if len({json.dumps(record["config"][key], sort_keys=True) for record in kept
                        if key in record["config"]}) > 1]
    if len({_data_label(record) for record in kept}) > 1:
        settings.append("data")
    rows = []
    for record in kept:
        config = record["config"]
        folds = config.get("folds")
        # With one fold, cv_mean holds the test accuracy (nothing else was held out): not a CV score.
        cross_validated = isinstance(folds, int) and folds > 1 and _number(record.get("cv_mean")) is not None
        seconds = _number(record.get("seconds"))
        submitted = submission_of(record, submissions)
        values = {key: config.get(key) for key in settings if key != "data"}
        if "data" in settings:
            values["data"] = _data_label(record)
        rows.append({
            "run": record["run"],
            "kernel": record["kernel"],
            "model": config.get("model"),
            "settings": values,
            "folds": folds,
            "cv_mean": _number(record.get("cv_mean")) if cross_validated else None,
            "cv_std": _number(record.get("cv_std")) if cross_validated else None,
            "test_accuracy": _number(record.get("test_accuracy")),
            "minutes": None if seconds is None else seconds / 60,
            "submitted": submitted is not None,
            "public_score": _number(submitted.get("public_score")) if submitted else None,
            "test_leaks": leaked_test_images(record),
        })

    def rank(row: dict):
        if row["cv_mean"] is not None:
            return (0, -row["cv_mean"], row["run"])
        test = row["test_accuracy"]
        return (1, -test if test is not None else math.inf, row["run"])

    return settings, sorted(rows, key=rank)


def submission_of(record: dict, submissions: dict[str, dict]) -> dict | None:
    """Returns a run's entry in a folder's submissions log (`submission.read_submissions_log`), or None.

    A run's own CSV is logged under its name; a kernel output's `submission.csv` under that name, with the run's
    name beside it.
    """
    entry = submissions.get(str(record.get("submission")))
    if entry is None:
        entry = next((entry for entry in submissions.values() if entry.get("run") == record.get("run")), None)
    return entry


def cv_public_points(rows: Sequence[dict]) -> list[tuple[str, float, float]]:
    """Returns `(run, CV accuracy, public score)` of the rows (`runs_table`'s) that have both, for the picture."""
    return [(row["run"], row["cv_mean"], row["public_score"]) for row in rows
            if row["cv_mean"] is not None and row["public_score"] is not None]


def _display_cells(settings: list[str], row: dict, leak_column: bool) -> list[str]:
    def score(value):
        return "-" if value is None else f"{value:.4f}"

    cv = "-" if row["cv_mean"] is None else f"{row['cv_mean']:.4f} ± {row['cv_std'] or 0:.4f}"
    kaggle = "no"
    if row["submitted"]:
        kaggle = "yes" if row["public_score"] is None else f"yes {row['public_score']:.5f}"
    cells = [_printable(row["run"]), _printable(row["kernel"]), _setting_text(row["model"]),
             *(_setting_text(row["settings"].get(key)) for key in settings),
             _setting_text(row["folds"]) or "-", cv, score(row["test_accuracy"]),
             "-" if row["minutes"] is None else f"{row['minutes']:.1f}", kaggle]
    if leak_column:
        cells.append(f"{row['test_leaks']:,} test images" if row["test_leaks"] else "")
    return cells


def format_runs_table(settings: list[str], rows: list[dict], output_format: str = "table") -> str:
    """Renders `runs_table`'s answer.

    Args:
        settings: the differing config keys, one column each.
        rows: the runs, in the order to print.
        output_format: `table` (aligned text), `markdown`, or `csv` (raw numbers, one column per value).

    Returns:
        The text, ending with a newline.
    """
    if output_format not in RUNS_FORMATS:
        raise KitError(f"Unknown format; choose one of {', '.join(RUNS_FORMATS)}. Received: format={output_format!r}.")
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["run", "kernel", "model", *map(_printable, settings), "folds", "cv_mean", "cv_std",
                         "test_accuracy", "minutes", "kaggle_submitted", "public_score", "test_leaks"])
        for row in rows:
            writer.writerow([_printable(row["run"]), _printable(row["kernel"]), _setting_text(row["model"]),
                             *(_setting_text(row["settings"].get(key)) for key in settings),
                             _setting_text(row["folds"]),
                             *("" if row[key] is None else f"{row[key]:.6g}"
                               for key in ("cv_mean", "cv_std", "test_accuracy", "minutes")),
                             "yes" if row["submitted"] else "no",
                             "" if row["public_score"] is None else f"{row['public_score']:g}", row["test_leaks"]])
        return buffer.getvalue()
    # A run whose training data held test images gets a column of its own: its scores are leaks, not skill.
    leak_column = any(row["test_leaks"] for row in rows)
    header = ["run", "kernel", "model", *map(_printable, settings), "folds", "cv accuracy", "test accuracy", "minutes",
              "kaggle", *(["leak"] if leak_column else [])]
    body = [_display_cells(settings, row, leak_column) for row in rows]
    if output_format == "markdown":
        lines = [header, ["---"] * len(header), *body]
        return "".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |\n" for line in lines)
    widths = [max(len(line[column]) for line in [header, *body]) for column in range(len(header))]
    lines = [header, ["-" * width for width in widths], *body]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n"
                   for line in lines)
