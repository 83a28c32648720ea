"""Tests of src/runs.py: a run's identity, its folder and lock, resuming an unfinished run, and finishing it."""

import datetime as dt
import fcntl
import json

from src import config, paths, runs

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
