"""Runs on disk: a run's name and folder, its identity, resuming an unfinished run, and the lock that marks it running.

A run's folder `<out>/<kernel>-<UTC timestamp>/` holds `run.json` (what the run is, and whether it finished) and
`run.lock`, which the running process holds with an exclusive `flock` that goes with the process however it ends.
The same command again finds the newest unfinished run of its identity that no process holds, and continues it.
"""

import datetime as dt
import fcntl
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from src import config, files, paths
from src.errors import KitError

logger = logging.getLogger(__name__)

# The files a finished run leaves beside its folder: submission, record, probabilities.
OUTPUT_SUFFIXES = (".csv", ".json", ".npz")
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"


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


def run_identity(run_config: config.RunConfig, data_sha256: str) -> dict:
    """Returns what makes two runs the same run: every setting that changes results, and the data.

    Args:
        run_config: the run's configuration; its fields whose role has `identity` count (`config.ROLES`).
        data_sha256: the data source's sha256 (the data's identity is its content, not its path).

    Returns:
        A JSON-ready dict.
    """
    values = run_config.to_dict()
    identity = {name: values[name] for name in config.field_names("identity")}
    identity["data_sha256"] = data_sha256
    return identity


def identity_sha256(identity: dict) -> str:
    """Returns the sha256 of an identity's canonical JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


def release(run: Run) -> None:
    """Releases a run's lock without marking it finished: the same command again resumes it."""
    if run.lock is not None:
        run.lock.close()


def _try_lock(workdir: Path) -> IO | None:
    """Takes the run's lock without waiting; returns the open lock file, or None when another process holds it."""
    handle = open(workdir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def read_run_file(workdir: Path) -> dict | None:
    """Returns the `run.json` of a run folder, or None when there is none or it is unreadable."""
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
    content = read_run_file(run.workdir)
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


def mark_finished(run: Run) -> None:
    """Marks a run finished, so that no later command resumes it, and releases its lock."""
    content = read_run_file(run.workdir)
    if content is not None:
        _write_run_file(run, content["identity"], "finished")
    if run.lock is not None:
        run.lock.close()


def run_model_name(path: Path) -> str | None:
    """Returns the model a run trained, read from the `run.json` in `path` or a folder above it, or None."""
    for folder in [path, *path.parents][:4]:
        content = read_run_file(folder)
        if content is not None:
            return content.get("identity", {}).get("model")
    return None
