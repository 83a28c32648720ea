"""Tests of benchmarks/frontier_curves.py: a model's, a mean's, an ensemble's and a reference kernel's curve."""

import sys

import numpy as np
import pytest

from src import paths

sys.path.insert(0, str(paths.REPO_ROOT / "benchmarks"))
import frontier_curves as curves  # noqa: E402


REFERENCE_OUTPUT = """\
noise
epoch 1: 120.5s val_acc=0.9775
epoch 2: 100.0s 450 img/s val_acc=0.9850
epoch_seconds_min=100.0
"""


def test_curve_time_to_is_the_first_point_at_or_above_the_threshold():
    curve = curves.Curve("c", [10.0, 20.0, 30.0], [0.990, 0.996, 0.995])
    assert curve.time_to(0.996) == 20.0
    assert curve.time_to(0.990) == 10.0
    assert curve.time_to(0.997) is None


def test_curve_best_within_looks_only_at_points_inside_the_limit():
    curve = curves.Curve("c", [10.0, 20.0, 30.0], [0.990, 0.995, 0.998])
    assert curve.best_within(25.0) == 0.995
    assert curve.best_within(5.0) is None


def test_model_curve_accumulates_epoch_seconds():
    curve = curves.model_curve("m", {"epoch_seconds": [5.0, 4.0, 6.0], "test_accuracy": [0.9, 0.95, 0.97]})
    assert curve.seconds == [5.0, 9.0, 15.0]
    assert curve.accuracies == [0.9, 0.95, 0.97]


def test_mean_curve_averages_epochs_and_keeps_the_range():
    first = curves.Curve("a", [10.0, 20.0, 30.0], [0.90, 0.94, 0.96])
    second = curves.Curve("b", [12.0, 22.0], [0.92, 0.98])
    mean = curves.mean_curve("mean", [first, second])
    assert mean.seconds == pytest.approx([11.0, 21.0])  # as long as the shortest
    assert mean.accuracies == pytest.approx([0.91, 0.96])
    assert mean.spread == [(0.90, 0.92), (0.94, 0.98)]


def test_ensemble_curve_averages_the_models_so_far():
    labels = np.array([0, 1, 2, 3])
    right = np.eye(4, 10)
    wrong_last = np.eye(4, 10)[[0, 1, 2, 2]] * 0.6
    wrong_two = np.eye(4, 10)[[0, 0, 0, 3]] * 0.9
    curve = curves.ensemble_curve("e", [(10.0, wrong_last), (20.0, right), (5.0, wrong_two)], labels)
    assert curve.seconds == [10.0, 30.0, 35.0]
    # 3/4 alone; with the right model 4/4 (1.0 beats 0.6); the third outvotes on rows 1 and 2: 0.9+0 vs 1.0.
    assert curve.accuracies == [0.75, 1.0, 1.0]
    assert curve.kind == "ensemble"


def test_parse_reference_reads_seconds_and_accuracy_of_both_kernels_lines():
    assert curves.parse_reference(REFERENCE_OUTPUT) == ([120.5, 100.0], [0.9775, 0.985])
    assert curves.parse_reference("nothing") == ([], [])


def test_reference_curve_accumulates_seconds_and_returns_the_fastest_epoch(tmp_path):
    log = tmp_path / "reference.log"
    log.write_text(REFERENCE_OUTPUT)
    curve, fastest = curves.reference_curve("ref", log)
    assert (curve.seconds, curve.accuracies, curve.kind) == ([120.5, 220.5], [0.9775, 0.985], "reference")
    assert fastest == 100.0
    log.write_text("Traceback: out of memory\n")
    with pytest.raises(SystemExit, match="ref printed no `epoch N: Xs ... val_acc=A` line; see .*reference.log"):
        curves.reference_curve("ref", log)
