"""Tests of src.flags: every kernel's flags, their defaults and budgets, and what parse_flags decides."""

import ast

import pytest

from conftest import kernel_script, run_process
from src import flags, machine, paths, runs
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
        (["--model", "resnet"], "choose one of seed_cnn, tfwiki_cnn, mlp, strong_cnn, fast_cnn, strong_cnn_affine. "
                                "Received: model="),
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


def test_parse_flags_auto_picks_the_cpu_budget_the_kernel_names(monkeypatch):
    budgets = {"cpu": dict(epochs=30), "quick": dict(epochs=12), "gpu": dict(epochs=45)}
    monkeypatch.setattr(machine, "gpu_present", lambda: False)
    chosen = flags.parse_flags("k", argv=[], budgets=budgets, cpu_budget="quick")
    assert (chosen.budget, chosen.epochs) == ("quick", 12)
    assert flags.parse_flags("k", argv=["--budget", "cpu"], budgets=budgets, cpu_budget="quick").epochs == 30
    monkeypatch.setattr(machine, "gpu_present", lambda: True)
    assert flags.parse_flags("k", argv=[], budgets=budgets, cpu_budget="quick").budget == "gpu"


def test_parse_flags_rejects_a_cpu_budget_it_does_not_have():
    with pytest.raises(KitError, match="Received: cpu_budget='fast'"):
        flags.parse_flags("k", argv=[], budgets={"cpu": dict(epochs=30)}, cpu_budget="fast")


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


def kernel_parse_flags_call(kernel: str) -> tuple[dict, dict]:
    """Returns `(BUDGETS, the keyword defaults)` a kernel passes to `parse_flags`, read from its source (not run).

    The kernel's module-level `BUDGETS = {...}` holds `dict(...)` calls of literals; the keywords of its
    `kernel_flags.parse_flags(...)` call are literals too, except `budgets=BUDGETS`.
    """
    def value(node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            return {keyword.arg: ast.literal_eval(keyword.value) for keyword in node.keywords}
        if isinstance(node, ast.Dict):
            return {ast.literal_eval(key): value(item) for key, item in zip(node.keys, node.values)}
        return ast.literal_eval(node)

    tree = ast.parse(kernel_script(kernel).read_text())
    [budgets] = [value(node.value) for node in tree.body if isinstance(node, ast.Assign)
                 and [getattr(target, "id", None) for target in node.targets] == ["BUDGETS"]]
    [call] = [node.value for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
              and getattr(node.value.func, "attr", None) == "parse_flags"]
    defaults = {keyword.arg: value(keyword.value) for keyword in call.keywords if keyword.arg != "budgets"}
    assert [keyword.value.id for keyword in call.keywords if keyword.arg == "budgets"] == ["BUDGETS"]
    return budgets, defaults


@pytest.mark.parametrize("budget, gpu, chosen, expected", [
    # What README.md's --budget row and the kernel's docstring promise: cpu 4 folds x 30 epochs x 1 seed,
    # gpu 5 x 45 x 3 seeds; auto is gpu where a GPU is present, else quick.
    ("cpu", True, "cpu", (4, 30, 1)),
    ("gpu", False, "gpu", (5, 45, 3)),
    ("auto", False, "quick", None),  # quick's folds, epochs and seeds: the README test below checks them
    ("auto", True, "gpu", (5, 45, 3)),
])
def test_mnist_ensemble_budgets_give_what_the_readme_promises(monkeypatch, budget, gpu, chosen, expected):
    budgets, defaults = kernel_parse_flags_call("mnist-ensemble")
    monkeypatch.setattr(machine, "gpu_present", lambda: gpu)

    parsed = flags.parse_flags("mnist-ensemble", argv=["--budget", budget], budgets=budgets, **defaults)

    expected = expected or tuple(budgets[chosen][key] for key in ("folds", "epochs", "seeds"))
    assert (parsed.folds, parsed.epochs, parsed.seeds) == expected
    assert parsed.budget == chosen
    assert (parsed.model, parsed.optimizer, parsed.schedule, parsed.batch_size) == (
        ("strong_cnn_affine", "adam", "warmup_cosine", 64) if chosen == "quick"
        else ("strong_cnn", "adam", "exponential", 64))
    # An explicit flag still wins over the budget.
    assert flags.parse_flags("mnist-ensemble", argv=["--budget", budget, "--folds", "2"], budgets=budgets,
                             **defaults).folds == 2


def test_mnist_ensemble_budgets_are_the_ones_readme_and_docstring_state():
    budgets, _ = kernel_parse_flags_call("mnist-ensemble")
    readme = (paths.REPO_ROOT / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith("| `--budget NAME`")]
    cpu, quick, gpu = budgets["cpu"], budgets["quick"], budgets["gpu"]
    assert f"`cpu` ({cpu['folds']} folds x {cpu['epochs']} epochs)" in row and cpu["seeds"] == 1
    assert f"`quick` ({quick['folds']} x {quick['epochs']}," in row and quick["seeds"] == 1
    assert f"`gpu` ({gpu['folds']} x {gpu['epochs']} x {gpu['seeds']} seeds)" in row
    assert "`auto` picks `gpu` where one is present, else `quick`" in row
    docstring = ast.get_docstring(ast.parse(kernel_script("mnist-ensemble").read_text()))
    assert f"cpu: {cpu['folds']} folds x {cpu['epochs']} epochs x {cpu['seeds']} seed" in docstring
    assert f"quick: {quick['folds']} folds x {quick['epochs']} epochs x {quick['seeds']} seed" in docstring
    assert f"gpu: {gpu['folds']} folds x {gpu['epochs']} epochs x {gpu['seeds']} seeds" in docstring
    assert "default auto: gpu when a GPU is present, else quick" in docstring
