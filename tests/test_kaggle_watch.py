"""src.kaggle.watch: waiting for a pushed kernel, then fetching, checking and submitting its output.

The loop's pace is tested with a fake clock (no real minutes); the whole watch runs the real kaggle CLI against the
fake Kaggle API, its status going queued, running, complete (or error).
"""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kaggle_fixtures import REF, KERNEL
from src import cli, console, mnist, paths, submission
from src.errors import KitError
from src.kaggle import kernels, watch
from src.kaggle.command import KaggleError

pytest_plugins = ["kaggle_fixtures"]

IN_REPO_VENV = Path(sys.prefix).resolve() == (paths.REPO_ROOT / ".venv").resolve()
FAST = ["--poll", "0.01"]


class FakeClock:
    """A clock that moves only when the watch sleeps; it records the pauses."""

    def __init__(self):
        self.now = 1000.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(round(seconds, 3))
        self.now += seconds


def scripted_statuses(monkeypatch, script: dict[str, list]) -> list[str]:
    """Answers `kernels.status_of` from `script` (per ref: states, or exceptions to raise), the last one staying."""
    asked = []

    def status_of(ref, name, push_command=None):
        asked.append(ref)
        states = script[ref]
        state = states.pop(0) if len(states) > 1 else states[0]
        if isinstance(state, Exception):
            raise state
        return kernels.KernelStatus(ref=ref, status=state, failure_message="boom" if state == "error" else None)

    monkeypatch.setattr(kernels, "status_of", status_of)
    return asked


# --- the pace of the wait ---------------------------------------------------------------------------


def test_wait_for_says_each_change_and_a_line_a_minute_and_backs_off_to_a_minute(monkeypatch, caplog):
    clock = FakeClock()
    scripted_statuses(monkeypatch, {"me/k": ["queued", "running", *["running"] * 9, "complete"]})
    with caplog.at_level(logging.INFO, logger="src"):
        states = watch.wait_for(["me/k"], "k", pace=watch.Pace(clock=clock, sleep=clock.sleep))

    assert states["me/k"].status == "complete"
    # After each change the pause starts again at 5 s, then doubles up to a minute.
    assert clock.pauses == [5.0, 5.0, 10.0, 20.0, 25.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    lines = [record.getMessage() for record in caplog.records]
    assert lines[:2] == ["me/k: queued (0m00s)", "me/k: running (0m05s)"]
    assert lines[-1] == "me/k: complete (7m05s)"
    # A line at least every minute while nothing changes, with the time waited.
    assert lines[2:-1] == [f"waiting {elapsed}: still running" for elapsed in
                           ("1m05s", "2m05s", "3m05s", "4m05s", "5m05s", "6m05s")]


def test_wait_for_stops_at_its_timeout_and_says_the_kernel_keeps_running(monkeypatch):
    clock = FakeClock()
    scripted_statuses(monkeypatch, {"me/k": ["running"]})
    with pytest.raises(KitError, match=r"me/k not finished after 0m30s; Kaggle keeps running it: watch again with "
                                       r"`make watch KERNEL=k`, or allow longer with --timeout\."):
        watch.wait_for(["me/k"], "k", timeout=30, pace=watch.Pace(clock=clock, sleep=clock.sleep))
    assert sum(clock.pauses) == 30


def test_wait_for_retries_passing_failures_and_not_others(monkeypatch):
    clock = FakeClock()
    passing = KaggleError("Kaggle could not get the status: Kaggle's servers failed (5xx)", transient=True)
    scripted_statuses(monkeypatch, {"me/k": ["queued", passing, passing, "complete"]})
    assert watch.wait_for(["me/k"], "k", pace=watch.Pace(clock=clock, sleep=clock.sleep))["me/k"].status == "complete"

    scripted_statuses(monkeypatch, {"me/k": ["queued", KaggleError("401 Unauthorized"), "complete"]})
    with pytest.raises(KaggleError, match="401"):
        watch.wait_for(["me/k"], "k", pace=watch.Pace(clock=clock, sleep=clock.sleep))

    scripted_statuses(monkeypatch, {"me/k": [passing]})
    with pytest.raises(KaggleError, match="5xx"):
        watch.wait_for(["me/k"], "k", pace=watch.Pace(clock=clock, sleep=clock.sleep))


def test_wait_for_several_kernels_waits_for_all_and_counts_their_states(monkeypatch, caplog):
    clock = FakeClock()
    script = {"me/a": ["running", "complete"], "me/b": ["queued", *["running"] * 30, "error"]}
    asked = scripted_statuses(monkeypatch, script)
    with caplog.at_level(logging.INFO, logger="src"):
        states = watch.wait_for(["me/a", "me/b"], "k", pace=watch.Pace(clock=clock, sleep=clock.sleep))
    assert [state.status for state in states.values()] == ["complete", "error"]
    assert asked.count("me/a") == 2  # a finished kernel is not asked again
    assert "waiting 1m05s: 1 complete, 1 running" in [record.getMessage() for record in caplog.records]


def test_pace_starting_at_keeps_a_short_first_pause_short():
    assert (watch.Pace.starting_at(0.01).first_seconds, watch.Pace.starting_at(0.01).most_seconds) == (0.01, 60.0)
    assert watch.Pace.starting_at(90).most_seconds == 90


# --- the whole watch, through the kaggle CLI ----------------------------------------------------------


def competition_output(tmp_path: Path) -> dict[str, bytes]:
    """A kernel's output as Kaggle keeps it: the competition's 28,000-row submission and its run's record."""
    labels = np.random.default_rng(1).integers(0, 10, size=mnist.COMPETITION_TEST_ROWS)
    text = submission.submission_text(labels).encode()
    run = "mnist-cnn-20250101T000000Z"
    record = {"run": run, "kernel": KERNEL, "config": {"kernel": KERNEL, "folds": 5}, "submission": f"{run}.csv",
              "cv_mean": 0.991, "leaks": {"test_in_train": 0, "test_rows": 28000}}
    return {paths.KAGGLE_SUBMISSION_NAME: text, f"{run}.csv": text, f"{run}.json": json.dumps(record).encode()}


@pytest.mark.slow
def test_watch_goes_from_a_pushed_kernel_to_a_submitted_file(fake_kaggle, kit_dirs, tmp_path, capsys):
    fake_kaggle.queue_statuses("QUEUED", "RUNNING", "COMPLETE")
    fake_kaggle.kernel_outputs = competition_output(tmp_path)

    assert cli.main(["watch", KERNEL, "--submit", "watched", *FAST]) == 0

    out = capsys.readouterr().out
    assert [line.split(" (")[0] for line in out.splitlines() if line.startswith(REF)] == \
        [f"{REF}: queued", f"{REF}: running", f"{REF}: complete"]
    folder = kit_dirs[1] / KERNEL
    assert f"{folder / paths.KAGGLE_SUBMISSION_NAME}: valid submission, 28000 rows" in out
    assert fake_kaggle.uploads["blob-1"] == (folder / paths.KAGGLE_SUBMISSION_NAME).read_bytes()
    assert fake_kaggle.received("CreateSubmission")[0]["submissionDescription"] == "watched"
    logged = json.loads((folder / paths.KAGGLE_SUBMISSIONS_LOG_NAME).read_text())
    assert (logged["file"], logged["run"], logged["ref"]) == (paths.KAGGLE_SUBMISSION_NAME,
                                                              "mnist-cnn-20250101T000000Z", 31337)
    assert len(fake_kaggle.received("GetKernelSessionStatus")) == 3


@pytest.mark.slow
def test_watch_of_a_failed_run_prints_its_failure_and_the_logs_last_lines(fake_kaggle, capsys):
    fake_kaggle.queue_statuses("ERROR", failure_message="Your notebook tried to allocate more memory.")
    fake_kaggle.kernel_log = json.dumps([{"stream_name": "stdout", "time": 1.0, "data": f"epoch {index}\n"}
                                         for index in range(20)] +
                                        [{"stream_name": "stderr", "time": 9.0, "data": "MemoryError\n"}])

    assert cli.main(["watch", KERNEL, "--submit", "never", *FAST]) == console.EXIT_USAGE

    printed = capsys.readouterr()
    tail = [line for line in printed.out.splitlines() if line.startswith("  | ")]
    assert tail == [f"  | epoch {index}" for index in range(9, 20)] + ["  | MemoryError"]
    assert printed.err.count("\n") == 1
    assert printed.err.startswith(f"error: Kaggle's run of {REF} ended in error: Your notebook tried to allocate "
                                  "more memory.; fix what the log says")
    assert fake_kaggle.received("CreateSubmission") == [] and fake_kaggle.received("ListKernelSessionOutput")


def test_ctrl_c_stops_the_watching_and_says_how_to_resume(monkeypatch, credentials, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(watch, "wait_for", interrupted)
    assert cli.main(["watch", f"kernels/{KERNEL}"]) == console.EXIT_INTERRUPTED
    assert capsys.readouterr().err == ("interrupted: only the watching stopped; Kaggle keeps running the kernel. "
                                       f"Watch it again with `make watch KERNEL={KERNEL}`.\n")


@pytest.mark.slow
@pytest.mark.skipif(not IN_REPO_VENV, reason="make uses the repository's .venv; run the suite from it (make test)")
def test_make_watch_with_a_message_submits_against_the_fake_server(fake_kaggle, tmp_path):
    fake_kaggle.queue_statuses("RUNNING", "COMPLETE")
    fake_kaggle.kernel_outputs = competition_output(tmp_path)
    # The download goes to tmp_path, not to the checkout's submissions/kaggle/.
    completed = subprocess.run(["make", "--no-print-directory", "-s", "-o", ".venv/.installed", "watch",
                                f"KERNEL={KERNEL}", "MESSAGE=from make watch", f"ARGS=--poll 0.01 --out {tmp_path}"],
                               cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert fake_kaggle.received("CreateSubmission")[0]["submissionDescription"] == "from make watch"
    submitted = tmp_path / KERNEL / paths.KAGGLE_SUBMISSION_NAME
    assert f"submitted {submitted} (ref 31337): Successfully submitted" in completed.stdout
    assert fake_kaggle.uploads["blob-1"] == submitted.read_bytes()
