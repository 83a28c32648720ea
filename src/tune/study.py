"""The study: Optuna's search over a kernel's flags, each trial a cross-validated run of the kernel's own script.

- **A trial is a run.** It runs `kernels/<name>/kernel.py` in this process with the study's `--data`, `--folds`
  and `--seed` and the trial's flags, as `python kernels/<name>/kernel.py ...` would; its value is the run's CV
  mean. Its run goes to `<out>/<study>/` (record, probabilities, submission; its folder is removed once it ends)
  and what it printed to `<out>/<study>/trial-<n>.log`.
- **No test split.** Each run is a trial (`src.trial_hooks`): its data has no test labels, so no test accuracy
  is computed while a study runs.
- **Pruning.** After each epoch of the first fold the trial reports the held-out accuracy; the pruner (Optuna's
  median, or Hyperband) stops a trial that trails the others at that epoch. Pruned trials are recorded as such;
  a trial whose run fails with a `KitError` is recorded as failed, and the study goes on.
- **Storage.** The study lives in an SQLite file (`<out>/<kernel>.db`) or the database `--storage` names. Each
  trial is written when it ends, so `kill -9` loses at most the running trial, whose run resumes from its last
  epoch when its flags run again: the same command finds the study, sees that the trial's process is gone (on
  this machine at once; elsewhere when its heartbeat stops), and runs it first. Processes that run the same
  command on one storage share the study, Optuna coordinating them: that is how a search spreads over machines.
"""

import contextlib
import fcntl
import logging
import math
import os
import runpy
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from src import config, data, paths, trial_hooks
from src.errors import KitError
from src.tune import space as search_space

logger = logging.getLogger(__name__)

DEFAULT_FOLDS = 5
PRUNER_NAMES = ("median", "hyperband", "none")
KERNEL_SCRIPT = "kernel.py"
# A running trial writes a heartbeat every minute; one silent for three belongs to a process that died on some
# machine sharing the storage, and is run again (at most MAX_RETRIES times).
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180
MAX_RETRIES = 3
# SQLite makes a writer wait while another holds the file; trials write seldom, so a long wait is safe.
SQLITE_TIMEOUT_SECONDS = 60

# Heartbeats, the retry callback and the pictures are "experimental" in Optuna 5; the kit relies on them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


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


@dataclass(frozen=True)
class StudyPlan:
    """What a study searches, and where it keeps what it finds.

    Attributes:
        kernel_dir: the kernel's folder; its `kernel.py` is what each trial runs.
        trials: the trials the study should count in all (finished earlier ones included).
        folds, seed: the cross-validation every trial is scored on.
        space: the search space.
        data: `--data` as given (None: the kernel's default, `input/`); `data_sha256` is its content's.
        out_dir: the folder of the SQLite file, the pictures and the trials' runs (`<out>/<study>/`).
        storage_url: the study's database.
        study_name: the study's name in it (the kernel's, by default).
        timeout_minutes: no trial starts after this many minutes of this process; None for no limit.
        pruner: a name from `PRUNER_NAMES`, or an Optuna pruner.
    """

    kernel_dir: Path
    trials: int
    folds: int
    seed: int
    space: search_space.Space
    data: str | None
    data_sha256: str
    out_dir: Path
    storage_url: str
    study_name: str
    timeout_minutes: float | None = None
    pruner: object = "median"

    @property
    def kernel(self) -> str:
        return self.kernel_dir.resolve().name

    @property
    def script(self) -> Path:
        return self.kernel_dir / KERNEL_SCRIPT

    @property
    def trials_dir(self) -> Path:
        """Where the trials' runs and logs go."""
        return self.out_dir / self.study_name

    def study_flags(self) -> list[str]:
        """The flags every trial shares: the data, folds and seed (what makes their scores compare)."""
        return [*(["--data", self.data] if self.data is not None else []), "--folds", str(self.folds),
                "--seed", str(self.seed)]

    def settings(self) -> dict:
        """What a study keeps to refuse being continued on other terms."""
        return {"kernel": self.kernel, "folds": self.folds, "seed": self.seed, "data_sha256": self.data_sha256}


def plan_study(kernel: str | os.PathLike, *, trials: int, folds: int = DEFAULT_FOLDS, seed: int = 0,
               space_file: str | os.PathLike | None = None, data_path: str | None = None,
               out: str | os.PathLike | None = None, storage: str | None = None, study_name: str | None = None,
               timeout_minutes: float | None = None, pruner: object = "median") -> StudyPlan:
    """Checks a study's settings, its kernel, space and data, before anything is written.

    Args:
        kernel: the kernel's folder (`kernels/mnist-fast`) or name.
        trials: trials in all, 1 or more.
        folds: K >= 2 (a study is scored on cross-validation).
        seed: the folds' and the models' seed, the same for every trial.
        space_file: the search space; None for the kernel's `tune-space.yaml`.
        data_path: the data (`--data`); None for the kernel's default.
        out: the tuning folder; None for `submissions/tune/`.
        storage: a database URL (`sqlite:///...`, `postgresql://...`); None for `<out>/<kernel>.db`.
        study_name: None for the kernel's name.
        timeout_minutes: None for none.
        pruner: `median`, `hyperband`, `none`, or an Optuna pruner.

    Raises:
        KitError: a bad value, an unknown kernel, a bad space file, or no data.
    """
    config.check_range("trials", trials, 1, 100_000)
    config.check_range("folds", folds, 2, config.MAX_FOLDS)
    config.check_range("seed", seed, 0, 2**31 - 1)
    if timeout_minutes is not None and not timeout_minutes > 0:
        raise KitError(f"timeout must be a positive number of minutes. Received: timeout={timeout_minutes!r}.")
    if isinstance(pruner, str):
        config.check_choice("pruner", pruner, PRUNER_NAMES)
    kernel_dir = Path(kernel)
    if not (kernel_dir / KERNEL_SCRIPT).is_file():
        kernel_dir = paths.KERNELS_DIR / Path(kernel).name
    if not (kernel_dir / KERNEL_SCRIPT).is_file():
        known = sorted(path.parent.name for path in paths.KERNELS_DIR.glob(f"*/{KERNEL_SCRIPT}"))
        raise KitError(f"No kernel at {kernel} (no {KERNEL_SCRIPT} there); choose one of {', '.join(known)}.")
    name = kernel_dir.resolve().name
    space = search_space.load_space(Path(space_file) if space_file is not None else
                                    search_space.default_space_file(kernel_dir), name)
    data_sha256 = data.source_sha256(data.find_data(data_path))
    out_dir = Path(out) if out is not None else paths.default_output_dir() / "tune"
    storage_url = storage or f"sqlite:///{(out_dir / f'{name}.db').resolve()}"
    return StudyPlan(kernel_dir=kernel_dir, trials=trials, folds=folds, seed=seed, space=space, data=data_path,
                     data_sha256=data_sha256, out_dir=out_dir, storage_url=storage_url,
                     study_name=study_name or name, timeout_minutes=timeout_minutes, pruner=pruner)


def _pruner(plan: StudyPlan) -> optuna.pruners.BasePruner:
    if not isinstance(plan.pruner, str):
        return plan.pruner
    if plan.pruner == "median":
        # Five trials run to the end before any is compared with their median.
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


@contextlib.contextmanager
def _creating(plan: StudyPlan):
    """Holds a lock beside an SQLite file while the storage opens: two processes must not both create its tables."""
    if not plan.storage_url.startswith("sqlite:///"):
        yield
        return
    database = Path(plan.storage_url.removeprefix("sqlite:///"))
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        lock = open(database.with_name(database.name + ".lock"), "a")
    except OSError as error:
        raise KitError(f"Cannot write the study's database beside {database} ({error}); pick another --out.") \
            from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def open_study(plan: StudyPlan) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Creates the study in its storage, or loads it; a loaded study must have the plan's settings.

    Raises:
        KitError: the storage cannot be opened, or the study was started on another kernel, folds, seed or data.
    """
    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}} if plan.storage_url.startswith("sqlite:") else {}
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
    with _creating(plan):
        try:
            storage = optuna.storages.RDBStorage(plan.storage_url, engine_kwargs=engine,
                                                 heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                                                 heartbeat_stale_trial_callback=retry)
            study = optuna.create_study(storage=storage, study_name=plan.study_name, direction="maximize",
                                        sampler=optuna.samplers.TPESampler(constant_liar=True),
                                        pruner=_pruner(plan), load_if_exists=True)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
            reason = " ".join(str(error).split())[:300]
            raise KitError(f"Cannot open the study's storage {plan.storage_url} ({reason}); check --storage (a "
                           "server's URL needs its driver installed, e.g. psycopg2 for postgresql://).") from None
    settings, kept = plan.settings(), study.user_attrs
    if not kept:
        for key, value in {**settings, "space": plan.space.to_dict()}.items():
            study.set_user_attr(key, value)
    elif any(kept.get(key) != value for key, value in settings.items()):
        raise KitError(f"Study {plan.study_name} in {plan.storage_url} was started with {_describe(kept)}, not "
                       f"{_describe(settings)}: their scores would not compare. Give those settings, or start "
                       "another study with --study NAME.")
    elif kept.get("space") != plan.space.to_dict():
        logger.info("tune: the space differs from the one study %s started with; its earlier trials keep theirs",
                    plan.study_name)
    return study, storage


def _describe(settings: dict) -> str:
    return (f"kernel {settings.get('kernel')}, --folds {settings.get('folds')}, --seed {settings.get('seed')}, "
            f"data sha256 {str(settings.get('data_sha256'))[:12]}")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True  # another user's process, or no pid to judge by: the heartbeat decides
    return True


def fail_orphans(study: optuna.Study, storage: optuna.storages.RDBStorage) -> list[int]:
    """Fails the running trials whose process is gone, and queues each to run again (as the heartbeat would).

    A trial whose process died on this machine is seen at once (its pid is gone); one on another machine when
    its heartbeat has been silent for `GRACE_SECONDS` (Optuna's `fail_stale_trials`).

    Returns:
        The numbers of the trials this call failed on this machine.
    """
    optuna.storages.fail_stale_trials(study)
    host, study_id, failed = socket.gethostname(), storage.get_study_id_from_name(study.study_name), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        process = trial.user_attrs.get("process") or {}
        if process.get("host") != host or process.get("trial") != trial.number or _alive(process.get("pid")):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(trial_id))
        logger.info("tune: trial #%d's process (pid %s) is gone; its flags run again, resuming its run",
                    trial.number, process.get("pid"))
        failed.append(trial.number)
    return failed


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


class _Objective:
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
    return f"failed: {trial.user_attrs.get('error', 'its process stopped')}"


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
    study, storage = open_study(plan)
    started = time.monotonic()
    result = StudyResult(plan, study)
    objective, progress = _Objective(plan, study, storage), _Progress(result, started)
    logger.info("tune: study %s in %s: %s, %d folds, seed %d, space %s", plan.study_name, plan.storage_url,
                plan.kernel, plan.folds, plan.seed, plan.space.source)
    while True:
        fail_orphans(study, storage)
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
        study.optimize(objective, n_trials=1, callbacks=[progress], gc_after_trial=True)
    result.seconds = time.monotonic() - started
    return result
