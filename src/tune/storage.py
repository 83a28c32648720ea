"""A study's storage: Optuna's RDB storage (an SQLite file, or the database `--storage` names), the study in it,
and the trials whose process died, which run again.

A running trial records a heartbeat; one whose process died on this machine is seen at once (its pid is gone),
one on another machine when its heartbeat stops. Either is failed and queued to run again with its flags, so
its run resumes from its last saved epoch.
"""

import contextlib
import fcntl
import logging
import os
import socket
import warnings
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from src.errors import KitError
from src.tune.plan import StudyPlan

logger = logging.getLogger(__name__)

# A running trial writes a heartbeat every minute; one silent for three belongs to a process that died on some
# machine sharing the storage, and is run again (at most MAX_RETRIES times).
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180
MAX_RETRIES = 3
# SQLite makes a writer wait while another holds the file; trials write seldom, so a long wait is safe.
SQLITE_TIMEOUT_SECONDS = 60


@contextlib.contextmanager
def experimental():
    """Heartbeats, their retry callback and the constant liar are "experimental" in Optuna 5: used knowingly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


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
        raise KitError(f"Cannot write the study's database beside {database} ({error}); pick another --out or "
                       "--storage.") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def open_study(plan: StudyPlan) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Creates the study in its storage, or loads it; a loaded study must have the plan's settings.

    Raises:
        KitError: the storage cannot be opened, or the study was started on another kernel, folds, seed or data.
    """
    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}} if plan.storage_url.startswith("sqlite:") else {}
    with _creating(plan), experimental():
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
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
    with experimental():
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
        with experimental():
            storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(trial_id))
        logger.info("tune: trial #%d's process (pid %s) is gone; its flags run again, resuming its run",
                    trial.number, process.get("pid"))
        failed.append(trial.number)
    return failed
