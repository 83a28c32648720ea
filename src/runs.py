"""Runs on disk: a run's name and folder, its identity, resuming an unfinished run, and the lock that marks it running.

A run's folder `<out>/<kernel>-<UTC timestamp>/` holds `run.json` (what the run is, and whether it finished) and
`run.lock`, which the running process holds with an exclusive `flock` that goes with the process however it ends.
The same command again finds the newest unfinished run of its identity that no process holds, and continues it.
A run's identity includes its code (`provenance.code_identity`): the same command under other code starts a new
run and says so.
"""

import datetime as dt
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from src import config, files, filesystem, paths, provenance
from src.errors import KitError

logger = logging.getLogger(__name__)

# The files a finished run leaves beside its folder: submission, record, probabilities.
OUTPUT_SUFFIXES = (".csv", ".json", ".npz")
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
# The entry of an identity that names the code; the rest is the command (its settings and data).
CODE_KEY = "code"


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


def run_identity(run_config: config.RunConfig, data_sha256: str, code: dict | None = None) -> dict:
    """Returns what makes two runs the same run: every setting that changes results, the data, and the code.

    Args:
        run_config: the run's configuration; its fields whose role has `identity` count (`config.ROLES`).
        data_sha256: the data source's sha256 (the data's identity is its content, not its path).
        code: `provenance.code_identity()` (the sha256 of the kit's `src` files and of the kernel, the library
            versions); None to take it now.

    Returns:
        A JSON-ready dict; its `"code"` entry is the code, the rest the command (`command_identity`).
    """
    values = run_config.to_dict()
    identity = {name: values[name] for name in config.field_names("identity")}
    identity["data_sha256"] = data_sha256
    identity[CODE_KEY] = provenance.code_identity() if code is None else code
    return identity


def command_identity(identity: dict) -> dict:
    """Returns an identity without its code: what the same command on the same data has in common."""
    return {name: value for name, value in identity.items() if name != CODE_KEY}


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
        locked = filesystem.try_lock(handle)
    except BaseException:
        handle.close()
        raise
    if not locked:
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


def _has_record(run: Run) -> bool:
    """Whether the run wrote its record; an empty one is what a kill can leave where files have no hard links."""
    try:
        return run.path(".json").stat().st_size > 0
    except OSError:
        return False


def _is_unfinished(run: Run, key: str, *, any_code: bool = False) -> bool:
    content = read_run_file(run.workdir)
    if content is None or content.get("state") != "running" or _has_record(run):
        return False
    if any_code:
        identity = content.get("identity")
        return isinstance(identity, dict) and identity_sha256(command_identity(identity)) == key
    return content.get("identity_sha256") == key


def unfinished_runs(kernel: str, out_dir: Path, identity: dict, *, any_code: bool = False) -> list[Run]:
    """Returns the runs in `out_dir` of this identity that never finished, newest first (locked or not).

    Args:
        kernel: the runs' kernel.
        out_dir: the output folder.
        identity: `run_identity(...)`.
        any_code: take the runs of the same command under any code too (`command_identity`).
    """
    if not out_dir.is_dir():
        return []
    key = identity_sha256(command_identity(identity) if any_code else identity)
    candidates = [Run(out_dir=out_dir, name=folder.name) for folder in out_dir.iterdir()
                  if folder.is_dir() and folder.name.startswith(f"{kernel}-") and (folder / RUN_FILE).is_file()]
    return sorted((run for run in candidates if _is_unfinished(run, key, any_code=any_code)),
                  key=lambda run: run.name, reverse=True)


def _code_difference(old: dict, new: dict) -> str:
    """Returns what differs between the code of two identities, in a few words."""
    old_code, new_code = old.get(CODE_KEY), new.get(CODE_KEY) or {}
    if not isinstance(old_code, dict):
        return "a kit that did not record its code"
    changes = [what for key, what in (("src_sha256", "src/ changed"), ("script_sha256", "the kernel changed"))
               if old_code.get(key) != new_code.get(key)]
    old_versions = old_code.get("versions") if isinstance(old_code.get("versions"), dict) else {}
    for package, version in new_code.get("versions", {}).items():
        if old_versions.get(package) != version:
            changes.append(f"{package} {old_versions.get(package, 'absent')} -> {version}")
    return ", ".join(changes) or "other code"


def _note_other_code(kernel: str, out_dir: Path, identity: dict) -> None:
    """Says in one line when unfinished runs of the same command exist under other code (they are not resumed)."""
    key = identity_sha256(identity)
    others = [run for run in unfinished_runs(kernel, out_dir, identity, any_code=True)
              if (read_run_file(run.workdir) or {}).get("identity_sha256") != key]
    if others:
        old = (read_run_file(others[0].workdir) or {}).get("identity", {})
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        logger.info("run: %s%s, an unfinished run of the same command, ran other code (%s); starting a new run "
                    "(it stays; --restart removes it).", others[0].name, more, _code_difference(old, identity))


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
        # and is written again, identical, from the same saved folds (an empty record too: see _has_record).
        for suffix in OUTPUT_SUFFIXES:
            candidate.path(suffix).unlink(missing_ok=True)
        # Under its lock, no other process writes in the folder: any temporary in it is a kill's leftover.
        files.sweep_stale(candidate.workdir, owned=True)
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
    and a separate run starts, so two commands started together never share a folder. An unfinished run of
    the same command under other code is not resumed: a line says so, and a new run starts beside it.

    First the output folder is probed (`files.probe_folder`: a folder the kit cannot write fails here, before
    any training) and swept of the temporaries killed writes left (`files.sweep_stale`).

    Args:
        kernel: names the run.
        out_dir: the output folder.
        now: the time that names a new run; the current time when None.
        identity: `run_identity(...)`; None starts a new run that no later command resumes.
        restart: delete the unfinished runs of this command, under any code (those no process holds), and
            start anew.

    Returns:
        The `Run`, locked; `resumed` says whether it continues an earlier one.

    Raises:
        KitError: the folder cannot be created or written.
    """
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    try:
        # Before any training: a folder the kit cannot write fails now, in one line, not when the run ends.
        if files.probe_folder(out_dir) != "link":
            logger.info("run: %s has no hard links (FAT, SMB?); files keep their never-overwrite names by a rename "
                        "that refuses to replace.", out_dir)
        files.sweep_stale(out_dir)
        if identity is not None:
            key = identity_sha256(identity)
            candidates = unfinished_runs(kernel, out_dir, identity, any_code=restart)
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
                    logger.info("run: resuming the unfinished run %s of the same configuration, data and code; "
                                "pass --restart to start over.", resumed.name)
                    return resumed
                _note_other_code(kernel, out_dir, identity)
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
