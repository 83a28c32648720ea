"""How the kit talks on a terminal: its own log lines, TensorFlow kept quiet, and every error as one line.

Only entry points call these (the kernels through `src.flags.parse_flags`, and `python -m src`): the library
itself only logs to `logging.getLogger(__name__)`.
"""

import importlib.abc
import importlib.machinery
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable

from src import filesystem
from src.errors import KitError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
# What Ctrl-C (or SIGTERM) leaves of a training run; other commands say what they keep (`run_main`'s `interrupted`).
TRAINING_INTERRUPTED = ("interrupted: finished folds and epochs are kept in the run's folder; run the same command "
                        "again to resume.")
_HANDLER_NAME = "digit-kit"


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hides TensorFlow's own log lines unless `verbose`; call it before TensorFlow loads.

    Its C++ start-up lines (oneDNN, CPU features, CUDA plugins on Kaggle's images) are filtered by
    `TF_CPP_MIN_LOG_LEVEL`, which TensorFlow reads once when it loads; the lines abseil prints before that (on CPUs
    where oneDNN is on by default) are dropped by loading `tensorflow` with stderr captured (`_QuietImport`), so
    every other line of its start-up still reaches the terminal. Its Python logger keeps errors only: what
    it warns of in a normal run is expected (a line per collective a strategy builds; "retracing" when each fold
    traces its new model's steps, once a fold), and absl's INFO lines (one per checkpoint save) are dropped.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    if not os.environ.get("TF_CPP_MIN_LOG_LEVEL"):  # a level the user set stays
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    logging.getLogger("absl").setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0" and "tensorflow" not in sys.modules and \
            not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


# What abseil prints before TensorFlow initialises its logging, which TF_CPP_MIN_LOG_LEVEL does not filter: on CPUs
# where oneDNN is on by default (AVX-512, AMX), "oneDNN custom operations are on" after a line saying so.
_START_UP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\]")


class _QuietImport(importlib.abc.MetaPathFinder):
    """Loads `tensorflow`, once, with the process's stderr captured, and prints back all but abseil's start-up lines."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self.loader.exec_module(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                    if not _START_UP_NOISE.match(line):
                        sys.stderr.write(line)
                sys.stderr.flush()


def configure_logging(stream=None) -> None:
    """Prints the kit's log lines (the `src` loggers) as plain messages, on stdout unless `stream` says otherwise.

    Only the kit's own logger is configured, so a notebook's logging stays as it was; calling it again moves the
    lines to the new stream.
    """
    logger = logging.getLogger("src")
    for handler in [handler for handler in logger.handlers if handler.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # The kit's lines are printed here once; a root handler (a notebook's) would print them again.
    logger.propagate = False


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Kaggle's time limit, a scheduler and `timeout` send), raised where Ctrl-C raises its own.

    A `KeyboardInterrupt`, so that it leaves a run by the very path Ctrl-C takes: every `with` and `finally`
    closes (locks released, temporaries removed, nothing half-written), and `atexit` handlers run.
    """


def _terminate(signum, frame):
    # A second SIGTERM ends the process at once, as a scheduler's follow-up SIGKILL would: a run survives that.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


def handle_termination() -> None:
    """Makes SIGTERM end the process as Ctrl-C does (`Terminated`), with exit status 143.

    Only the main thread can set a handler; a SIGTERM the parent made ignored stays ignored.
    """
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _terminate)


def interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """Returns the Ctrl-C or SIGTERM that `error` was raised while handling, if any.

    TensorFlow's tracing catches everything with a bare `except:` in places and raises a `TypeError` instead, so an
    interruption that lands while a step is traced arrives as that error, with the interruption as its context.
    """
    while error is not None and not isinstance(error, KeyboardInterrupt):
        error = error.__context__
    return error


def report(error: BaseException, interrupted: str = TRAINING_INTERRUPTED) -> int:
    """Prints the one line for a kit error or an interruption, and returns the exit status it calls for."""
    if isinstance(error, KeyboardInterrupt):
        print(interrupted, file=sys.stderr, flush=True)
        return EXIT_TERMINATED if isinstance(error, Terminated) else EXIT_INTERRUPTED
    print(f"error: {error}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def run_main(function: Callable[..., object], *args, interrupted: str = TRAINING_INTERRUPTED, **kwargs) -> int:
    """Runs a command, turning the kit's errors into one line and exit status 2, and Ctrl-C into one line and 130
    (SIGTERM: the same line, and 143).

    On a platform the kit does not run on (`filesystem.check_platform`) it fails at once, in one line.

    Args:
        function: the command; its int result is the exit status (anything else means 0).
        interrupted: what Ctrl-C prints: what the command keeps and how to go on.

    Returns:
        The process exit status.
    """
    handle_termination()
    try:
        filesystem.check_platform()
        result = function(*args, **kwargs)
    except (KitError, KeyboardInterrupt) as error:
        return report(error, interrupted)
    except Exception as error:
        if (interrupt := interrupt_behind(error)) is None:
            raise
        return report(interrupt, interrupted)
    return result if isinstance(result, int) else 0


def install_error_hook() -> None:
    """Makes a script's uncaught kit error one line and exit status 2, Ctrl-C one line and 130, and SIGTERM the
    same line and 143 (`handle_termination`).

    A kernel is a script that runs top to bottom, with no `main()` to wrap; Python hands what escapes it to
    `sys.excepthook`. Other exceptions keep their traceback: they are bugs to report.

    Raises:
        KitError: the platform is one the kit does not run on (`filesystem.check_platform`); the hook, installed
            first, prints it as one line.
    """
    previous = sys.excepthook

    def hook(kind, error, traceback):
        if issubclass(kind, KitError):
            sys.exit(report(error))
        if (interrupt := interrupt_behind(error)) is not None:
            sys.exit(report(interrupt))
        previous(kind, error, traceback)

    sys.excepthook = hook
    handle_termination()
    filesystem.check_platform()
