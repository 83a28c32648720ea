"""Tests of src.tune.study (`make tune`): a study of real trials on a few hundred images (a failed, a pruned and a
completed trial, the best printed as a command that reproduces it); its storage refusing other settings; dead
processes' trials run again; resuming after `kill -9`; two processes sharing one study."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from conftest import PROCESS_TIMEOUT, run_kernel
from src import paths, runs, tune
from src.errors import KitError
from src.tune import plan as tune_plan
from src.tune import storage as tune_storage
from src.tune import study as tune_study
from src.tune import summary

SPACE = ("learning-rate: {low: 0.001, high: 0.01, log: true}\nstrategy: [none, tpu]\nbatch-size: 32\nepochs: 1\n"
         "eager: true\n")  # eager steps: tracing them would cost more than 150 images train
# What would point TensorFlow at a TPU somewhere: without them, --strategy tpu is the kit's one-line error.
TPU_ENV = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG", "TPU_ACCELERATOR_TYPE")


class PruneTrial(optuna.pruners.BasePruner):
    """Prunes one trial, at its first report: a pruned trial without depending on the others' scores."""

    def __init__(self, number: int):
        self.number = number

    def prune(self, study, trial) -> bool:
        return trial.number == self.number


def options(tmp_path, data, **more):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    return {"folds": 2, "space_file": space, "data_path": str(data), "out": tmp_path / "tune", **more}


def test_a_study_records_failed_pruned_and_complete_trials_and_prints_a_command_that_reproduces_the_best(
        tmp_path, sample_npz, caplog, monkeypatch):
    for name in TPU_ENV:
        monkeypatch.delenv(name, raising=False)
    caplog.set_level("INFO", logger="src")
    plan = tune_plan.plan_study("mnist-mlp", trials=3, **options(tmp_path, sample_npz, pruner=PruneTrial(1)))
    study, _ = tune_storage.open_study(plan)
    study.enqueue_trial({"learning-rate": 0.003, "strategy": "tpu"})  # no TPU here: the run's KitError
    study.enqueue_trial({"learning-rate": 0.003, "strategy": "none"})
    study.enqueue_trial({"learning-rate": 0.005, "strategy": "none"})

    result, text = tune.tune("mnist-mlp", trials=3, **options(tmp_path, sample_npz, pruner=PruneTrial(1)))

    failed, pruned, complete = result.study.get_trials()
    assert [trial.state for trial in (failed, pruned, complete)] == [TrialState.FAIL, TrialState.PRUNED,
                                                                     TrialState.COMPLETE]
    assert failed.user_attrs["error"].startswith("No TPU found for --strategy tpu")
    # Pruned after fold 1's only epoch: fold 2 never trained, and its run's folder is gone.
    assert list(pruned.intermediate_values) == [1]
    pruned_log = (plan.trials_dir / "trial-1.log").read_text()
    assert "fold 1/2: training" in pruned_log and "fold 2/2" not in pruned_log
    assert [path for path in plan.trials_dir.iterdir() if path.is_dir()] == []
    # The completed trial is a run: its record holds its CV, and no test accuracy (the trial saw no test labels).
    [record_path] = plan.trials_dir.glob("mnist-mlp-*.json")
    record = json.loads(record_path.read_text())
    assert record["cv_mean"] == pytest.approx(complete.value) and record["run"] == complete.user_attrs["run"]
    assert record["test_accuracy"] is None and record["data"]["test_labels"] is False
    assert complete.user_attrs["flags"] == ["--learning-rate", "0.005", "--strategy", "none", "--batch-size", "32",
                                            "--epochs", "1", "--eager"]

    progress = [message for message in caplog.messages if message.startswith("trial ")]
    assert progress[0].startswith("trial 1/3 (#0) failed: ") and "no best yet" in progress[0]
    assert progress[1].startswith("trial 2/3 (#1) pruned after epoch 1 of fold 1")
    assert re.match(r"trial 3/3 \(#2\) cv 0\.\d{4} ± 0\.\d{4} in \d+s; best 0\.\d{4} \(#2\); .* elapsed, about 0s "
                    r"left$", progress[2])
    assert "3 of 3 trials: 1 complete, 1 pruned, 1 failed" in text and "no test split seen" in text
    pictures = sorted(path.name for path in plan.out_dir.glob("*.png"))
    assert pictures == ["mnist-mlp-epochs.png", "mnist-mlp-history.png"]

    # The same command again finds the study complete and runs nothing.
    caplog.clear()
    result, _ = tune.tune("mnist-mlp", trials=3, **options(tmp_path, sample_npz))
    assert result.ran == [] and len(result.study.trials) == 3
    assert any("has 3 of 3 trials; raise --trials to run more" in message for message in caplog.messages)

    # The printed command trains the best trial's run again: the same CV, to the last digit.
    [command] = re.findall(r'as a run: make train KERNEL=mnist-mlp ARGS="(.*)"', text)
    assert command == f"--data {sample_npz} --folds 2 --seed 0 {' '.join(complete.user_attrs['flags'])}"
    again = run_kernel("mnist-mlp", [*shlex.split(command), "--out", str(tmp_path / "again"), "--quiet",
                                     "--no-plots"])
    assert again["cv_mean"] == record["cv_mean"] and again["test_accuracy"] is not None
    assert f'ARGS="{command.replace("--seed 0", "--seed 1")}"' in text


def test_a_study_refuses_to_continue_on_other_folds_seed_or_data(tmp_path, npz_path):
    first = tune_plan.plan_study("mnist-mlp", trials=2, **options(tmp_path, npz_path))
    tune_storage.open_study(first)
    for other in ({"folds": 3}, {"seed": 1}):
        plan = tune_plan.plan_study("mnist-mlp", trials=2, **{**options(tmp_path, npz_path), **other})
        with pytest.raises(KitError, match="was started with kernel mnist-mlp, --folds 2, --seed 0"):
            tune_storage.open_study(plan)
    npz_path.write_bytes(npz_path.read_bytes() + b"\0")  # other data under the same name
    plan = tune_plan.plan_study("mnist-mlp", trials=2, **options(tmp_path, npz_path))
    with pytest.raises(KitError, match="data sha256"):
        tune_storage.open_study(plan)
    # Another study in the same file is free to differ.
    other = {**options(tmp_path, npz_path), "folds": 3}
    other = tune_plan.plan_study("mnist-mlp", trials=2, study_name="other", **other)
    tune_storage.open_study(other)


def test_the_settings_of_a_study_are_checked_before_anything_is_written(tmp_path, npz_path):
    for bad, message in (({"trials": 0}, "trials must be an integer"), ({"folds": 1}, "folds must be an integer"),
                         ({"timeout_minutes": 0}, "timeout must be a positive"), ({"pruner": "mean"}, "pruner")):
        with pytest.raises(KitError, match=message):
            tune_plan.plan_study("mnist-mlp", **{"trials": 2, **options(tmp_path, npz_path), **bad})
    with pytest.raises(KitError, match="No kernel at mnist-rnn"):
        tune_plan.plan_study("mnist-rnn", trials=2, **options(tmp_path, npz_path))
    with pytest.raises(KitError, match="Data not found"):
        tune_plan.plan_study("mnist-mlp", trials=2, **{**options(tmp_path, npz_path), "data_path": "nowhere.npz"})
    assert not (tmp_path / "tune").exists()


def test_no_trial_starts_after_the_timeout_and_the_summary_says_so(tmp_path, npz_path, caplog):
    caplog.set_level("INFO", logger="src")
    plan = tune_plan.plan_study("mnist-mlp", trials=2, timeout_minutes=1e-9, **options(tmp_path, npz_path))

    result = tune_study.run_study(plan)

    assert result.stopped_by == "timeout" and result.ran == [] and result.study.trials == []
    assert any("--timeout 1e-09 minutes passed" in message for message in caplog.messages)
    assert "(--timeout: the same command goes on)" in summary.summary_text(result, [])


def test_a_trial_whose_process_died_here_runs_again_first(tmp_path, npz_path):
    plan = tune_plan.plan_study("mnist-mlp", trials=3, **options(tmp_path, npz_path))
    study, storage = tune_storage.open_study(plan)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = os.uname().nodename
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # asking outside study.optimize, as a dead process did
        trials = [study.ask() for _ in range(3)]
    for trial, pid, number in zip(trials, (int(gone.stdout), os.getpid(), int(gone.stdout)), (0, 1, 99)):
        trial.suggest_float("learning-rate", 0.001, 0.01, log=True)
        trial.set_user_attr("process", {"host": host, "pid": pid, "trial": number})

    assert tune_storage.fail_orphans(study, storage) == [0]

    states = [trial.state for trial in study.get_trials()]
    # #1's process lives; #2's attributes are another trial's (a retry copies them), so the heartbeat judges it.
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING]
    retry = study.get_trials()[3]
    assert retry.params == study.get_trials()[0].params and retry.system_attrs["failed_trial"] == 0
    assert not tune_study.counts(study.get_trials()[0])  # a killed trial does not count; its retry will


def tune_command(tmp_path, data, trials):
    space = tmp_path / "space.yaml"
    space.write_text("learning-rate: {low: 0.001, high: 0.01, log: true}\nbatch-size: 32\nepochs: 1\neager: true\n")
    return [sys.executable, "-m", "src", "tune", "mnist-mlp", "--trials", str(trials), "--folds", "2", "--data",
            str(data), "--space", str(space), "--out", str(tmp_path / "tune")]


def load_study(tmp_path):
    return optuna.load_study(study_name="mnist-mlp", storage=f"sqlite:///{tmp_path / 'tune' / 'mnist-mlp.db'}")


@pytest.mark.slow
def test_kill_9_loses_at_most_the_running_trial_and_the_same_command_continues_the_count(tmp_path, sample_npz):
    command = tune_command(tmp_path, sample_npz, trials=2)
    process = subprocess.Popen(command, cwd=paths.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.monotonic() + PROCESS_TIMEOUT
    try:
        # Trial #1 runs for about a second: watch the folder, which costs milliseconds a look, not the study.
        trials_dir = tmp_path / "tune" / "mnist-mlp"
        while time.monotonic() < deadline and process.poll() is None:  # until trial #1's run is resumable
            time.sleep(0.02)
            # A finished run's folder is removed, so a folder is the running trial #1's; its run.json, written
            # atomically just after the folder is made, is what lets the same command resume it.
            if (trials_dir / "trial-1.log").exists() and any(trials_dir.glob(f"mnist-mlp-*/{runs.RUN_FILE}")):
                break
        else:
            pytest.fail("trial #1's run was not caught running")
    finally:
        process.send_signal(signal.SIGKILL)
        first_output = process.communicate(timeout=PROCESS_TIMEOUT)[0]
    states = [trial.state for trial in load_study(tmp_path).get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.RUNNING], first_output
    finished = load_study(tmp_path).get_trials()[0]
    assert "trial 1/2 (#0) cv " in first_output

    again = subprocess.run(command, cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=PROCESS_TIMEOUT)

    assert again.returncode == 0, again.stdout + again.stderr
    trials = load_study(tmp_path).get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].value == finished.value and trials[0].datetime_complete == finished.datetime_complete
    assert trials[2].params == trials[1].params and trials[2].system_attrs["failed_trial"] == 1
    assert "trial #1's process (pid" in again.stdout and "trial 2/2 (#2) cv " in again.stdout
    assert "trial 1/2" not in again.stdout and "2 of 2 trials: 2 complete, 0 pruned, 0 failed" in again.stdout
    # The retry ran the killed trial's run on: the same run, resumed.
    assert "run: resuming the unfinished run" in (tmp_path / "tune" / "mnist-mlp" / "trial-2.log").read_text()


@pytest.mark.slow
def test_two_processes_on_one_sqlite_study_finish_the_requested_trials_between_them(tmp_path, sample_npz):
    command = tune_command(tmp_path, sample_npz, trials=2)
    processes = [subprocess.Popen(command, cwd=paths.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=PROCESS_TIMEOUT)[0] for process in processes]

    assert [process.returncode for process in processes] == [0, 0], outputs
    trials = load_study(tmp_path).get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert {trial.user_attrs["process"]["pid"] for trial in trials} == {process.pid for process in processes}
    assert all(output.count("trial ") >= 1 and "of 2 trials" in output for output in outputs)
