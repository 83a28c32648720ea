"""Tests of src.filesystem: locks, the rename that never replaces (the real C call), and the platforms."""

import os

import pytest

from src import filesystem
from src.errors import KitError


def test_rename_no_replace_renames_once_and_refuses_an_existing_target(tmp_path):
    # The real call of this machine's C library (renameat2 on Linux, renamex_np on macOS), on its filesystem.
    source, target = tmp_path / "source", tmp_path / "target"
    source.write_text("one")
    assert filesystem.rename_no_replace(source, target) is True
    assert target.read_text() == "one" and not source.exists()
    source.write_text("two")
    with pytest.raises(FileExistsError):
        filesystem.rename_no_replace(source, target)
    assert target.read_text() == "one" and source.read_text() == "two"


def test_try_lock_is_exclusive_until_the_holder_closes(tmp_path):
    path = tmp_path / "lock"
    with open(path, "a+") as holder:
        assert filesystem.try_lock(holder)
        handle = os.open(path, os.O_RDONLY)  # another open file, as another process has
        try:
            assert not filesystem.try_lock(handle)
            holder.close()
            assert filesystem.try_lock(handle)
        finally:
            os.close(handle)


def test_check_platform_is_one_line_without_fcntl(monkeypatch):
    monkeypatch.setattr(filesystem, "fcntl", None)
    with pytest.raises(KitError, match=r"^digit-kit runs on Linux and macOS: .*; on Windows, run it in WSL\. "
                                       r"Received: platform="):
        filesystem.check_platform()
    filesystem.lock_quietly(0)  # a temporary's lock is only a help: without fcntl it is skipped
