"""Run records: a run's name and folder, its JSON record and its saved probabilities."""

import datetime as dt
import json
import logging
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src import files, paths
from src.errors import KitError

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".csv", ".json", ".npz")


@dataclass(frozen=True)
class Run:
    """A run's place on disk.

    Attributes:
        out_dir: the folder receiving the run's outputs.
        name: `<kernel>-<UTC timestamp>`, with `-2`, `-3`, ... when that name was taken.
    """

    out_dir: Path
    name: str

    def path(self, suffix: str) -> Path:
        """Returns the output file `<name><suffix>`."""
        return self.out_dir / f"{self.name}{suffix}"

    @property
    def workdir(self) -> Path:
        """The run's folder for work in progress and pictures."""
        return self.out_dir / self.name


def start_run(kernel: str, out_dir: Path, now: dt.datetime | None = None) -> Run:
    """Reserves a new run name in `out_dir` by creating its work folder.

    Returns:
        The `Run`; no existing file or folder shares its name.

    Raises:
        KitError: the folder cannot be created or written.
    """
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 1000):
            name = f"{kernel}-{stamp}" if attempt == 1 else f"{kernel}-{stamp}-{attempt}"
            if any((out_dir / f"{name}{suffix}").exists() for suffix in OUTPUT_SUFFIXES):
                continue
            try:
                (out_dir / name).mkdir()
            except FileExistsError:
                continue
            return Run(out_dir=out_dir, name=name)
    except OSError as error:
        raise KitError(files.describe_os_error(error, out_dir)) from None
    raise KitError(f"{out_dir}: too many runs named {kernel}-{stamp}; wait a second and retry.")


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
