"""Atomic, never-overwriting file writes.

Every file the kit writes goes to a temporary name in its final folder, is flushed to disk, and only
then takes its final name, so a crash or a full disk never leaves a partial file that looks finished.
"""

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from src.errors import KitError


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yields a temporary path beside `path` that becomes `path` when the block succeeds.

    Args:
        path: the final file name.
        overwrite: when False, an existing file at `path` is never replaced (the kit's error is
            raised instead), and the check and the rename happen as one step (a hard link).

    Yields:
        A temporary path in the same folder; write the whole file there.

    Raises:
        KitError: the folder cannot be written, the disk is full, or `path` exists and
            `overwrite` is False.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # mkstemp makes the file private; give it the mode a plain open() would.
        os.fchmod(handle, 0o666 & ~_umask())
        os.close(handle)
    except OSError as error:
        raise KitError(describe_os_error(error, path)) from None
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise KitError(f"{path} already exists; the kit never overwrites it.") from None
    except OSError as error:
        raise KitError(describe_os_error(error, path)) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


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
        scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    except OSError as error:
        raise KitError(describe_os_error(error, target)) from None
    try:
        yield scratch
        os.chmod(scratch, 0o755)  # mkdtemp made it private; the finished folder is an ordinary one
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(scratch, target)
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
