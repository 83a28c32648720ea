"""Tests of benchmarks/bench_recipe.py: the budget it trains by default and the file its table goes to."""

import importlib.util
import sys

from src import paths

sys.path.insert(0, str(paths.REPO_ROOT / "benchmarks"))  # bench_recipe.py imports bench, its neighbour
spec = importlib.util.spec_from_file_location("bench_recipe", paths.REPO_ROOT / "benchmarks" / "bench_recipe.py")
bench_recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_recipe)


def fake_record(tmp_path, name: str, test_accuracy: float, arguments: list[str]) -> dict:
    """A run record as the kernel writes one, for a 2-fold run of the budget `arguments` name."""
    budget = arguments[arguments.index("--budget") + 1]
    return {
        "path": tmp_path / f"mnist-ensemble-{name}.json", "test_accuracy": test_accuracy, "wall_seconds": 90.0,
        "folds": [{"test_accuracy": 0.9950}, {"test_accuracy": 0.9960}],
        "config": {"model": f"model_of_{budget}", "folds": 2, "epochs": 3, "seeds": 1, "batch_size": 64},
        "data": {"train_rows": 600, "test_rows": 100}, "cv_mean": 0.9940, "cv_std": 0.0010,
        "oof_accuracy": 0.9941, "git_commit": "0" * 40, "git_dirty": False,
    }


def test_main_trains_the_kernels_cpu_default_and_writes_its_own_results_file(monkeypatch, tmp_path):
    calls = []

    def run_kernel(arguments, out):
        calls.append(arguments)
        return fake_record(tmp_path, str(len(calls)), 0.9970 if len(calls) == 1 else 0.9975, arguments)

    monkeypatch.setattr(bench_recipe, "run_kernel", run_kernel)
    monkeypatch.setattr(bench_recipe, "REPO", tmp_path)
    (tmp_path / "benchmarks").mkdir()

    assert bench_recipe.main(["--data", "mnist.npz", "--out", str(tmp_path / "runs"), "--tta", "4"]) == 0

    assert [call[call.index("--budget") + 1] for call in calls] == ["quick", "quick"]
    assert "--restore" in calls[1] and calls[1][calls[1].index("--tta") + 1] == "4"
    text = (tmp_path / "benchmarks" / "recipe-results-quick.md").read_text()
    assert "Recipe: --budget quick (2 folds x 3 epochs x 1 seeds, batch 64)" in text
    assert "| single model_of_quick (mean of folds) | 99.55% | 99.55% |" in text
    assert "| ensemble (2 folds x 1 seeds) | 99.70% | 99.70% |" in text
    assert "| ensemble + TTA x4 | 99.75% |  |" in text
    assert "Cross-validation on the training split: 99.40% ± 0.10" in text


def test_main_writes_another_budget_beside_it(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_recipe, "run_kernel",
                        lambda arguments, out: fake_record(tmp_path, "run", 0.9969, arguments))
    monkeypatch.setattr(bench_recipe, "REPO", tmp_path)
    (tmp_path / "benchmarks").mkdir()

    bench_recipe.main(["--data", "mnist.npz", "--budget", "cpu"])

    assert [path.name for path in (tmp_path / "benchmarks").iterdir()] == ["recipe-results-cpu.md"]
