"""Tests of src/runs.py: a run's identity, its folder and lock, resuming an unfinished run, and finishing it."""

import datetime as dt
import errno
import fcntl
import json
import logging
import os
import shutil
import time

import pytest

from src import config, files, paths, provenance, runs
from src.errors import KitError

SHA = "a" * 64
EARLY = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
LATER = EARLY + dt.timedelta(minutes=5)


def identity(data_sha256=SHA, **overrides):
    return runs.run_identity(config.RunConfig(kernel="k", **overrides), data_sha256)


def can_lock(workdir) -> bool:
    """Whether another handle (as another process would) takes the run's lock at once."""
    with open(workdir / runs.LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return True


def run_state(run) -> str:
    return json.loads((run.workdir / runs.RUN_FILE).read_text())["state"]


# --- run identity ---------------------------------------------------------------------------------


def test_run_identity_ignores_paths_and_verbosity_but_not_settings_or_data():
    base = identity(data="a.npz", out="first", quiet=True, verbose=True, restart=True, restore=None)
    same = identity(data="copy/of/a.npz", out="second")

    assert runs.identity_sha256(base) == runs.identity_sha256(same)
    for other in (identity(epochs=3), identity(loop="custom"), identity(eager=True), identity(data_sha256="b" * 64)):
        assert runs.identity_sha256(other) != runs.identity_sha256(base)


def test_run_identity_holds_the_code_and_the_library_versions(tmp_path, monkeypatch):
    base = identity()
    code = base["code"]
    assert code["src_sha256"] == provenance.files_sha256(paths.REPO_ROOT / "src")
    assert {"python", "keras", "numpy"} <= set(code["versions"])

    # An edit of src/ (here: of a copy of it), or an upgrade of Keras, makes another run of the same command.
    shutil.copytree(paths.REPO_ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)
    assert runs.identity_sha256(identity()) == runs.identity_sha256(base)
    with open(tmp_path / "src" / "models" / "strong.py", "a") as edited:
        edited.write("# an edit\n")
    edited_src = identity()
    upgraded = runs.run_identity(config.RunConfig(kernel="k"), SHA,
                                 code={**code, "versions": {**code["versions"], "keras": "99.0.0"}})

    for other in (edited_src, upgraded):
        assert runs.identity_sha256(other) != runs.identity_sha256(base)
        assert runs.identity_sha256(runs.command_identity(other)) == runs.identity_sha256(runs.command_identity(base))


# --- start_run ------------------------------------------------------------------------------------


def test_start_run_resumes_the_unfinished_run_of_the_same_identity(tmp_path):
    first = runs.start_run("k", tmp_path, EARLY, identity=identity())
    first.lock.close()  # its process died

    again = runs.start_run("k", tmp_path, LATER, identity=identity())

    assert again.resumed and again.name == first.name
    assert run_state(again) == "running"
    runs.release(again)


def test_start_run_starts_anew_after_a_finished_run_or_for_another_identity(tmp_path):
    first = runs.start_run("k", tmp_path, EARLY, identity=identity())
    runs.mark_finished(first)

    after_finished = runs.start_run("k", tmp_path, LATER, identity=identity())
    other = runs.start_run("k", tmp_path, LATER, identity=identity(epochs=2))

    assert not after_finished.resumed and after_finished.name != first.name
    assert not other.resumed and other.name not in (first.name, after_finished.name)
    assert run_state(first) == "finished"
    runs.release(after_finished)
    runs.release(other)


def test_start_run_does_not_share_a_run_another_process_holds(tmp_path):
    running = runs.start_run("k", tmp_path, EARLY, identity=identity())  # its lock stays held

    second = runs.start_run("k", tmp_path, LATER, identity=identity())

    assert not second.resumed and second.name != running.name
    second.lock.close()
    running.lock.close()


def test_start_run_restart_discards_the_unfinished_run(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.LOGS_ENV, str(tmp_path / "logs"))
    first = runs.start_run("k", tmp_path, EARLY, identity=identity())
    (first.workdir / "fold-0.npz").write_bytes(b"finished fold")
    (tmp_path / "logs" / first.name).mkdir(parents=True)
    first.lock.close()

    fresh = runs.start_run("k", tmp_path, LATER, identity=identity(), restart=True)

    assert not fresh.resumed and fresh.name != first.name
    assert not first.workdir.exists() and not (tmp_path / "logs" / first.name).exists()
    runs.release(fresh)


def test_start_run_restart_leaves_a_run_another_process_holds_alone(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.LOGS_ENV, str(tmp_path / "logs"))
    running = runs.start_run("k", tmp_path, EARLY, identity=identity())  # its lock stays held, as by another process
    (running.workdir / "fold-0.npz").write_bytes(b"a fold the running process finished")
    (tmp_path / "logs" / running.name).mkdir(parents=True)
    crashed = runs.start_run("k", tmp_path, EARLY + dt.timedelta(minutes=1), identity=identity(epochs=3))
    crashed.lock.close()  # another identity's unfinished run: --restart of this identity leaves it too

    fresh = runs.start_run("k", tmp_path, LATER, identity=identity(), restart=True)

    assert not fresh.resumed and fresh.name not in (running.name, crashed.name)
    assert (running.workdir / "fold-0.npz").is_file(), "--restart deleted the run another process holds"
    assert (running.workdir / "fold-0.npz").read_bytes() == b"a fold the running process finished"
    assert (tmp_path / "logs" / running.name).is_dir() and run_state(running) == "running"
    assert not can_lock(running.workdir)  # still the running process's
    assert crashed.workdir.is_dir()
    runs.release(fresh)
    running.lock.close()


def test_start_run_resume_removes_outputs_a_killed_run_began_writing(tmp_path):
    first = runs.start_run("k", tmp_path, EARLY, identity=identity())
    first.path(".npz").write_bytes(b"written before the kill")
    first.path(".csv").write_text("ImageId,Label\n")
    first.lock.close()

    again = runs.start_run("k", tmp_path, LATER, identity=identity())

    # They are written again, from the same saved folds; a run with a record is finished instead.
    assert again.resumed
    assert not first.path(".npz").exists() and not first.path(".csv").exists()
    runs.release(again)


def other_code(**versions):
    """An identity of the same command under other code: another Keras, say."""
    base = identity()
    return {**base, "code": {**base["code"], "versions": {**base["code"]["versions"], **versions}}}


def test_start_run_under_other_code_says_so_and_starts_a_new_run_beside_the_old(tmp_path, caplog):
    old = runs.start_run("k", tmp_path, EARLY, identity=other_code(keras="3.3.0"))
    (old.workdir / "fold-0.npz").write_bytes(b"a fold finished under the old code")
    runs.release(old)  # its process died

    with caplog.at_level(logging.INFO, logger="src.runs"):
        new = runs.start_run("k", tmp_path, LATER, identity=identity())

    assert not new.resumed and new.name != old.name
    [line] = [record.getMessage() for record in caplog.records if "other code" in record.getMessage()]
    assert line == (f"run: {old.name}, an unfinished run of the same command, ran other code (keras 3.3.0 -> "
                    f"{identity()['code']['versions']['keras']}); starting a new run (it stays; --restart removes it).")
    assert (old.workdir / "fold-0.npz").is_file() and run_state(old) == "running"
    runs.release(new)

    # --restart removes the unfinished runs of the command, whatever code they ran.
    fresh = runs.start_run("k", tmp_path, LATER + dt.timedelta(minutes=1), identity=identity(), restart=True)
    assert not old.workdir.exists() and not new.workdir.exists() and fresh.workdir.is_dir()
    runs.release(fresh)


def test_start_run_resumes_a_run_of_a_kit_that_recorded_no_code_never(tmp_path, caplog):
    old = runs.start_run("k", tmp_path, EARLY, identity=runs.command_identity(identity()))
    runs.release(old)

    with caplog.at_level(logging.INFO, logger="src.runs"):
        new = runs.start_run("k", tmp_path, LATER, identity=identity())

    assert not new.resumed
    assert "ran other code (a kit that did not record its code)" in caplog.text
    runs.release(new)


def test_start_run_sweeps_what_killed_writes_left_and_keeps_what_live_ones_hold(tmp_path):
    first = runs.start_run("k", tmp_path, EARLY, identity=identity())
    left = [tmp_path / f".{first.name}.csv.0a1b2c3d.tmp", first.workdir / ".run.json.0a1b2c3d.tmp",
            first.workdir / "fold-1" / ".model.keras.0a1b2c3d.tmp.keras",
            first.workdir / "fold-1" / "backup" / ".epoch-2.weights.h5.0a1b2c3d.tmp.weights.h5"]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
        then = time.time() - 60
        os.utime(path, (then, then))
    runs.release(first)  # its process died mid-write

    with files.atomic_path(tmp_path / "kaggle-submissions.jsonl") as live:  # another process writing now
        os.utime(live, (time.time() - 60, time.time() - 60))
        again = runs.start_run("k", tmp_path, LATER, identity=identity())
        assert live.exists()
        live.write_text("{}\n")

    assert again.resumed and not any(path.exists() for path in left)
    assert (first.workdir / "fold-1" / "backup").is_dir()
    runs.release(again)


def test_start_run_probes_the_folder_before_anything_trains(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(KitError, match=f"^Cannot write {tmp_path / 'out'}: Read-only file system; make the folder"):
        runs.start_run("k", tmp_path / "out", EARLY, identity=identity())
    assert list((tmp_path / "out").iterdir()) == []  # no run folder: the probe failed first


def test_start_run_on_a_folder_without_hard_links_says_how_it_writes(tmp_path, monkeypatch, caplog):
    def no_links(source, target, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with caplog.at_level(logging.INFO, logger="src.runs"):
        run = runs.start_run("k", tmp_path, EARLY, identity=identity())
    assert "has no hard links (FAT, SMB?)" in caplog.text
    runs.mark_finished(run)
    assert run_state(run) == "finished"


def test_start_run_resumes_a_run_a_kill_left_with_an_empty_record(tmp_path):
    # Where files have no hard links or no-replace rename, a kill can leave the record's name empty, never partial.
    first = runs.start_run("k", tmp_path, EARLY, identity=identity())
    first.path(".json").write_bytes(b"")
    runs.release(first)

    again = runs.start_run("k", tmp_path, LATER, identity=identity())

    assert again.resumed and again.name == first.name and not first.path(".json").exists()
    runs.release(again)


def test_start_run_never_reuses_an_existing_name(tmp_path):
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    first = runs.start_run("k", tmp_path, now=now)
    (tmp_path / "k-20260102T030405Z-2.csv").write_text("taken")
    second = runs.start_run("k", tmp_path, now=now)
    assert (first.name, second.name) == ("k-20260102T030405Z", "k-20260102T030405Z-3")
    assert first.workdir.is_dir() and second.workdir.is_dir()
    runs.release(first)
    runs.release(second)


# --- the end of a run -----------------------------------------------------------------------------


def test_mark_finished_marks_the_run_finished_and_releases_its_lock(tmp_path):
    run = runs.start_run("k", tmp_path, EARLY, identity=identity())
    assert not can_lock(run.workdir)

    runs.mark_finished(run)

    assert run_state(run) == "finished" and can_lock(run.workdir)
    assert runs.unfinished_runs("k", tmp_path, identity()) == []


def test_release_keeps_the_run_unfinished_for_the_same_command_to_resume(tmp_path):
    run = runs.start_run("k", tmp_path, EARLY, identity=identity())

    runs.release(run)

    assert run_state(run) == "running" and can_lock(run.workdir)
    assert [found.name for found in runs.unfinished_runs("k", tmp_path, identity())] == [run.name]


def test_run_model_name_reads_the_run_file_in_a_folder_or_above_it(tmp_path):
    run = runs.start_run("t", tmp_path, identity=runs.run_identity(config.RunConfig(kernel="t", model="mlp"), SHA))
    (run.workdir / "fold-0" / "checkpoints").mkdir(parents=True)

    assert runs.run_model_name(run.workdir) == "mlp"
    assert runs.run_model_name(run.workdir / "fold-0" / "checkpoints") == "mlp"
    assert runs.run_model_name(tmp_path / "elsewhere") is None
    runs.mark_finished(run)
