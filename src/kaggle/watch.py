"""Watching pushed kernels until Kaggle finishes them (`make watch`, `make watch-folds`), then fetching the output.

The kaggle CLI has no wait, so this polls `kaggle kernels status`: a line at each change of state and a line a
minute with the time waited; the pause between two calls starts at a few seconds and doubles up to a minute while
nothing changes, and a call that fails for a passing reason (no network, 409, 429, 5xx) is retried. Ctrl-C stops
the watching, never the kernel: Kaggle keeps running it, and the same command watches it again.

On `complete`, the output is downloaded as `make output` does, its `submission.csv` checked and, when asked,
submitted (`competition.submit`, which refuses a leaking run). On `error`, Kaggle's failure message and the last
lines of the run's log are what the user sees.
"""

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from src import paths, submission
from src.errors import KitError
from src.kaggle import competition, kernels, metadata
from src.kaggle.command import KaggleError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 4 * 3600
# Kaggle's states that end a run; every other one (queued, running, cancel_requested, ...) is waited through.
FINISHED = ("complete", "error", "cancel_acknowledged")
# Failed status calls in a row (each for a passing reason) before the watch gives up.
MAX_RETRIES = 5


@dataclass(frozen=True)
class Pace:
    """How often the watch asks Kaggle, and how often it says it is still waiting.

    Attributes:
        first_seconds: the first pause between two status calls, and the pause after each change of state.
        most_seconds: the longest pause (the pause doubles up to it while nothing changes).
        heartbeat_seconds: a line with the time waited at least this often, when nothing changes.
        clock: the monotonic clock, in seconds (tests pass a fake one).
        sleep: the pause (tests pass a fake one).
    """

    first_seconds: float = 5.0
    most_seconds: float = 60.0
    heartbeat_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def starting_at(cls, first_seconds: float) -> "Pace":
        """Returns the default pace with its first pause `first_seconds` (the longest at least that)."""
        return cls(first_seconds=first_seconds, most_seconds=max(first_seconds, cls.most_seconds))


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def wait_for(refs: list[str], name: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, pace: Pace = Pace(),
             push_command: str | None = None, again: str | None = None) -> dict[str, kernels.KernelStatus]:
    """Polls the kernels' latest runs until each is complete, failed or cancelled.

    Args:
        refs: the kernels' `<owner>/<slug>` (one, or the fold kernels of `make push-folds`).
        name: the kernel's folder name, for messages.
        timeout: seconds to wait at most.
        pace: the pauses and lines (`Pace`).
        push_command: what pushes the kernels, for a 404.
        again: the command that watches them again, for a timeout; default `make watch KERNEL=<name>`.

    Returns:
        Each kernel's final status, in `refs` order.

    Raises:
        KitError: the wait timed out (the kernels keep running), or Kaggle kept failing.
    """
    started = pace.clock()
    states: dict[str, kernels.KernelStatus] = {}
    pause, said_at, failures = pace.first_seconds, started, 0
    while True:
        changed = False
        for ref in [ref for ref in refs if ref not in states or states[ref].status not in FINISHED]:
            try:
                status = kernels.status_of(ref, name, push_command=push_command)
            except KaggleError as error:
                failures += 1
                if not error.transient or failures > MAX_RETRIES:
                    raise
                logger.info("watch: %s; retrying", error)
                break
            failures = 0
            if ref not in states or states[ref].status != status.status:
                logger.info("%s: %s (%s)", ref, status.status, _duration(pace.clock() - started))
                changed = True
            states[ref] = status
        now = pace.clock()
        if len(states) == len(refs) and all(state.status in FINISHED for state in states.values()):
            return {ref: states[ref] for ref in refs}
        if changed:
            pause, said_at = pace.first_seconds, now
        elif now - said_at >= pace.heartbeat_seconds:
            kinds = sorted({state.status for state in states.values()})
            counts = [f"{sum(state.status == kind for state in states.values())} {kind}" for kind in kinds]
            logger.info("waiting %s: %s", _duration(now - started),
                        ", ".join(counts) if len(refs) > 1 else f"still {', '.join(kinds) or 'unknown'}")
            said_at = now
        if now - started >= timeout:
            unfinished = [ref for ref in refs if ref not in states or states[ref].status not in FINISHED]
            again = again or f"make watch KERNEL={name}"
            raise KitError(f"{', '.join(unfinished)} not finished after {_duration(timeout)}; Kaggle keeps running "
                           f"it: watch again with `{again}`, or allow longer with --timeout.")
        pace.sleep(max(0.0, min(pause, started + timeout - now, said_at + pace.heartbeat_seconds - now)))
        pause = min(pause * 2, pace.most_seconds)


def failure_text(status: kernels.KernelStatus, name: str) -> str:
    """Says why a kernel's run did not complete, with its log's last lines before it (one line each)."""
    try:
        tail = kernels.log_tail(status.ref, name)
    except KitError as error:
        tail = [f"(its log could not be read: {error})"]
    for line in tail:
        logger.info("  | %s", line)
    reason = status.failure_message or ("it was cancelled" if status.status.startswith("cancel") else status.status)
    return (f"Kaggle's run of {status.ref} ended in {status.status}: {reason}; fix what the log says (all of it: "
            f"`kaggle kernels logs {status.ref}`), then push again.")


@dataclass(frozen=True)
class WatchResult:
    """A watched kernel that completed.

    Attributes:
        ref: its `<owner>/<slug>`.
        output: the folder its output was downloaded into.
        submission: its `submission.csv`, when valid; None otherwise.
        rows: that file's rows.
        submitted: what `competition.submit` answered, when asked to submit.
    """

    ref: str
    output: Path
    submission: Path | None
    rows: int | None
    submitted: competition.SubmitResult | None


def watch(kernel: str | os.PathLike, *, message: str | None = None, allow_leak: bool = False,
          timeout: float = DEFAULT_TIMEOUT_SECONDS, pace: Pace = Pace(), out_dir: Path | None = None) -> WatchResult:
    """Waits for a pushed kernel's latest run, downloads its output, checks its submission and may submit it.

    Args:
        kernel: the kernel's folder or name.
        message: submit the output's `submission.csv` with this description; None submits nothing.
        allow_leak: submit it even when its run trained on test images.
        timeout: seconds to wait at most.
        pace: the pauses and lines (`Pace`).
        out_dir: the downloads' parent folder; default `paths.KERNEL_OUTPUTS_DIR`.

    Raises:
        KitError: the run failed (with its log's last lines shown), the wait timed out, the submission is missing
            or invalid while one was to be submitted, or Kaggle refused a call.
    """
    folder = metadata.kernel_dir(kernel)
    name = folder.resolve().name
    ref = kernels.kernel_ref(folder)
    status = wait_for([ref], name, timeout=timeout, pace=pace)[ref]
    if status.status != "complete":
        raise KitError(failure_text(status, name))
    output = kernels.download_output_of(ref, Path(out_dir or paths.KERNEL_OUTPUTS_DIR) / name, name)
    candidate, rows = output / paths.KAGGLE_SUBMISSION_NAME, None
    try:
        rows = submission.validate_submission(candidate)
    except KitError as error:
        if message is not None:
            raise KitError(f"Nothing submitted: the output of {ref} has no valid submission ({error})") from None
        logger.warning("warning: %s", error)
    submitted = competition.submit(candidate, message, allow_leak=allow_leak) if message is not None else None
    return WatchResult(ref=ref, output=output, submission=candidate if rows is not None else None, rows=rows,
                       submitted=submitted)
