"""The frontier's curves: test accuracy against cumulative training seconds, for models, ensembles and references.

`bench_frontier.py` builds one `Curve` per line of its table and picture: a model's from the `--test-curve`
history of its run record, an ensemble's from its models' saved test probabilities, a reference kernel's from the
`epoch N: Xs ... val_acc=A` lines it prints.
"""

import itertools
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

EPOCH_LINE = re.compile(r"^epoch (\d+): ([\d.]+)s.*val_acc=([\d.]+)")


@dataclass
class Curve:
    """Test accuracy against cumulative training seconds: one model's epochs, or an ensemble's models.

    Attributes:
        label: the line's name in the table and the picture.
        seconds: cumulative seconds at each point.
        accuracies: test accuracy at each point.
        spread: for a mean over models, the (lowest, highest) accuracy at each point; else empty.
        kind: "reference", "model" or "ensemble".
    """

    label: str
    seconds: list[float]
    accuracies: list[float]
    spread: list[tuple[float, float]] = field(default_factory=list)
    kind: str = "model"

    def time_to(self, threshold: float) -> float | None:
        """Returns the seconds at the first point at or above `threshold`; None when no point reaches it."""
        for seconds, accuracy in zip(self.seconds, self.accuracies):
            if accuracy >= threshold - 1e-9:
                return seconds
        return None

    def finished(self) -> "Curve":
        """Returns the curve's last point alone: an ensemble recipe's result, all of its models averaged."""
        return Curve(self.label, self.seconds[-1:], self.accuracies[-1:], self.spread[-1:], self.kind)

    def best_within(self, limit_seconds: float) -> float | None:
        """Returns the highest accuracy among the points at most `limit_seconds` in; None when there are none."""
        inside = [accuracy for seconds, accuracy in zip(self.seconds, self.accuracies) if seconds <= limit_seconds]
        return max(inside) if inside else None


def model_curve(label: str, history: dict[str, list[float]]) -> Curve:
    """Returns one model's curve from a fold's history (`epoch_seconds`, `test_accuracy`, as `--test-curve` logs)."""
    return Curve(label, list(itertools.accumulate(history["epoch_seconds"])), list(history["test_accuracy"]))


def mean_curve(label: str, curves: list[Curve]) -> Curve:
    """Returns the epoch-by-epoch mean of several models' curves (seconds and accuracy), with their range."""
    length = min(len(curve.accuracies) for curve in curves)
    at = [[curve.accuracies[i] for curve in curves] for i in range(length)]
    return Curve(
        label,
        [statistics.mean(curve.seconds[i] for curve in curves) for i in range(length)],
        [statistics.mean(values) for values in at],
        [(min(values), max(values)) for values in at],
    )


def ensemble_curve(label: str, members, labels) -> Curve:
    """Returns an ensemble's curve: after each model, the accuracy of the mean of the models so far.

    Args:
        label: the line's name.
        members: `(seconds, test_probabilities (M, 10))` of each model, in training order.
        labels: the test labels `(M,)`.
    """
    import numpy as np  # here, not at the top: the reference kernels run before this process loads numpy

    seconds, accuracies, total = [], [], None
    for elapsed, (_, probabilities) in zip(itertools.accumulate(member[0] for member in members), members):
        total = probabilities if total is None else total + probabilities
        seconds.append(elapsed)
        accuracies.append(float(np.mean(np.argmax(total, axis=1) == labels)))
    return Curve(label, seconds, accuracies, kind="ensemble")


def parse_reference(output: str) -> tuple[list[float], list[float]]:
    """Returns a reference kernel's epoch seconds and accuracies from its `epoch N: Xs ... val_acc=A` lines."""
    epoch_seconds, accuracies = [], []
    for line in output.splitlines():
        match = EPOCH_LINE.match(line.strip())
        if match:
            epoch_seconds.append(float(match.group(2)))
            accuracies.append(float(match.group(3)))
    return epoch_seconds, accuracies


def reference_curve(name: str, log: Path) -> tuple[Curve, float]:
    """Returns a reference kernel's curve (its validation is MNIST's test split) and fastest epoch, from its log."""
    epoch_seconds, accuracies = parse_reference(log.read_text())
    if not epoch_seconds:
        raise SystemExit(f"error: {name} printed no `epoch N: Xs ... val_acc=A` line; see {log}.")
    return Curve(name, list(itertools.accumulate(epoch_seconds)), accuracies, kind="reference"), min(epoch_seconds)
