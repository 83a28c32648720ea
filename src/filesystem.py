"""What the kit needs of the operating system's files beyond Python's own: `flock` locks, a rename that refuses to
replace, a folder flushed to disk; and the platforms that have them (Linux and macOS).

Windows has no `fcntl`: the kit imports there, but `check_platform` stops every kernel and command with one line.
"""

import contextlib
import ctypes
import errno
import functools
import os
import sys
from pathlib import Path

from src.errors import KitError

try:
    import fcntl
except ImportError:  # Windows: `check_platform` says so in one line
    fcntl = None

PLATFORMS = "Linux and macOS"
# What `link()` answers on a filesystem without hard links: EPERM (FAT on Linux), ENOTSUP/EOPNOTSUPP (macOS,
# SMB), ENOSYS (FUSE).
NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})
# What a rename without replacement answers where the kernel or the filesystem lacks it.
_NO_NATIVE_RENAME = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP})
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1  # Linux, <linux/fs.h>
_RENAME_EXCL = 4  # macOS, <stdio.h>


def check_platform() -> None:
    """Raises the kit's error, in one line, on a platform the kit does not run on (one without `fcntl` locks)."""
    if fcntl is None:
        raise KitError(f"digit-kit runs on {PLATFORMS}: its run locks need fcntl, which this Python lacks; on "
                       f"Windows, run it in WSL. Received: platform={sys.platform!r}.")


def try_lock(handle) -> bool:
    """Takes an exclusive `flock` on an open file (or descriptor) without waiting.

    The lock goes with the process, however it ends.

    Returns:
        False when another process holds it.

    Raises:
        KitError: the platform has no `fcntl` (`check_platform`).
        OSError: the filesystem has no locks.
    """
    check_platform()
    try:
        fcntl.flock(handle.fileno() if hasattr(handle, "fileno") else handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_quietly(handle: int) -> None:
    """Takes an exclusive `flock` where the platform and the filesystem have one, and does nothing elsewhere."""
    with contextlib.suppress(OSError, KitError):
        try_lock(handle)


def sync_folder(folder: Path) -> None:
    """Flushes a folder's entries to disk, so that a rename in it survives a power cut.

    Best effort: the kit flushes a file before it renames it; a filesystem that cannot sync a folder (some network
    mounts refuse) only leaves the new name less durable.
    """
    try:
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@functools.cache
def _native_rename():
    """Returns the C function renaming without replacement, or None where there is none."""
    if not sys.platform.startswith(("linux", "darwin")):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if sys.platform == "darwin":
        function = getattr(libc, "renamex_np", None)
        if function is None:
            return None
        function.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        return lambda source, target: function(source, target, _RENAME_EXCL)
    function = getattr(libc, "renameat2", None)  # glibc 2.28 and later
    if function is None:
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return lambda source, target: function(_AT_FDCWD, source, _AT_FDCWD, target, _RENAME_NOREPLACE)


def rename_no_replace(source: Path, target: Path) -> bool:
    """Renames `source` to `target` in one step unless `target` exists (`renameat2(RENAME_NOREPLACE)` on Linux,
    `renamex_np(RENAME_EXCL)` on macOS).

    Returns:
        True when renamed; False where the platform, its C library or the filesystem has no such rename.

    Raises:
        FileExistsError: `target` exists.
        OSError: the rename failed otherwise (a read-only folder, a full disk, ...).
    """
    rename = _native_rename()
    if rename is None:
        return False
    if rename(os.fsencode(source), os.fsencode(target)) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise FileExistsError(code, os.strerror(code), str(target))
    if code in _NO_NATIVE_RENAME:
        return False
    raise OSError(code, os.strerror(code), str(target))
