"""Tests of src.flags: every kernel's flags, their defaults and budgets, and what parse_flags decides."""

import pytest

from conftest import run_process
from src import flags, machine, runs
from src.config import RunConfig
from src.errors import KitError


def test_parse_flags_applies_kernel_defaults_and_flags():
    parsed = flags.parse_flags("k", argv=["--epochs", "3", "--learning-rate", "0.5", "--folds", "1"], folds=5)
    assert (parsed.epochs, parsed.learning_rate, parsed.folds, parsed.batch_size) == (3, 0.5, 1, 128)
    assert flags.parse_flags("k", argv=[], folds=5, epochs=7).folds == 5
    assert flags.parse_flags("k", argv=[], epochs=7).epochs == 7


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "Received: epochs=0"),
        (["--batch-size", "-1"], "Received: batch_size=-1"),
        (["--folds", "0"], "Received: folds=0"),
        (["--learning-rate", "-0.1"], "Received: learning_rate=-0.1"),
        (["--model", "resnet"], "choose one of seed_cnn, tfwiki_cnn, mlp, strong_cnn, fast_cnn. Received: model="),
        (["--optimizer", "sgdx"], "choose one of adadelta, adam, rmsprop"),
        (["--epochs", "two"], "invalid int value: 'two'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--mod", "mlp"], "unrecognized arguments: --mod"),
    ],
)
def test_parse_flags_rejects_bad_flags(argv, message):
    with pytest.raises(KitError, match=message):
        flags.parse_flags("k", argv=argv)


def test_parse_flags_learning_rate_default_goes_with_the_kernels_optimizer():
    # mnist-cnn's 1.0 is Adadelta's; another optimizer takes its own default unless a rate is given.
    defaults = dict(optimizer="adadelta", learning_rate=1.0)
    assert flags.parse_flags("k", argv=[], **defaults).effective_learning_rate == 1.0
    assert flags.parse_flags("k", argv=["--optimizer", "adam"], **defaults).effective_learning_rate == 1e-3
    chosen = flags.parse_flags("k", argv=["--optimizer", "adam", "--learning-rate", "0.01"], **defaults)
    assert chosen.effective_learning_rate == 0.01


def test_parse_flags_applies_a_budget_and_explicit_flags_win(monkeypatch):
    budgets = {"cpu": dict(folds=3, epochs=15), "gpu": dict(folds=5, epochs=45, seeds=3)}
    monkeypatch.setattr(machine, "gpu_present", lambda: False)
    auto = flags.parse_flags("k", argv=[], budgets=budgets, model="strong_cnn")
    assert (auto.budget, auto.folds, auto.epochs, auto.seeds, auto.model) == ("cpu", 3, 15, 1, "strong_cnn")
    gpu = flags.parse_flags("k", argv=["--budget", "gpu", "--epochs", "2"], budgets=budgets)
    assert (gpu.budget, gpu.folds, gpu.epochs, gpu.seeds) == ("gpu", 5, 2, 3)
    monkeypatch.setattr(machine, "gpu_present", lambda: True)
    assert flags.parse_flags("k", argv=[], budgets=budgets).budget == "gpu"


def test_parse_flags_restore_takes_the_model_of_the_restored_run(tmp_path):
    run = runs.start_run("t", tmp_path, identity=runs.run_identity(RunConfig(kernel="t", model="mlp"), "0" * 64))
    runs.mark_finished(run)
    restored = flags.parse_flags("k", argv=["--restore", str(run.workdir / "fold-0")], model="seed_cnn")
    assert restored.model == "mlp"
    chosen = flags.parse_flags("k", argv=["--restore", str(run.workdir), "--model", "tfwiki_cnn"], model="seed_cnn")
    assert chosen.model == "tfwiki_cnn"
    elsewhere = flags.parse_flags("k", argv=["--restore", str(tmp_path / "model.keras")], model="seed_cnn")
    assert elsewhere.model == "seed_cnn"


def test_kernel_help_and_bad_flags_do_not_import_tensorflow():
    code = ("import sys; from src import flags\n"
            "try:\n    flags.parse_flags('k', argv=['--epochs', '0'])\nexcept ValueError:\n    pass\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = run_process(["-c", code])
    assert result.stdout.strip() == "False False", result.stderr
