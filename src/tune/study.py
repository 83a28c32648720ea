"""The study: Optuna's search over a kernel's flags, trial after trial, until the study counts its trials (from
every process sharing it) or `--timeout` passes; a progress line per trial.

- **A trial is a run** (`src.tune.trial`): the kernel's own script, in this process, with the study's `--data`,
  `--folds` and `--seed` and the trial's flags; its value is the run's CV mean. The run sees no test labels
  (`src.trial_hooks`), so no test accuracy is computed while a study runs.
- **Pruning**: after each epoch of fold 1 the trial reports the held-out accuracy; the pruner (Optuna's median,
  or Hyperband) stops a trial that trails the others at that epoch. Pruned trials are recorded as such; a trial
  whose run fails with a `KitError` is recorded as failed, and the study goes on.
- **Storage** (`src.tune.storage`): each trial is written when it ends, so `kill -9` loses at most the running
  trial, which the same command runs first (its run resuming from its last epoch). Processes that run the same
  command on one storage share the study, Optuna coordinating them: that is how a search spreads over machines.
"""

import logging
import time
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from src.tune import storage as study_storage
from src.tune.plan import StudyPlan
from src.tune.trial import Objective

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """Returns `1h02m`, `3m05s` or `42s`."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def counts(trial: FrozenTrial) -> bool:
    """Returns whether a trial counts towards `--trials`: it completed, was pruned, or its run failed.

    A trial whose process was killed or interrupted does not count: it runs again.
    """
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or \
        (trial.state == TrialState.FAIL and "error" in trial.user_attrs)


@dataclass
class StudyResult:
    """What a study's command ran.

    Attributes:
        plan: its plan.
        study: the Optuna study (every trial, from every process).
        ran: the trials this process ran, in order.
        seconds: this process's time.
        stopped_by: `"trials"` (the study has its trials) or `"timeout"`.
    """

    plan: StudyPlan
    study: optuna.Study
    ran: list[FrozenTrial] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "trials"


class _Progress:
    """Logs one line per trial that ends here: trial n/N, its value, the best so far, elapsed, time left."""

    def __init__(self, result: StudyResult, started: float):
        self.result, self.started = result, started

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        result, plan = self.result, self.result.plan
        result.ran.append(trial)
        trials = study.get_trials(deepcopy=False)
        done = sum(counts(item) for item in trials)
        others = sum(item.state == TrialState.RUNNING for item in trials)
        elapsed = time.monotonic() - self.started
        # At this process's pace, the processes running trials now sharing what is left.
        left = elapsed / len(result.ran) * max(0, plan.trials - done) / (1 + others)
        if plan.timeout_minutes is not None:
            left = min(left, max(0.0, plan.timeout_minutes * 60 - elapsed))
        completed = [item for item in trials if item.state == TrialState.COMPLETE]
        best = max(completed, key=lambda item: item.value, default=None)
        best_text = f"best {best.value:.4f} (#{best.number})" if best is not None else "no best yet"
        logger.info("trial %d/%d (#%d) %s; %s; %s elapsed, about %s left", done, plan.trials, trial.number,
                    describe_outcome(trial), best_text, format_duration(elapsed), format_duration(left))


def describe_outcome(trial: FrozenTrial) -> str:
    """Returns a trial's end in a few words: `cv 0.9876 ± 0.0012 in 41s`, `pruned after epoch 2 ...`, `failed: ...`."""
    seconds = format_duration(trial.duration.total_seconds()) if trial.duration is not None else "?"
    if trial.state == TrialState.COMPLETE:
        return f"cv {trial.value:.4f} ± {trial.user_attrs.get('cv_std') or 0:.4f} in {seconds}"
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        return f"pruned after epoch {step} of fold 1 (val_accuracy {trial.intermediate_values[step]:.4f}) in {seconds}"
    if trial.state == TrialState.PRUNED:
        return f"pruned in {seconds}"
    return f"failed: {trial.user_attrs.get('error', 'its process stopped').rstrip('.')}"


def run_study(plan: StudyPlan) -> StudyResult:
    """Runs trials until the study counts `plan.trials` (from all its processes) or the timeout passes.

    Returns:
        What ran here, with the study.

    Raises:
        KitError: the storage cannot be opened or holds the study on other terms.
        KeyboardInterrupt: Ctrl-C; the running trial is queued to run again.
    """
    # Optuna's own lines repeat what the progress lines say (and a failed trial's in a traceback): errors only.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, storage = study_storage.open_study(plan)
    started = time.monotonic()
    result = StudyResult(plan, study)
    objective, progress = Objective(plan, study, storage), _Progress(result, started)
    logger.info("tune: study %s in %s: %s, %d folds, seed %d, space %s", plan.study_name, plan.storage_url,
                plan.kernel, plan.folds, plan.seed, plan.space.source)
    while True:
        study_storage.fail_orphans(study, storage)
        trials = study.get_trials(deepcopy=False)
        done = sum(counts(trial) for trial in trials)
        running = sum(trial.state == TrialState.RUNNING for trial in trials)
        if done + running >= plan.trials:
            if not result.ran:
                logger.info("tune: study %s has %d of %d trials%s; raise --trials to run more", plan.study_name,
                            done, plan.trials, f" ({running} running elsewhere)" if running else "")
            break
        if plan.timeout_minutes is not None and time.monotonic() - started >= plan.timeout_minutes * 60:
            logger.info("tune: --timeout %g minutes passed; the same command continues the study", plan.timeout_minutes)
            result.stopped_by = "timeout"
            break
        with study_storage.experimental():
            study.optimize(objective, n_trials=1, callbacks=[progress], gc_after_trial=True)
    result.seconds = time.monotonic() - started
    return result
