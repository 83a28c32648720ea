"""Tests of src.config: RunConfig's checks and resolved values, and the role of every field."""

import dataclasses

import pytest

from src import config, machine
from src.config import RunConfig
from src.errors import KitError


def test_run_config_resolves_learning_rate_per_optimizer():
    assert RunConfig(kernel="k").effective_learning_rate == 1.0
    assert RunConfig(kernel="k", optimizer="rmsprop").effective_learning_rate == 1e-3
    assert RunConfig(kernel="k", optimizer="adam", learning_rate=0.01).to_dict()["learning_rate"] == 0.01


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "Received: epochs=0"),
    ("batch_size", -1, "Received: batch_size=-1"),
    ("folds", 51, "Received: folds=51"),
    ("seeds", 0, "Received: seeds=0"),
    ("tta", 101, "Received: tta=101"),
    ("learning_rate", -0.1, "Received: learning_rate=-0.1"),
    ("optimizer", "sgdx", "choose one of adadelta, adam, rmsprop. Received: optimizer='sgdx'"),
    ("schedule", "cyclic", "Received: schedule='cyclic'"),
    ("precision", "fp8", "choose one of float32, mixed_bfloat16, auto. Received: precision='fp8'"),
    ("strategy", "horovod", "Received: strategy='horovod'"),
    ("epochs", True, "Received: epochs=True"),
])
def test_run_config_rejects_bad_values_naming_them(field, value, message):
    with pytest.raises(KitError, match=message):
        RunConfig(kernel="k", **{field: value})


def test_run_config_test_curve_needs_the_fit_loop():
    assert RunConfig(kernel="k", test_curve=True).test_curve
    with pytest.raises(KitError, match="--test-curve measures each epoch with --loop fit; drop one. Received: "
                                       "loop='custom'"):
        RunConfig(kernel="k", test_curve=True, loop="custom")


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, True, "0.9"])
def test_run_config_pseudo_label_is_a_confidence_below_one(value):
    with pytest.raises(KitError, match=rf"a number in \[0, 1\) such as 0.99. Received: pseudo_label={value!r}"):
        RunConfig(kernel="k", pseudo_label=value)


def test_run_config_pseudo_label_needs_the_fit_loop_and_two_epochs():
    assert RunConfig(kernel="k", pseudo_label=0.0).pseudo_label == 0.0
    with pytest.raises(KitError, match="--pseudo-label trains with --loop fit; drop one. Received: loop='custom'"):
        RunConfig(kernel="k", pseudo_label=0.99, loop="custom")
    with pytest.raises(KitError, match="needs 2 epochs or more. Received: epochs=1"):
        RunConfig(kernel="k", pseudo_label=0.99, epochs=1)


def test_run_config_fold_index_needs_k_folds_and_stays_inside_them():
    assert RunConfig(kernel="k", folds=3, fold_index=2).fold_index == 2
    with pytest.raises(KitError, match="fold_index needs folds of 2 or more"):
        RunConfig(kernel="k", folds=1, fold_index=0)
    with pytest.raises(KitError, match="Received: fold_index=3"):
        RunConfig(kernel="k", folds=3, fold_index=3)


def test_run_config_refuses_model_fit_under_multiworker():
    with pytest.raises(KitError, match="add --loop custom"):
        RunConfig(kernel="k", strategy="multiworker", loop="fit")
    assert RunConfig(kernel="k", strategy="multiworker", loop="custom").loop == "custom"


def test_run_config_resolves_auto_precision_for_this_cpu(monkeypatch):
    assert RunConfig(kernel="k").effective_precision == "float32"
    assert RunConfig(kernel="k", precision="mixed_bfloat16").to_dict()["precision"] == "mixed_bfloat16"
    for native, expected in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(machine, "cpu_computes_bfloat16", lambda native=native: native)
        run_config = RunConfig(kernel="k", precision="auto")
        assert run_config.effective_precision == expected and run_config.to_dict()["precision"] == expected


def test_every_field_has_a_role():
    for item in dataclasses.fields(RunConfig):
        assert item.metadata.get("role") in config.ROLES, item.name


def test_field_names_are_the_roles_of_the_fields():
    # Stated here on their own, as the kit has always treated them: what a run computes is its identity (resume),
    # make runs shows what differs, and fold kernels must agree on what they compute (not on where they wrote).
    # --test-curve only adds what a report reads: it is where-and-how, like --quiet.
    assert set(config.field_names("identity", False)) == {"data", "out", "quiet", "verbose", "plots", "restore",
                                                          "restart", "budget", "test_curve"}
    assert set(config.field_names("shown", False)) == {"kernel", "model", "folds", "data", "out", "quiet",
                                                       "verbose", "plots", "restart", "test_curve"}
    assert set(config.field_names("compared", False)) == {"data", "out", "quiet", "verbose", "plots", "restart",
                                                          "fold_index", "test_curve"}
    every = {item.name for item in dataclasses.fields(RunConfig)}
    assert set(config.field_names("identity")) == every - set(config.field_names("identity", False))
