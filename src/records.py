"""Run records: a run's name and folder, resuming an unfinished run, its JSON record, its probabilities,
the runs table and blends."""

import csv
import datetime as dt
import fcntl
import hashlib
import io
import json
import logging
import math
import platform
import shutil
import subprocess
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from src import files, paths
from src.errors import KitError

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".csv", ".json", ".npz")
RUNS_FORMATS = ("table", "csv", "markdown")
BLEND_KERNEL = "blend"
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
# Settings that change where a run reads and writes or how it talks, not what it computes: two commands
# that differ only in these are the same run. The data's identity is its sha256, not its path.
NOT_IDENTITY = ("data", "out", "quiet", "restore", "restart", "plots", "budget")


@dataclass(frozen=True)
class Run:
    """A run's place on disk.

    Attributes:
        out_dir: the folder receiving the run's outputs.
        name: `<kernel>-<UTC timestamp>`, with `-2`, `-3`, ... when that name was taken.
        resumed: whether this is an unfinished run of the same configuration, picked up again.
        lock: the open `run.lock` whose exclusive `flock` marks the run as in progress; the lock goes
            with the process, however it ends.
    """

    out_dir: Path
    name: str
    resumed: bool = False
    lock: IO | None = field(default=None, compare=False, repr=False)

    def path(self, suffix: str) -> Path:
        """Returns the output file `<name><suffix>`."""
        return self.out_dir / f"{self.name}{suffix}"

    @property
    def workdir(self) -> Path:
        """The run's folder for work in progress and pictures."""
        return self.out_dir / self.name


def run_identity(config: dict, data_sha256: str) -> dict:
    """Returns what makes two runs the same run: every setting that changes results, and the data.

    Args:
        config: `RunConfig.to_dict()`.
        data_sha256: the data source's sha256.

    Returns:
        A JSON-ready dict; settings added to `RunConfig` later are part of it unless listed in `NOT_IDENTITY`.
    """
    identity = {name: value for name, value in config.items() if name not in NOT_IDENTITY}
    identity["data_sha256"] = data_sha256
    return identity


def identity_sha256(identity: dict) -> str:
    """Returns the sha256 of an identity's canonical JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


def _try_lock(workdir: Path) -> IO | None:
    """Takes the run's lock without waiting; returns the open lock file, or None when another process holds it."""
    handle = open(workdir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _read_run_file(workdir: Path) -> dict | None:
    try:
        return json.loads((workdir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_run_file(run: Run, identity: dict, state: str) -> None:
    content = {
        "run": run.name,
        "state": state,
        "identity_sha256": identity_sha256(identity),
        "identity": identity,
        "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    files.write_text(run.workdir / RUN_FILE, json.dumps(content, indent=2) + "\n")


def _is_unfinished(run: Run, key: str) -> bool:
    content = _read_run_file(run.workdir)
    return (content is not None and content.get("identity_sha256") == key and content.get("state") == "running"
            and not run.path(".json").exists())


def unfinished_runs(kernel: str, out_dir: Path, identity: dict) -> list[Run]:
    """Returns the runs in `out_dir` of this identity that never finished, newest first (locked or not)."""
    if not out_dir.is_dir():
        return []
    key = identity_sha256(identity)
    candidates = [Run(out_dir=out_dir, name=folder.name) for folder in out_dir.iterdir()
                  if folder.is_dir() and folder.name.startswith(f"{kernel}-") and (folder / RUN_FILE).is_file()]
    return sorted((run for run in candidates if _is_unfinished(run, key)), key=lambda run: run.name, reverse=True)


def _discard(run: Run) -> None:
    """Deletes an unfinished run: its folder, any outputs it began writing, its TensorBoard logs."""
    shutil.rmtree(run.workdir, ignore_errors=True)
    for suffix in OUTPUT_SUFFIXES:
        run.path(suffix).unlink(missing_ok=True)
    shutil.rmtree(paths.logs_dir() / run.name, ignore_errors=True)


def _resume(candidates: list[Run], key: str) -> Run | None:
    """Locks and returns the newest candidate no other process is running, or None."""
    for candidate in candidates:
        lock = _try_lock(candidate.workdir)
        if lock is None:
            logger.info("run: %s, of the same configuration, is running in another process (its folder is "
                        "locked); starting a separate run.", candidate.workdir)
            continue
        # Checked again under the lock: the run may have finished while this process looked.
        if not _is_unfinished(candidate, key):
            lock.close()
            continue
        # A run killed while writing its outputs is resumed from its folds; what it had written goes,
        # and is written again, identical, from the same saved folds.
        for suffix in (".csv", ".npz"):
            candidate.path(suffix).unlink(missing_ok=True)
        return Run(out_dir=candidate.out_dir, name=candidate.name, resumed=True, lock=lock)
    return None


def start_run(
    kernel: str,
    out_dir: Path,
    now: dt.datetime | None = None,
    *,
    identity: dict | None = None,
    restart: bool = False,
) -> Run:
    """Resumes the unfinished run of the same identity, or reserves a new run name by creating its folder.

    A run's folder holds `run.json` (its identity and whether it finished) and `run.lock`, which the
    running process holds with an exclusive `flock`. The same command again finds the newest unfinished
    run of its identity that no process holds, and continues it: its finished folds are reused and the
    fold it was training resumes from its checkpoints. A run that another process holds is left alone
    and a separate run starts, so two commands started together never share a folder.

    Args:
        kernel: names the run.
        out_dir: the output folder.
        now: the time that names a new run; the current time when None.
        identity: `run_identity(...)`; None starts a new run that no later command resumes.
        restart: delete the unfinished runs of this identity (those no process holds) and start anew.

    Returns:
        The `Run`, locked; `resumed` says whether it continues an earlier one.

    Raises:
        KitError: the folder cannot be created or written.
    """
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if identity is not None:
            key = identity_sha256(identity)
            candidates = unfinished_runs(kernel, out_dir, identity)
            if restart:
                for candidate in candidates:
                    lock = _try_lock(candidate.workdir)
                    if lock is None:
                        logger.info("run: %s is running in another process; --restart leaves it alone.",
                                    candidate.workdir)
                        continue
                    _discard(candidate)
                    lock.close()
                    logger.info("run: discarded the unfinished run %s (--restart).", candidate.name)
            else:
                resumed = _resume(candidates, key)
                if resumed is not None:
                    logger.info("run: resuming the unfinished run %s of the same configuration and data; "
                                "pass --restart to start over.", resumed.name)
                    return resumed
        for attempt in range(1, 1000):
            name = f"{kernel}-{stamp}" if attempt == 1 else f"{kernel}-{stamp}-{attempt}"
            if any((out_dir / f"{name}{suffix}").exists() for suffix in OUTPUT_SUFFIXES):
                continue
            try:
                (out_dir / name).mkdir()
            except FileExistsError:
                continue
            # Locked before run.json exists: no other process can take a folder it sees as a run.
            run = Run(out_dir=out_dir, name=name, lock=_try_lock(out_dir / name))
            if identity is not None:
                _write_run_file(run, identity, "running")
            return run
    except OSError as error:
        raise KitError(files.describe_os_error(error, out_dir)) from None
    raise KitError(f"{out_dir}: too many runs named {kernel}-{stamp}; wait a second and retry.")


def finish_run(run: Run) -> None:
    """Marks a run finished, so that no later command resumes it, and releases its lock."""
    content = _read_run_file(run.workdir)
    if content is not None:
        _write_run_file(run, content["identity"], "finished")
    if run.lock is not None:
        run.lock.close()


def run_model_name(path: Path) -> str | None:
    """Returns the model a run trained, read from the `run.json` in `path` or a folder above it, or None."""
    for folder in [path, *path.parents][:4]:
        content = _read_run_file(folder)
        if content is not None:
            return content.get("identity", {}).get("model")
    return None


def git_state() -> tuple[str | None, bool | None]:
    """Returns the repository's commit and whether its tracked files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def library_versions() -> dict[str, str]:
    """Returns the versions of Python and the libraries that decide a run's numbers."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "pandas", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _fit_seconds(history: dict) -> float | None:
    """Returns the seconds a fold spent in its epochs (training + validation), or None if not timed."""
    epoch_seconds = history.get("epoch_seconds")
    return round(float(sum(epoch_seconds)), 2) if epoch_seconds else None


def build_record(run: Run, config, dataset, result, *, data_sha256: str, seconds: float, submission: Path) -> dict:
    """Returns the JSON-ready record of a finished run."""
    commit, dirty = git_state()
    return {
        "run": run.name,
        "kernel": config.kernel,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "data": {
            "source": str(dataset.source),
            "kind": dataset.kind,
            "sha256": data_sha256,
            "train_rows": int(len(dataset.y_train)),
            "test_rows": int(len(dataset.x_test)),
            "test_labels": dataset.has_test_labels,
        },
        "folds": [
            {
                "fold": fold.fold_index,
                "validation_accuracy": _rounded(fold.validation_accuracy),
                "test_accuracy": _rounded(fold.test_accuracy),
                "seconds": round(fold.seconds, 2),
                "fit_seconds": _fit_seconds(fold.history),
                "history": fold.history,
            }
            for fold in result.folds
        ],
        "cv_mean": _rounded(result.cv_mean),
        "cv_std": _rounded(result.cv_std),
        "oof_accuracy": _rounded(result.oof_accuracy),
        "test_accuracy": _rounded(result.test_accuracy),
        "seconds": round(seconds, 2),
        "submission": submission.name,
        "probabilities": run.path(".npz").name,
        "versions": library_versions(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def write_record(run: Run, record: dict) -> Path:
    """Writes the run record `<name>.json` atomically; never replaces one."""
    return files.write_text(run.path(".json"), json.dumps(record, indent=2) + "\n", overwrite=False)


def write_probabilities(run: Run, result) -> Path:
    """Writes `<name>.npz`: `test_probabilities (M, 10)` and, for k-fold, `oof_probabilities (N, 10)`."""
    arrays = {"test_probabilities": result.test_probabilities}
    if result.oof_probabilities is not None:
        arrays["oof_probabilities"] = result.oof_probabilities
    path = run.path(".npz")
    with files.atomic_path(path, overwrite=False) as temporary, open(temporary, "wb") as stream:
        np.savez_compressed(stream, **arrays)
    return path


def read_record(path: Path) -> dict:
    """Reads a run record."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise KitError(f"Cannot read run record {path} ({error}).") from None


# --- the runs table ---------------------------------------------------------------------------------

# Config keys never shown as differing settings: they have their own column, or say where a run read and
# wrote rather than what it computed.
_NOT_SETTINGS = ("kernel", "model", "folds", "data", "out", "quiet", "plots")


def is_run_record(value) -> bool:
    """Returns whether a parsed JSON value looks like a run record (`run`, `kernel`, `config`)."""
    return (isinstance(value, dict) and isinstance(value.get("run"), str) and isinstance(value.get("kernel"), str)
            and isinstance(value.get("config"), dict))


def find_records(folder: Path) -> list[tuple[Path, dict]]:
    """Reads the run records `<folder>/*.json`.

    A file that is not JSON, or JSON that is not a run record (e.g. a `kernel-metadata.json`), is skipped
    with a one-line warning.

    Returns:
        `(path, record)` pairs in file-name order.

    Raises:
        KitError: `folder` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise KitError(f"No such folder: {folder}; pass --dir the folder a kernel wrote its runs to (its --out).")
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            logger.warning("skipping %s: not readable as JSON (%s)", path, error)
            continue
        if not is_run_record(record):
            logger.warning("skipping %s: not a run record (it lacks run, kernel or config)", path)
            continue
        found.append((path, record))
    return found


def read_kaggle_submissions(folder: Path) -> dict[str, dict]:
    """Reads what `make submit` recorded in `<folder>/kaggle-submissions.jsonl`.

    Returns:
        The submission of each CSV file name: its latest entry with a public score, else its latest entry.
        Empty when nothing was submitted.
    """
    path = Path(folder) / paths.KAGGLE_SUBMISSIONS_LOG_NAME
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("skipping %s: not readable (%s)", path, error)
        return {}
    submissions: dict[str, dict] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            logger.warning("skipping %s line %d: not a submission entry with a file name", path, line_number)
            continue
        earlier = submissions.get(entry["file"])
        if earlier is None or entry.get("public_score") is not None or earlier.get("public_score") is None:
            submissions[entry["file"]] = entry
    return submissions


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _data_label(record: dict) -> str:
    data = record.get("data") or {}
    return f"{Path(str(data.get('source', '?'))).name}:{str(data.get('sha256') or '?')[:8]}"


def _setting_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


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
        `submitted` (bool) and `public_score`. Runs with a CV score come first, by CV mean; then the others
        by test accuracy.
    """
    submissions = submissions or {}
    kept = [record for record in records
            if (kernel is None or record["kernel"] == kernel)
            and (model is None or record["config"].get("model") == model)]
    keys = sorted({key for record in kept for key in record["config"]} - set(_NOT_SETTINGS))
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
        submitted = submissions.get(str(record.get("submission")))
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
        })

    def rank(row: dict):
        if row["cv_mean"] is not None:
            return (0, -row["cv_mean"], row["run"])
        test = row["test_accuracy"]
        return (1, -test if test is not None else math.inf, row["run"])

    return settings, sorted(rows, key=rank)


def _display_cells(settings: list[str], row: dict) -> list[str]:
    def score(value):
        return "-" if value is None else f"{value:.4f}"

    cv = "-" if row["cv_mean"] is None else f"{row['cv_mean']:.4f} ± {row['cv_std'] or 0:.4f}"
    kaggle = "no"
    if row["submitted"]:
        kaggle = "yes" if row["public_score"] is None else f"yes {row['public_score']:.5f}"
    return [row["run"], row["kernel"], _setting_text(row["model"]),
            *(_setting_text(row["settings"].get(key)) for key in settings),
            _setting_text(row["folds"]) or "-", cv, score(row["test_accuracy"]),
            "-" if row["minutes"] is None else f"{row['minutes']:.1f}", kaggle]


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
        writer.writerow(["run", "kernel", "model", *settings, "folds", "cv_mean", "cv_std", "test_accuracy",
                         "minutes", "kaggle_submitted", "public_score"])
        for row in rows:
            writer.writerow([row["run"], row["kernel"], _setting_text(row["model"]),
                             *(_setting_text(row["settings"].get(key)) for key in settings),
                             _setting_text(row["folds"]),
                             *("" if row[key] is None else f"{row[key]:.6g}"
                               for key in ("cv_mean", "cv_std", "test_accuracy", "minutes")),
                             "yes" if row["submitted"] else "no",
                             "" if row["public_score"] is None else f"{row['public_score']:g}"])
        return buffer.getvalue()
    header = ["run", "kernel", "model", *settings, "folds", "cv accuracy", "test accuracy", "minutes", "kaggle"]
    body = [_display_cells(settings, row) for row in rows]
    if output_format == "markdown":
        lines = [header, ["---"] * len(header), *body]
        return "".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |\n" for line in lines)
    widths = [max(len(line[column]) for line in [header, *body]) for column in range(len(header))]
    lines = [header, ["-" * width for width in widths], *body]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() + "\n"
                   for line in lines)


# --- blends ------------------------------------------------------------------------------------------


def find_record(run: str, folder: Path) -> Path:
    """Finds a run's record from its name, or from the path of its record, CSV, probabilities or folder.

    Args:
        run: e.g. `mnist-cnn-20250101T000000Z`, `submissions/mnist-cnn-20250101T000000Z.csv`.
        folder: where a bare name is looked up.

    Returns:
        The path of `<name>.json`.

    Raises:
        KitError: no such record.
    """
    given = Path(run)
    if given.suffix in OUTPUT_SUFFIXES:
        candidates = [given.with_suffix(".json"), Path(folder) / given.with_suffix(".json").name]
    else:
        candidates = [Path(f"{given}.json"), Path(folder) / f"{given.name}.json"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise KitError(f"Run not found: no record {candidates[-1]}; give a run name as `python -m src runs` lists it, "
                   f"or the path of its .json. Received: {run!r}.")


def read_run(record_path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads a run's record and its saved probabilities.

    Returns:
        `(record, arrays)`: arrays hold `test_probabilities (M, 10)` and, for k-fold, `oof_probabilities (N, 10)`.

    Raises:
        KitError: the record or its `.npz` is missing, unreadable, or not a run's.
    """
    record_path = Path(record_path)
    record = read_record(record_path)
    if not is_run_record(record) or not isinstance(record.get("probabilities"), str):
        raise KitError(f"{record_path} is not a run record with saved probabilities; give a run's .json.")
    npz_path = record_path.parent / record["probabilities"]
    try:
        with np.load(npz_path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
    except FileNotFoundError:
        raise KitError(f"{npz_path} is missing: run {record['run']}'s probabilities are needed to blend it.") from None
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise KitError(f"Cannot read {npz_path} ({error}); the run's probabilities are damaged.") from None
    for key, array in arrays.items():
        if key.endswith("_probabilities") and (array.ndim != 2 or array.shape[1] != 10):
            raise KitError(f"{npz_path}: {key} must have shape (rows, 10). Received: {key}.shape={array.shape}.")
    if "test_probabilities" not in arrays:
        raise KitError(f"{npz_path} holds no test_probabilities; it is not a run's probabilities file.")
    return record, arrays


def blend_weights(weights: Sequence[float] | None, num_runs: int) -> np.ndarray:
    """Checks blend weights and scales them to sum to 1.

    Args:
        weights: one non-negative weight per run; None for equal weights.
        num_runs: how many runs are blended.

    Returns:
        `(num_runs,)` float64 weights summing to 1.

    Raises:
        KitError: the count differs from the runs', a weight is negative or not finite, or all are zero.
    """
    if weights is None:
        return np.full(num_runs, 1.0 / num_runs)
    values = np.asarray(list(weights), dtype=np.float64)
    if len(values) != num_runs:
        raise KitError(f"Give one weight per run: {num_runs} runs, {len(values)} weights. "
                       f"Received: weights={list(weights)}.")
    if not np.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        raise KitError(f"Weights must be finite, non-negative and not all zero. Received: weights={list(weights)}.")
    return values / values.sum()


def _blend_dataset(record: dict, data_path: str | None):
    """Loads the runs' data for its labels; None (with a warning) when the recorded source is gone or changed."""
    from src import data

    source = data_path if data_path is not None else (record.get("data") or {}).get("source")
    expected = (record.get("data") or {}).get("sha256")
    try:
        dataset = data.load_dataset(source) if source else None
        problem = None if dataset is None else (
            None if data.source_sha256(dataset.source) == expected else
            f"{dataset.source} is not the data the runs were trained on (its sha256 differs)"
        )
    except KitError as error:
        dataset, problem = None, str(error)
    if dataset is not None and problem is None:
        return dataset
    hint = "pass --data the file or folder the runs were trained on"
    if data_path is not None:
        raise KitError(f"{problem}; {hint}.")
    logger.warning("blend: accuracies unknown: %s; %s.", problem or "the runs record no data source", hint)
    return None


def _fold_scores(probabilities: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> list[float]:
    from src import training

    return [training.accuracy(probabilities[validation], labels[validation])
            for _, validation in training.fold_splits(labels, folds, seed)]


def blend_runs(record_paths: Sequence[Path], weights: Sequence[float] | None = None, *, out_dir: Path | None = None,
               data_path: str | None = None, plots: bool = True) -> dict:
    """Averages the saved probabilities of runs into a new run: submission, probabilities and record.

    The test probabilities are always blended. The out-of-fold probabilities are blended too when every run
    has them and the runs share their folds (same data, number of folds and seed); the blend's CV score per
    fold is then measured on the same splits. Accuracies need the runs' labelled data, read again from the
    recorded source (or `data_path`) and checked against the recorded sha256.

    Args:
        record_paths: the runs' `.json` records; the same run may appear more than once.
        weights: one per run; None for equal weights.
        out_dir: where the blend's files go; None for the first run's folder.
        data_path: the runs' data, when it has moved since they ran.
        plots: draw the confusion matrices and mistakes of the blend.

    Returns:
        The blend's run record, with the paths written under `"outputs"`.

    Raises:
        KitError: fewer than two runs, runs of different data, bad weights, or an unreadable run.
    """
    from src import submission, training

    started = time.perf_counter()
    if len(record_paths) < 2:
        raise KitError(f"A blend needs at least two runs (the same run twice is allowed). "
                       f"Received: {len(record_paths)} run.")
    runs = [read_run(path) for path in record_paths]
    scale = blend_weights(weights, len(runs))
    records = [record for record, _ in runs]
    hashes = {(record.get("data") or {}).get("sha256") for record in records}
    if len(hashes) != 1 or None in hashes:
        raise KitError("Runs trained on different data cannot be blended: their data sha256 differ. "
                       f"Received: {', '.join(record['run'] for record in records)}.")
    shapes = {arrays["test_probabilities"].shape for _, arrays in runs}
    if len(shapes) != 1:
        raise KitError(f"The runs predicted different test splits. Received: shapes {sorted(shapes)}.")
    test_probabilities = sum(weight * arrays["test_probabilities"].astype(np.float64)
                             for weight, (_, arrays) in zip(scale, runs)).astype(np.float32)

    splits = {(record["config"].get("folds"), record["config"].get("seed")) for record in records}
    shares_folds = len(splits) == 1 and all("oof_probabilities" in arrays for _, arrays in runs)
    folds, seed = next(iter(splits)) if shares_folds else (None, None)
    oof_probabilities = None
    if shares_folds:
        oof_probabilities = sum(weight * arrays["oof_probabilities"].astype(np.float64)
                                for weight, (_, arrays) in zip(scale, runs)).astype(np.float32)
    else:
        logger.info("blend: test probabilities only; out-of-fold ones need k-fold runs with the same folds and seed")

    dataset = _blend_dataset(records[0], data_path)
    oof_accuracy = test_accuracy = None
    fold_scores: list[float] = []
    if dataset is not None:
        if len(dataset.x_test) != len(test_probabilities):
            raise KitError(f"{dataset.source} has {len(dataset.x_test)} test images but the runs predicted "
                           f"{len(test_probabilities)}; pass --data the runs' data.")
        if dataset.has_test_labels:
            test_accuracy = training.accuracy(test_probabilities, dataset.y_test)
        if oof_probabilities is not None:
            oof_accuracy = training.accuracy(oof_probabilities, dataset.y_train)
            # The splits are recomputed from the labels and seed; each run's own fold scores prove them equal.
            for record, arrays in runs:
                recorded = [_number(fold.get("validation_accuracy")) for fold in record.get("folds", [])]
                measured = _fold_scores(arrays["oof_probabilities"], dataset.y_train, folds, seed)
                if (len(recorded) != len(measured) or None in recorded
                        or not np.allclose(recorded, measured, atol=1e-6)):
                    logger.warning("blend: the folds of %s cannot be reproduced here; no per-fold CV score",
                                   record["run"])
                    break
            else:
                fold_scores = _fold_scores(oof_probabilities, dataset.y_train, folds, seed)

    run = start_run(BLEND_KERNEL, Path(out_dir) if out_dir is not None else Path(record_paths[0]).parent)
    result = training.CrossValidation(folds=[], oof_probabilities=oof_probabilities,
                                      test_probabilities=test_probabilities, oof_accuracy=oof_accuracy,
                                      test_accuracy=test_accuracy)
    probabilities_path = write_probabilities(run, result)
    submission_path = submission.write_submission(result.test_labels, run.path(".csv"),
                                                  expected_rows=len(test_probabilities))
    commit, dirty = git_state()
    record = {
        "run": run.name,
        "kernel": BLEND_KERNEL,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {"kernel": BLEND_KERNEL, "model": BLEND_KERNEL, "folds": folds, "seed": seed},
        "blend": {"runs": [record["run"] for record in records], "weights": [round(float(w), 6) for w in scale],
                  "out_of_fold": oof_probabilities is not None},
        "data": dict(records[0]["data"]),
        "folds": [{"fold": index, "validation_accuracy": _rounded(score), "test_accuracy": None, "seconds": 0.0,
                   "history": {}} for index, score in enumerate(fold_scores)],
        "cv_mean": _rounded(np.mean(fold_scores)) if fold_scores else None,
        "cv_std": _rounded(np.std(fold_scores)) if fold_scores else None,
        "oof_accuracy": _rounded(oof_accuracy),
        "test_accuracy": _rounded(test_accuracy),
        "seconds": round(time.perf_counter() - started, 2),
        "submission": submission_path.name,
        "probabilities": probabilities_path.name,
        "versions": library_versions(),
        "git_commit": commit,
        "git_dirty": dirty,
    }
    record_path = write_record(run, record)
    pictures = []
    if plots and dataset is not None:
        from src import plots as pictures_module

        pictures = pictures_module.draw_run_pictures(run.workdir, dataset, result)
    record["outputs"] = {"submission": str(submission_path), "record": str(record_path),
                         "probabilities": str(probabilities_path), "pictures": [str(path) for path in pictures]}
    return record
