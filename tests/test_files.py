"""Tests of src.files and the kit's writes under faults: read-only folders, a full disk, a crash mid-write."""

import errno
import os

import numpy as np
import pytest

from src import files, submission
from src.errors import KitError


def test_atomic_path_writes_whole_file_with_plain_mode(tmp_path):
    target = files.write_text(tmp_path / "a.txt", "hello")
    assert target.read_text() == "hello"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def test_disk_full_mid_write_is_one_clear_error_and_no_file(tmp_path, monkeypatch):
    real_write_text = type(tmp_path).write_bytes

    def full_disk(self, content):
        real_write_text(self, content[: len(content) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_bytes", full_disk)
    with pytest.raises(KitError, match="No space left on device; free some disk space"):
        submission.write_submission(np.array([1, 2, 3]), tmp_path / "s.csv")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_clear_error_as_user(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(KitError, match="make the folder writable"):
            files.write_text(tmp_path / "a.txt", "x")
    finally:
        tmp_path.chmod(0o755)


def test_read_only_folder_is_one_clear_error(tmp_path, monkeypatch):
    # Root ignores permission bits, so the refusal a read-only mount gives is injected where it would arise.
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(KitError, match="Read-only file system; make the folder writable or choose another one"):
        files.write_text(tmp_path / "a.txt", "x")
    assert not list(tmp_path.iterdir())


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
    assert target.stat().st_mode & 0o777 == 0o755
