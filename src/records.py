"""Run records: a finished run's JSON record and its saved probabilities, written once and read back.

A record (`<run>.json`) says what the run was (its configuration, data and sha256, versions, commit), what it
scored (per fold, CV, OOF and test accuracy) and where its files are; `<run>.npz` holds its probabilities, so
that runs can be blended later. Both are written atomically and never replaced.
"""

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np

from src import files, npz, provenance
from src.errors import KitError
from src.mnist import NUM_CLASSES
from src.runs import OUTPUT_SUFFIXES, Run

logger = logging.getLogger(__name__)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _fit_seconds(history: dict) -> float | None:
    """Returns the seconds a fold spent in its epochs (training + validation), or None if not timed."""
    epoch_seconds = history.get("epoch_seconds")
    return round(float(sum(epoch_seconds)), 2) if epoch_seconds else None


def data_summary(dataset, data_sha256: str) -> dict:
    """Returns the record's `data` entry: the source, its kind and sha256, and the splits' sizes."""
    return {
        "source": str(dataset.source),
        "kind": dataset.kind,
        "sha256": data_sha256,
        "train_rows": int(len(dataset.y_train)),
        "test_rows": int(len(dataset.x_test)),
        "test_labels": dataset.has_test_labels,
    }


def code_state() -> dict:
    """Returns the record's provenance entries: library versions, the git commit with whether files differ, and the
    sha256 of the kit's `src` files (`provenance.code_identity`). A run takes them when it starts."""
    commit, dirty = provenance.git_state()
    code = provenance.code_identity()
    return {"versions": code["versions"], "git_commit": commit, "git_dirty": dirty, "src_sha256": code["src_sha256"]}


def build_record(run: Run, *, config: dict, data: dict, result, seconds: float, code: dict) -> dict:
    """Returns the JSON-ready record of a finished run.

    Args:
        run: the run; its name names the submission (`.csv`) and probabilities (`.npz`) the record points to.
        config: the run's configuration (`RunConfig.to_dict()`, or a blend's own); its `kernel` names the run.
        data: `data_summary(...)` of the data it trained on.
        result: its `results.CrossValidation`.
        seconds: the run's wall time.
        code: `code_state()`, taken when the run started.

    Returns:
        The record: run, kernel, created, config, data, folds, cv_mean, cv_std, oof_accuracy, test_accuracy,
        seconds, submission, probabilities, versions, git_commit, git_dirty, src_sha256.
    """
    return {
        "run": run.name,
        "kernel": config["kernel"],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "data": data,
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
        "submission": run.path(".csv").name,
        "probabilities": run.path(".npz").name,
        **code,
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
    """Reads a run record (any JSON file; see `is_run_record`).

    Raises:
        KitError: the file is missing or not JSON.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:
        raise KitError(f"Cannot read run record {path}: it is nested too deeply to be a run record.") from None
    except (OSError, ValueError) as error:
        raise KitError(f"Cannot read run record {path} ({error}).") from None


def is_run_record(value) -> bool:
    """Returns whether a parsed JSON value looks like a run record (`run`, `kernel`, `config`)."""
    return (isinstance(value, dict) and isinstance(value.get("run"), str) and isinstance(value.get("kernel"), str)
            and isinstance(value.get("config"), dict))


# A record is a few levels deep (folds, then a fold's history, then its values); far deeper is not a record.
MAX_RECORD_DEPTH = 8
MAX_NAME_LENGTH = 200
SCALARS = (str, int, float, bool, type(None))


def _depth(value) -> int:
    """Returns how deeply a parsed JSON value nests (a scalar is 0), without recursing."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_RECORD_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _is_number(value) -> bool:
    # NaN stays (a diverged loss is recorded as NaN); an integer too large for a float would break formatting.
    return isinstance(value, float) or isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _optional(check):
    return lambda value: value is None or check(value)


def is_plain_name(value) -> bool:
    """Returns whether `value` names a file or folder right in a run's folder: no separators, `..` or controls."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH and value.isprintable()
            and not value.startswith(".") and "/" not in value and "\\" not in value)


def _all(check):
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


def _strings_to(check):
    return lambda value: isinstance(value, dict) and all(isinstance(key, str) and check(item)
                                                         for key, item in value.items())


_optional_number = _optional(_is_number)
_optional_count = _optional(lambda value: isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63)
_optional_text = _optional(lambda value: isinstance(value, str))
# What the readers of records (runs, report, blend, collect) use of them, and the type each must have.
_RECORD_FIELDS = {
    "run": is_plain_name,
    "kernel": is_plain_name,
    "created": _optional_text,
    "config": _strings_to(lambda value: isinstance(value, SCALARS) or _all(lambda item: isinstance(item, SCALARS))(
        value)),
    "data": _optional(_strings_to(lambda value: isinstance(value, SCALARS))),
    "cv_mean": _optional_number, "cv_std": _optional_number, "oof_accuracy": _optional_number,
    "test_accuracy": _optional_number, "seconds": _optional_number,
    "submission": _optional(is_plain_name),
    "probabilities": _optional(is_plain_name),
    "versions": _optional(_strings_to(lambda value: isinstance(value, str))),
    "git_commit": _optional_text,
    "git_dirty": _optional(lambda value: isinstance(value, bool)),
    "blend": _optional(lambda value: isinstance(value, dict) and _all(is_plain_name)(value.get("runs", []))
                       and _all(_is_number)(value.get("weights", []))),
    "collected_from": _optional(_all(lambda value: isinstance(value, dict) and _optional_count(value.get("fold"))
                                     and _optional_text(value.get("kernel"))
                                     and _optional(is_plain_name)(value.get("run")))),
}
_CONFIG_FIELDS = {"folds": _optional_count, "fold_index": _optional_count, "seed": _optional_count,
                  "model": _optional_text, "kernel": _optional_text}
_DATA_FIELDS = {"source": _optional_text, "sha256": _optional_text, "kind": _optional_text}
_FOLD_FIELDS = {"fold": _optional_count, "validation_accuracy": _optional_number, "test_accuracy": _optional_number,
                "seconds": _optional_number, "fit_seconds": _optional_number,
                "history": _optional(_strings_to(_all(_optional_number)))}


def record_problem(record: dict) -> str | None:
    """Returns what is wrong with a run record's fields (first problem only), or None when readers can use it.

    A record read back may come from anywhere (a download, an edit by hand): this checks the type of every field
    the kit's readers use, that names of files (`run`, `submission`, `probabilities`) lie in the run's folder, and
    that the record is not nested absurdly deep.
    """
    if _depth(record) > MAX_RECORD_DEPTH:
        return f"it nests more than {MAX_RECORD_DEPTH} levels deep"
    checks = [(f"{name}", record.get(name), check) for name, check in _RECORD_FIELDS.items()]
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    checks += [(f"config.{name}", config.get(name), check) for name, check in _CONFIG_FIELDS.items()]
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    checks += [(f"data.{name}", data.get(name), check) for name, check in _DATA_FIELDS.items()]
    folds = record.get("folds")
    if not _optional(_all(lambda value: isinstance(value, dict)))(folds):
        return "folds is not a list of folds"
    checks += [(f"folds[{index}].{name}", fold.get(name), check) for index, fold in enumerate(folds or [])
               for name, check in _FOLD_FIELDS.items()]
    for name, value, check in checks:
        if not check(value):
            shown = repr(value)
            return f"{name} is {shown if len(shown) <= 60 else shown[:57] + '...'}"
    return None


def find_records(folder: Path) -> list[tuple[Path, dict]]:
    """Reads the run records `<folder>/*.json`.

    A file that is not JSON, JSON that is not a run record (e.g. a `kernel-metadata.json`), or a run record whose
    fields are damaged (`record_problem`) is skipped with a one-line warning.

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
        except RecursionError:
            logger.warning("skipping %s: nested too deeply to be a run record", path)
            continue
        except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            logger.warning("skipping %s: not readable as JSON (%s)", path, error)
            continue
        if not is_run_record(record):
            logger.warning("skipping %s: not a run record (it lacks run, kernel or config)", path)
            continue
        problem = record_problem(record)
        if problem is not None:
            logger.warning("skipping %s: a damaged run record (%s)", path, problem)
            continue
        found.append((path, record))
    return found


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


def record_of_submission(file: Path) -> tuple[Path, dict] | None:
    """Finds the run record of a submission CSV in the CSV's folder.

    A run's own `<run>.csv` names its record; a kernel output's `submission.csv` is a byte-for-byte copy of its
    run's CSV, which is how its record is found (the newest, if several runs wrote the same file).

    Returns:
        `(record path, record)`, or None when no record in the folder wrote this file.
    """
    file = Path(file)
    found = [(path, record) for path, record in _quiet_records(file.parent) if record.get("submission") == file.name]
    if not found:
        try:
            content = file.read_bytes()
        except OSError:
            return None
        found = [(path, record) for path, record in _quiet_records(file.parent)
                 if isinstance(record.get("submission"), str) and _same_bytes(file.parent / record["submission"],
                                                                              content)]
    return max(found, key=lambda item: item[1]["run"]) if found else None


def _quiet_records(folder: Path) -> list[tuple[Path, dict]]:
    """The run records of a folder, skipping what is not one without a word (it is not the user's question)."""
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if is_run_record(record):
            found.append((path, record))
    return found


def _same_bytes(path: Path, content: bytes) -> bool:
    try:
        return path.stat().st_size == len(content) and path.read_bytes() == content
    except OSError:
        return False


def leaked_test_images(record: dict) -> int:
    """Returns how many test images the run's training data held (its record's `leaks`; 0 when unchecked)."""
    leaks = record.get("leaks")
    count = leaks.get("test_in_train") if isinstance(leaks, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


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
    problem = record_problem(record)
    if problem is not None:
        raise KitError(f"{record_path} is a damaged run record: {problem}; give a run's .json as the kit wrote it.")
    npz_path = record_path.parent / record["probabilities"]
    if not npz_path.is_file():
        raise KitError(f"{npz_path} is missing: run {record['run']}'s probabilities are needed to blend it.")
    arrays = npz.read_npz(npz_path, ("test_probabilities",), ("oof_probabilities",), what="a run's probabilities file",
                          fix="Blend other runs, or train this one again.")
    for key, array in arrays.items():
        if array.ndim != 2 or array.shape[1] != NUM_CLASSES or array.dtype.kind != "f":
            raise KitError(f"{npz_path}: {key} must be floats of shape (rows, 10). "
                           f"Received: {key}.shape={array.shape}, dtype={array.dtype}.")
    return record, arrays
