"""What a search asks of the training runs it starts as its trials (`make tune`, `src.tune`): see `trial`.

A trial is a normal run of a kernel (its flags, data, folds and seeds), with two differences that only a search
sets, for as long as its `with trial_hooks.trial(on_epoch):` lasts:

- the run never sees the test split's labels (`visible_dataset`): no test accuracy can be computed, so a search
  picks its settings on cross-validation alone; the test images are still predicted, as a run predicts them;
- after every epoch of every fold, once the epoch is saved, `on_epoch(fold, epoch, logs)` is called
  (`epoch_listener`, through `fitting.FitPlan.epoch_listener`): a search reports the held-out accuracy to its
  pruner there, and an exception it raises (Optuna's `TrialPruned`) stops the run as Ctrl-C would.

Outside a trial both are no-ops: `visible_dataset` returns the data as it is, `epoch_listener` None.
"""

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator

# `on_epoch(fold, epoch, logs)`: the `training.Fold`, the epoch (0-based) and its metrics (`val_accuracy`, ...).
EpochListener = Callable[[object, int, dict[str, float]], None]

_active: list[EpochListener] = []


@contextlib.contextmanager
def trial(on_epoch: EpochListener) -> Iterator[None]:
    """Makes the runs started inside it trials of a search (see the module's docstring).

    Args:
        on_epoch: called after every saved epoch of every fold with `(fold, epoch, logs)`.
    """
    _active.append(on_epoch)
    try:
        yield
    finally:
        _active.remove(on_epoch)


def in_trial() -> bool:
    """Returns whether a run started now would be a search's trial."""
    return bool(_active)


def visible_dataset(dataset):
    """Returns the data a run may use: in a trial, `dataset` without its test labels; else `dataset` itself."""
    if _active and dataset.y_test is not None:
        return dataclasses.replace(dataset, y_test=None)
    return dataset


def epoch_listener(fold) -> Callable[[int, dict[str, float]], None] | None:
    """Returns what a fold's fit calls after each saved epoch with `(epoch, logs)`: in a trial, the search's
    listener bound to `fold`; else None."""
    return functools.partial(_active[-1], fold) if _active else None
