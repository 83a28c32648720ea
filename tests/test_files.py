"""Tests of src.files and the kit's writes under faults: a full disk or a read-only filesystem at every step of a
write, filesystems without hard links, a crash mid-write, stale temporaries, and the umask left alone."""

import errno
import os
import stat
import time

import numpy as np
import pytest

from faults import WRITE_FAULTS
from src import files, filesystem, submission
from src.errors import KitError


def _umask():
    """The process's umask, read where Linux shows it, without setting it (as the kit must not)."""
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("Umask:")), 8)


def test_atomic_path_writes_whole_file_with_plain_mode(tmp_path):
    target = files.write_text(tmp_path / "a.txt", "hello")
    assert target.read_text() == "hello"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with files.atomic_path(tmp_path / "a.txt") as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not list(tmp_path.iterdir())


def test_atomic_path_keeps_the_old_file_when_a_rewrite_fails(tmp_path):
    target = files.write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as temporary:
            temporary.write_text("new but incomplete")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_can_keep_the_ending_a_writer_insists_on(tmp_path):
    with files.atomic_path(tmp_path / "model.keras", keep_suffix=True) as temporary:
        assert temporary.name.startswith(".model.keras.") and temporary.name.endswith(".tmp.keras")
        temporary.write_text("x")
    assert (tmp_path / "model.keras").read_text() == "x"


def test_never_overwrite_is_checked_at_the_rename(tmp_path):
    target = files.write_text(tmp_path / "a.txt", "first")
    with pytest.raises(KitError, match="never overwrites"):
        files.write_text(target, "second", overwrite=False)
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_folder_in_place_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with files.folder_in_place(target, ".bundle-") as scratch:
            (scratch / "half.txt").write_text("half")
            raise RuntimeError("crash mid-way")
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]

    with files.folder_in_place(target, ".bundle-") as scratch:
        (scratch / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert target.stat().st_mode & 0o777 == 0o777 & ~_umask()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (CI runs as root: the tests "
                    "below inject the error at every step of a write instead)")
def test_read_only_folder_is_one_clear_error_as_user(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(KitError, match="make the folder writable"):
            files.write_text(tmp_path / "a.txt", "x")
    finally:
        tmp_path.chmod(0o755)


# --- a full disk or a read-only filesystem at every step of a write -------------------------------------------

FIXES = {errno.ENOSPC: "No space left on device; free some disk space or choose another folder with --out.",
         errno.EROFS: "Read-only file system; make the folder writable or choose another one with --out."}


def _failing(code, real, applies):
    """`real`, except that it raises OSError(code) where `applies(*arguments)`."""
    def call(*args, **kwargs):
        if applies(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)
    return call


def _is_temporary(path) -> bool:
    return bool(files.TEMPORARY_NAME.match(os.path.basename(os.fspath(path))))


def _is_folder(handle) -> bool:
    return stat.S_ISDIR(os.fstat(handle).st_mode)


def _no_hard_links(monkeypatch):
    """Makes this filesystem answer link() as FAT does on Linux."""
    monkeypatch.setattr(os, "link", _failing(errno.EPERM, os.link, lambda *args, **kwargs: True))


def _no_native_rename(monkeypatch):
    """Makes this platform one without a rename that refuses to replace."""
    monkeypatch.setattr(filesystem, "rename_no_replace", lambda source, target: False)


def _to(target):
    return lambda source, destination, **kwargs: os.fspath(destination) == os.fspath(target)


def _inject(step: str, code: int, target, monkeypatch) -> None:
    """Makes the write of `target` fail with `code` at `step` (one of WRITE_STEPS)."""
    if step == "create":
        monkeypatch.setattr(os, "open", _failing(code, os.open, lambda path, *rest, **kwargs: _is_temporary(path)))
    elif step == "write":
        real_write = type(target).write_bytes

        def half_then_fail(self, content):
            real_write(self, content[: len(content) // 2])
            raise OSError(code, os.strerror(code))
        monkeypatch.setattr(type(target), "write_bytes", half_then_fail)
    elif step == "fsync":
        monkeypatch.setattr(os, "fsync", _failing(code, os.fsync, lambda handle: not _is_folder(handle)))
    elif step == "rename":
        monkeypatch.setattr(os, "replace", _failing(code, os.replace, _to(target)))
    elif step == "link":
        monkeypatch.setattr(os, "link", _failing(code, os.link, _to(target)))
    elif step == "rename without replacing":
        _no_hard_links(monkeypatch)
        monkeypatch.setattr(filesystem, "rename_no_replace", _failing(code, filesystem.rename_no_replace,
                                                                      _to(target)))
    elif step == "exclusive create":
        _no_hard_links(monkeypatch)
        _no_native_rename(monkeypatch)
        monkeypatch.setattr(os, "open", _failing(code, os.open, lambda path, *rest, **kwargs:
                                                 os.fspath(path) == os.fspath(target)))
    elif step == "rename over the exclusive create":
        _no_hard_links(monkeypatch)
        _no_native_rename(monkeypatch)
        monkeypatch.setattr(os, "replace", _failing(code, os.replace, _to(target)))
    elif step == "folder fsync":
        monkeypatch.setattr(os, "fsync", _failing(code, os.fsync, _is_folder))
    else:
        raise AssertionError(step)


@pytest.mark.parametrize("step, overwrite, code", WRITE_FAULTS,
                         ids=[f"{step.replace(' ', '-')}-{'replace' if overwrite else 'new'}-{errno.errorcode[code]}"
                              for step, overwrite, code in WRITE_FAULTS])
def test_a_write_fault_at_any_step_is_one_line_and_loses_nothing(step, overwrite, code, tmp_path, monkeypatch):
    (tmp_path / "other.txt").write_text("untouched")
    target = tmp_path / "a.txt"
    if overwrite:
        target.write_text("old")
    _inject(step, code, target, monkeypatch)

    if step == "folder fsync":
        # The file is complete and flushed before its rename; a folder that cannot be synced (some network mounts)
        # only makes the new name less durable, so the write succeeds.
        files.write_text(target, "new", overwrite=overwrite)
        expected = "new"
    else:
        with pytest.raises(KitError) as raised:
            files.write_text(target, "new", overwrite=overwrite)
        assert str(raised.value) == f"Cannot write {target}: {FIXES[code]}"
        expected = "old" if overwrite else None
    monkeypatch.undo()

    # Nothing half-written: the file as it was (or none), or the whole new one; no temporary left behind.
    assert (target.read_text() if target.exists() else None) == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == (["a.txt"] if expected else []) + ["other.txt"]
    assert (tmp_path / "other.txt").read_text() == "untouched"


def test_disk_full_writing_a_submission_is_one_clear_error_and_no_file(tmp_path, monkeypatch):
    _inject("write", errno.ENOSPC, tmp_path / "s.csv", monkeypatch)
    with pytest.raises(KitError, match="No space left on device; free some disk space"):
        submission.write_submission(np.array([1, 2, 3]), tmp_path / "s.csv")
    monkeypatch.undo()
    assert not list(tmp_path.iterdir())


# --- filesystems without hard links ---------------------------------------------------------------------------


@pytest.mark.parametrize("native_rename", [True, False], ids=["rename-without-replacing", "exclusive-create"])
def test_never_overwrite_works_without_hard_links(native_rename, tmp_path, monkeypatch):
    _no_hard_links(monkeypatch)
    if not native_rename:
        _no_native_rename(monkeypatch)

    target = files.write_text(tmp_path / "a.txt", "first", overwrite=False)
    with pytest.raises(KitError, match="already exists; the kit never overwrites it"):
        files.write_text(target, "second", overwrite=False)

    assert target.read_text() == "first"
    assert [path.name for path in tmp_path.iterdir()] == ["a.txt"]
    assert files.probe_folder(tmp_path / "out") == ("rename" if native_rename else "create")
    assert list((tmp_path / "out").iterdir()) == []


def test_probe_folder_creates_the_folder_says_how_names_are_taken_and_leaves_nothing(tmp_path):
    assert files.probe_folder(tmp_path / "new" / "out") == "link"
    assert list((tmp_path / "new" / "out").iterdir()) == []


def test_probe_of_a_read_only_folder_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "open", _failing(errno.EROFS, os.open, lambda path, *rest, **kwargs: _is_temporary(path)))
    with pytest.raises(KitError, match=f"^Cannot write {tmp_path}: Read-only file system; make the folder writable"):
        files.probe_folder(tmp_path)


# --- durability, modes, stale temporaries ---------------------------------------------------------------------


def test_a_rename_is_followed_by_a_sync_of_its_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(handle):
        named = sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith("."))
        synced.append(("folder" if _is_folder(handle) else "file", named))
        return real_fsync(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    files.write_text(tmp_path / "a.txt", "x")
    files.write_text(tmp_path / "b.txt", "x", overwrite=False)
    # The file before its rename, its folder after it.
    assert synced == [("file", []), ("folder", ["a.txt"]), ("file", ["a.txt"]), ("folder", ["a.txt", "b.txt"])]


def test_writes_never_set_the_umask(tmp_path, monkeypatch):
    # Setting the umask to read it would change it for every thread of the process meanwhile.
    mask = _umask()

    def refuse(mask):
        raise AssertionError("os.umask was called")

    monkeypatch.setattr(os, "umask", refuse)
    written = files.write_text(tmp_path / "a.txt", "x", overwrite=False)
    with files.folder_in_place(tmp_path / "folder", ".folder-"):
        pass
    assert written.stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~mask


def _aged(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_sweep_removes_only_stale_temporaries_no_writer_holds(tmp_path):
    stale = [tmp_path / name for name in (".a.csv.0a1b2c3d.tmp", ".model.keras.0a1b2c3d.tmp.keras",
                                          ".x.npz.abc_def1.tmp")]
    kept = [tmp_path / name for name in (".keep", "a.tmp", ".notes.tmp", ".b.csv.0a1b2c3d.tmp~")]
    for path in [*stale, *kept]:
        path.write_text("left by a kill, or the user's")
        _aged(path, 3600)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    young = tmp_path / ".c.csv.0a1b2c3d.tmp"  # its writer may not have locked it yet
    young.write_text("")

    with files.atomic_path(tmp_path / "d.csv") as written:  # a live writer holds its temporary
        _aged(written, 3600)
        removed = files.sweep_stale(tmp_path)
        written.write_text("complete")

    assert sorted(removed) == sorted(stale)
    assert all(path.exists() for path in [*kept, young, tmp_path / ".ipynb_checkpoints"])
    assert (tmp_path / "d.csv").read_text() == "complete"


def test_sweep_of_folders_removes_a_killed_bundles_folders_after_a_minute(tmp_path):
    half_built, replaced, fresh = (tmp_path / ".mnist-cnn-0a1b2c3d", tmp_path / ".mnist-cnn-old-9f8e7d6c",
                                   tmp_path / ".mnist-fast-0a1b2c3d")
    for folder in (half_built, replaced, fresh, tmp_path / ".git"):
        folder.mkdir()
    (half_built / "kernel.py").write_text("half")
    for folder in (half_built, replaced, tmp_path / ".git"):
        _aged(folder, 120)

    assert sorted(files.sweep_stale(tmp_path, folders=True)) == sorted([half_built, replaced])
    assert fresh.is_dir() and (tmp_path / ".git").is_dir()  # another bundle being built now; not the kit's
