"""Atomic, never-overwriting file writes, on every filesystem of the platforms the kit runs on (Linux and macOS).

Every file the kit writes goes to a temporary name in its final folder (`.<name>.<random>.tmp`), is flushed to
disk, and only then takes its final name; the folder is flushed after the rename, so that the name survives a
power cut too. A crash, a kill or a full disk therefore never leaves a partial file that looks finished.

A never-overwrite write (`overwrite=False`) checks and renames in one step, with the first of these the
filesystem has: a hard link; a rename that refuses to replace (`filesystem.rename_no_replace`); or, last, an
exclusive create of the final name (empty) and a rename of the complete file over it. FAT/exFAT and some SMB
or FUSE mounts have no hard links; `probe_folder` tells a run which way its output folder takes, before it
trains.

A temporary file is locked (`flock`) while its writer lives, so that `sweep_stale` can tell what a killed writer
left from what another process is writing now (those a library writes itself are not: see `atomic_path`).
"""

import contextlib
import errno
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from src import filesystem
from src.errors import KitError

TEMPORARY_SUFFIX = ".tmp"
# The kit's temporary names: `.<name>.<8 random characters>.tmp`, Keras' own ending kept after `.tmp` where
# Keras insists on it (`.tmp.keras`, `.tmp.weights.h5`).
TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)*$")
# `folder_in_place`'s folders: `<prefix><8 random characters>`, the prefix hidden (`.<name>-`, `.<name>-old-`).
TEMPORARY_FOLDER_NAME = re.compile(r"^\..+-[a-z0-9_]{8}$")
# A temporary younger than this may belong to a writer that has created it but not locked it yet.
STALE_SECONDS = 10.0
# Where a filesystem has no locks, age alone tells a stale temporary from one being written.
UNLOCKED_STALE_SECONDS = 3600.0
# The folders `folder_in_place` fills take seconds (a bundle's two files); a minute untouched is a kill's leftover.
STALE_FOLDER_SECONDS = 60.0


def describe_os_error(error: OSError, path: Path) -> str:
    """Returns one line naming a failed write and what to do about it."""
    if error.errno == errno.ENOSPC:
        fix = "free some disk space or choose another folder with --out"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make the folder writable or choose another one with --out"
    else:
        fix = "check the folder or choose another one with --out"
    reason = error.strerror or str(error)
    return f"Cannot write {path}: {reason}; {fix}."


def _create_temporary(path: Path, ending: str = "", *, lock: bool = True) -> tuple[int, Path]:
    """Creates `.<name>.<random>.tmp<ending>` beside `path`; returns its open handle (locked if `lock`) and path.

    The file is created with mode 0o666 less the umask, as a plain `open()` would, without reading the umask
    (setting it to read it would change it for every thread of the process meanwhile).
    """
    for _ in range(100):
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}{ending}"
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        if lock:
            filesystem.lock_quietly(handle)
        return handle, temporary
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def _publish_new(temporary: Path, path: Path) -> str:
    """Gives the complete `temporary` the name `path` unless that exists; returns which way it took.

    Returns:
        `"link"` (a hard link), `"rename"` (a rename without replacement) or `"create"` (an exclusive create of
        `path`, then a rename over it: a kill between the two leaves `path` empty, never partial).

    Raises:
        FileExistsError: `path` exists.
        OSError: the folder cannot be written.
    """
    try:
        os.link(temporary, path)
        return "link"
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in filesystem.NO_HARD_LINKS:
            raise
    if filesystem.rename_no_replace(temporary, path):
        return "rename"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()  # the empty file this write created a moment ago
        raise
    return "create"


@contextlib.contextmanager
def atomic_path(path: Path, *, overwrite: bool = True, keep_suffix: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path` that becomes `path` when the block succeeds.

    Args:
        path: the final file name.
        overwrite: when False, an existing file at `path` is never replaced (the kit's error is raised instead),
            and the check and the rename happen as one step (see the module's docstring).
        keep_suffix: end the temporary name with `path`'s suffixes too (`.tmp.keras`), for writers that insist
            on them (Keras' `save` and `save_weights`). Such a temporary is not locked: its writer may lock the
            file itself (HDF5 does, and would find it taken); the kit writes them only inside a run's folder,
            which the run's own lock keeps to one process (`sweep_stale`'s `owned`).

    Yields:
        A temporary path in the same folder; write the whole file there.

    Raises:
        KitError: the folder cannot be written, the disk is full, or `path` exists and `overwrite` is False.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = _create_temporary(path, "".join(path.suffixes) if keep_suffix else "",
                                              lock=not keep_suffix)
    except OSError as error:
        raise KitError(describe_os_error(error, path)) from None
    renamed = False
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        if overwrite:
            os.replace(temporary, path)
            renamed = True
        else:
            try:
                renamed = _publish_new(temporary, path) != "link"
            except FileExistsError:
                raise KitError(f"{path} already exists; the kit never overwrites it.") from None
        filesystem.sync_folder(path.parent)
    except OSError as error:
        raise KitError(describe_os_error(error, path)) from None
    finally:
        if not renamed:
            with contextlib.suppress(OSError):
                temporary.unlink()
        os.close(handle)


def probe_folder(folder: Path) -> str:
    """Creates `folder` if need be, and writes and removes a small file in it as never-overwrite writes do.

    A run calls it before it trains, so that a folder the kit cannot write fails then, not at the end.

    Returns:
        How never-overwrite writes take their names there: `"link"`, `"rename"` or `"create"`.

    Raises:
        KitError: the folder cannot be created or written.
    """
    folder = Path(folder)
    # A name `sweep_stale` recognises, should a kill leave it.
    probe = folder / f".digit-kit-probe.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = _create_temporary(probe)
        try:
            os.write(handle, b"digit-kit write probe\n")
            os.fsync(handle)
            return _publish_new(temporary, probe)
        finally:
            os.close(handle)
            for leftover in (temporary, probe):
                with contextlib.suppress(OSError):
                    leftover.unlink()
    except OSError as error:
        raise KitError(describe_os_error(error, folder)) from None


def _is_stale_temporary(path: Path, now: float) -> bool:
    try:
        age = now - path.lstat().st_mtime
        if not path.is_file() or path.is_symlink() or age < STALE_SECONDS:
            return False
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        # Its writer held the lock while it lived.
        return filesystem.try_lock(handle)
    except (OSError, KitError):  # no locks here
        return age > UNLOCKED_STALE_SECONDS
    finally:
        os.close(handle)


def sweep_stale(folder: Path, *, owned: bool = False, folders: bool = False) -> list[Path]:
    """Removes what the kit's interrupted writes left in `folder`: temporaries no live writer holds.

    Args:
        folder: where to look.
        owned: no other process writes in `folder` or below it (a run's folder, its run's lock held): every
            temporary there, in its subfolders too, is a leftover.
        folders: remove `folder_in_place`'s stale folders too (`.<name>-<random>`, untouched for a minute).

    Returns:
        What was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    removed = []
    try:
        candidates = list(folder.rglob(".*") if owned else folder.glob(".*"))
    except OSError:  # a folder that vanished meanwhile
        return []
    for path in candidates:
        with contextlib.suppress(OSError):
            if TEMPORARY_NAME.match(path.name) and path.is_file() and not path.is_symlink() and \
                    (owned or _is_stale_temporary(path, now)):
                path.unlink()
                removed.append(path)
            elif folders and path.parent == folder and TEMPORARY_FOLDER_NAME.match(path.name) and path.is_dir() \
                    and not path.is_symlink() and now - path.stat().st_mtime > STALE_FOLDER_SECONDS:
                shutil.rmtree(path)
                removed.append(path)
    return removed


def _make_folder(parent: Path, prefix: str) -> Path:
    """Creates `<parent>/<prefix><random>` with the mode a plain `mkdir` gives (0o777 less the umask)."""
    for _ in range(100):
        folder = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(errno.EEXIST, "no free folder name", str(parent / prefix))


@contextlib.contextmanager
def folder_in_place(target: Path, prefix: str) -> Iterator[Path]:
    """Yields a hidden, empty folder beside `target` to fill; on success it replaces `target` by renames only.

    If the block raises, `target` is left as it was and the half-filled folder is removed.

    Raises:
        KitError: the parent folder cannot be created or written, or the renames fail.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = _make_folder(target.parent, prefix)
    except OSError as error:
        raise KitError(describe_os_error(error, target)) from None
    try:
        yield scratch
        old = None
        if target.exists():
            old = _make_folder(target.parent, f".{target.name}-old-")
            os.replace(target, old / target.name)
        os.replace(scratch, target)
        filesystem.sync_folder(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        raise KitError(describe_os_error(error, target)) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_bytes(path: Path, content: bytes, *, overwrite: bool = True) -> Path:
    """Writes `content` to `path` atomically and returns `path`."""
    with atomic_path(path, overwrite=overwrite) as temporary:
        temporary.write_bytes(content)
    return Path(path)


def write_text(path: Path, text: str, *, overwrite: bool = True) -> Path:
    """Writes `text` (UTF-8) to `path` atomically and returns `path`."""
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
