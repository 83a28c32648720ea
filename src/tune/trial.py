"""One trial of a study: the kernel's own script run in this process with the trial's flags, as a search's trial.

Its flags are drawn from the space; its run goes to `<out>/<study>/` (its folder removed when it ends: the
record, probabilities and submission stay) and what it prints to `<out>/<study>/trial-<n>.log`. Under
`trial_hooks.trial` the run sees no test labels, and each epoch of fold 1 is reported to the pruner.
"""

import contextlib
import logging
import math
import os
import runpy
import shutil
import socket
import sys
from pathlib import Path

import optuna

from src import trial_hooks
from src.errors import KitError
from src.tune import space as search_space
from src.tune import storage as study_storage
from src.tune.plan import StudyPlan

logger = logging.getLogger(__name__)


def _run_kernel(script: Path, argv: list[str]) -> dict:
    """Runs a kernel's script in this process, as `python SCRIPT ARGV`; returns its run record."""
    saved = sys.argv
    sys.argv = [str(script), *argv]
    try:
        namespace = runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved
    record = namespace.get("record")
    if not isinstance(record, dict) or "cv_mean" not in record:
        raise KitError(f"{script} ended without a run record (its global `record`, from run.finish(...)); a kernel "
                       "must finish its run to be tuned.")
    return record


@contextlib.contextmanager
def _trial_output(log_path: Path):
    """Sends what a trial prints to its log, and undoes what its kernel did to the kit's logging and excepthook."""
    kit_logger = logging.getLogger("src")
    saved = list(kit_logger.handlers), kit_logger.level, kit_logger.propagate, sys.excepthook
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        try:
            yield
        finally:
            kit_logger.handlers[:] = saved[0]
            kit_logger.setLevel(saved[1])
            kit_logger.propagate = saved[2]
            sys.excepthook = saved[3]


class _Pruning:
    """The trial's epoch listener: reports fold 1's held-out accuracy after each epoch, and prunes."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self.workdir: Path | None = None

    def __call__(self, fold, epoch: int, logs: dict[str, float]) -> None:
        self.workdir = fold.run.run.workdir
        if fold.index != 0 or fold.seed_index != 0 or "val_accuracy" not in logs:
            return
        self.trial.report(float(logs["val_accuracy"]), step=epoch + 1)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"after epoch {epoch + 1} of fold 1: val_accuracy={logs['val_accuracy']:.4f}")


def _remove_run_folder(folder: Path | None) -> None:
    # The record, probabilities and submission beside it stay; the checkpoints would fill the disk over a study.
    if folder is not None and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


class Objective:
    """One trial: the flags from the space, a run of the kernel, its CV mean."""

    def __init__(self, plan: StudyPlan, study: optuna.Study, storage: optuna.storages.RDBStorage):
        self.plan, self.study, self.storage = plan, study, storage

    def __call__(self, trial: optuna.Trial) -> float:
        plan = self.plan
        flags = search_space.flag_arguments(search_space.suggest(trial, plan.space))
        trial.set_user_attr("flags", flags)
        # Who runs it: a retry copies these, so the trial's number tells whether they are its own.
        trial.set_user_attr("process", {"host": socket.gethostname(), "pid": os.getpid(), "trial": trial.number})
        argv = [*plan.study_flags(), *flags, "--out", str(plan.trials_dir), "--quiet", "--no-plots"]
        pruning = _Pruning(trial)
        try:
            with _trial_output(plan.trials_dir / f"trial-{trial.number}.log"), trial_hooks.trial(pruning):
                record = _run_kernel(plan.script, argv)
        except optuna.TrialPruned:
            _remove_run_folder(pruning.workdir)
            raise
        except KitError as error:
            trial.set_user_attr("error", str(error))
            return math.nan  # Optuna records a failed trial; the study goes on
        except KeyboardInterrupt:
            # Its run folder stays; the same command runs these flags again first, resuming the run.
            study_id = self.storage.get_study_id_from_name(self.study.study_name)
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            with study_storage.experimental():
                self.storage.get_heartbeat_stale_trial_callback()(self.study, self.storage.get_trial(trial_id))
            raise
        finally:
            if "keras" in sys.modules:  # the models of this trial go; the next trial builds its own
                from keras import backend  # here, not at the top: it loads TensorFlow, which a trial loads itself

                backend.clear_session()
        if record["cv_mean"] is None:
            trial.set_user_attr("error", "the run has no cross-validation score")
            return math.nan
        for key in ("cv_std", "oof_accuracy", "seconds", "run"):
            trial.set_user_attr(key, record.get(key))
        _remove_run_folder(plan.trials_dir / record["run"])
        return float(record["cv_mean"])
