"""Tests of benchmarks/bench_frontier.py: times to accuracy, the targets' verdicts, and one small run."""

import importlib.util
import json
import sys
import textwrap

import pytest

from src import paths

sys.path.insert(0, str(paths.REPO_ROOT / "benchmarks"))  # bench_frontier imports bench, its neighbour
spec = importlib.util.spec_from_file_location("bench_frontier", paths.REPO_ROOT / "benchmarks" / "bench_frontier.py")
frontier = importlib.util.module_from_spec(spec)
spec.loader.exec_module(frontier)
from frontier_curves import Curve  # noqa: E402  benchmarks/frontier_curves.py, on the path above

UNITS = {"recipe": 100.0, "seed": 1200.0}


def test_verdict_of_a_time_target_is_the_fastest_curve_that_reaches_it():
    target = frontier.Target("t", "model", "recipe", 0.996, 8.0)
    slow = Curve("slow: one model", [500.0, 1000.0], [0.995, 0.997])
    fast = Curve("fast: one model", [300.0, 700.0], [0.994, 0.996])
    assert frontier.verdict(target, [slow, fast], UNITS) == ("7.0 recipe epochs (fast: one model)", True)
    assert frontier.verdict(target, [slow], UNITS) == ("10.0 recipe epochs (slow: one model)", False)


def test_verdict_says_how_far_a_missed_target_is_and_what_was_not_measured():
    target = frontier.Target("t", "ensemble", "recipe", 0.997, 30.0)
    short = Curve("e: ensemble", [1000.0, 2000.0], [0.9960, 0.9968], kind="ensemble")
    expected = "not reached: best 99.68% (e: ensemble, in 20.0 recipe epochs)"
    assert frontier.verdict(target, [short], UNITS) == (expected, False)
    only_models = [Curve("m: one model", [1.0], [0.999])]
    assert frontier.verdict(target, only_models, UNITS) == ("not measured in this run", None)


def test_verdict_of_best_within_takes_the_best_finished_ensemble_inside_the_limit():
    target = frontier.Target("t", "ensemble", "recipe", 130.0, 0.9975, best_within=True)
    inside = Curve("e: ensemble", [5000.0, 12000.0], [0.9978, 0.9976], kind="ensemble")
    beyond = Curve("f: ensemble", [5000.0, 14000.0], [0.9970, 0.9990], kind="ensemble")
    assert frontier.verdict(target, [inside, beyond], UNITS) == (
        "99.76% (e: ensemble, finished in 120.0 recipe epochs)", True)
    slower = Curve("g: ensemble", [5000.0, 12500.0], [0.9970, 0.9976], kind="ensemble")
    assert frontier.verdict(target, [slower, inside], UNITS)[0].startswith("99.76% (e: ensemble")  # the quicker
    assert frontier.verdict(target, [beyond], UNITS) == ("no ensemble finished within 130 recipe epochs", False)


def test_verdict_of_an_ensemble_time_target_waits_for_all_its_models():
    target = frontier.Target("t", "ensemble", "recipe", 0.997, 30.0)
    curve = Curve("e: ensemble", [1000.0, 2000.0, 2500.0], [0.9960, 0.9975, 0.9971], kind="ensemble")
    assert frontier.verdict(target, [curve], UNITS) == ("25.0 recipe epochs (e: ensemble)", True)
    dipped = Curve("e: ensemble", [1000.0, 2000.0], [0.9975, 0.9968], kind="ensemble")
    assert frontier.verdict(target, [dipped], UNITS) == (
        "not reached: best 99.68% (e: ensemble, in 20.0 recipe epochs)", False)


def test_verdict_of_the_seed_share_target_looks_only_at_its_recipes():
    target = frontier.Target("t", "model", "seed", 0.992, 0.035, recipes=("mnist-fast",))
    fast = Curve("mnist-fast: one model", [30.0, 60.0], [0.990, 0.9925])
    other = Curve("quick: one model", [10.0], [0.999])
    assert frontier.verdict(target, [fast, other], UNITS) == ("0.050 (mnist-fast: one model)", False)


def test_time_to_table_has_a_cell_per_threshold_reached():
    lines = frontier.time_to_table([Curve("c", [100.0, 250.0], [0.991, 0.996])], 100.0)
    assert lines[0].startswith("| curve | final | 99% | 99.2% |")
    assert lines[2] == "| c | 99.60% at 250 s = 2.5 | 100 s = 1.0 | 250 s = 2.5 | 250 s = 2.5 | 250 s = 2.5 |  |  |"


def test_chosen_recipes_default_skips_the_long_ones_and_only_picks_by_name():
    default = [recipe.name for recipe in frontier.chosen_recipes([], every=False)]
    assert default and all(not recipe.long for recipe in frontier.RECIPES if recipe.name in default)
    assert len(frontier.chosen_recipes([], every=True)) == len(frontier.RECIPES)
    assert [recipe.name for recipe in frontier.chosen_recipes(["cpu"], every=False)] == ["cpu"]
    with pytest.raises(SystemExit, match="unknown recipe 'fastest' for --only; choose among mnist-fast"):
        frontier.chosen_recipes(["fastest"], every=False)


def test_every_recipe_names_a_kernel_and_a_budget_it_has():
    for recipe in frontier.RECIPES:
        kernel = paths.REPO_ROOT / "kernels" / recipe.kernel / "kernel.py"
        assert kernel.is_file(), recipe
        if "--budget" in recipe.flags:
            budget = recipe.flags[recipe.flags.index("--budget") + 1]
            assert f'"{budget}": dict(' in kernel.read_text(), recipe


FAKE_REFERENCE = textwrap.dedent("""\
    import sys
    for epoch in range(int(sys.argv[2])):
        print(f"epoch {epoch + 1}: {2.0 - epoch * 0.5:.1f}s 1000 img/s val_acc={0.95 + epoch / 100:.4f}")
""")


@pytest.mark.slow
def test_bench_frontier_writes_the_report_and_picture_from_one_small_run(tmp_path, npz_path):
    # Reference kernels that print what the real ones print, in a moment; a recipe of one epoch per seed.
    for name in ("recipe_kernel.py", "seed_kernel.py"):
        (tmp_path / name).write_text(FAKE_REFERENCE)
    results, picture = tmp_path / "frontier.md", tmp_path / "frontier.png"
    status = frontier.main(["--data", str(npz_path), "--out", str(tmp_path / "out"), "--only", "mnist-fast",
                            "--reference-dir", str(tmp_path), "--results", str(results), "--picture", str(picture),
                            "--epochs", "1"])
    assert status == 0
    text = results.read_text()
    assert "One recipe epoch = 1.5 s" in text and "12 x 1.5 s = 18 s" in text
    # The recipe kernel ran again after the recipes; its epoch is reported beside the unit, which stays the first.
    assert len(list((tmp_path / "out").glob("*/logs/recipe-kernel-again-reference.log"))) == 1
    assert "Measured again after the recipes, the recipe epoch was 1.5 s (+0%): the times here use the first." in text
    assert "| time to 99.2%, as a share of the seed kernel's 12 epochs | <= 0.035 |" in text
    assert "| one model at >= 99.60% test accuracy (mean of its seeds or folds) | <= 8 | not measured" in text
    assert "| mnist-fast: one model (mean of 3 seeds) |" in text
    assert picture.stat().st_size > 10_000
    records = sorted((tmp_path / "out").glob("*/mnist-fast-seed-*/mnist-fast-*.json"))
    assert len(records) == 3
    history = json.loads(records[0].read_text())["folds"][0]["history"]
    assert len(history["test_accuracy"]) == len(history["epoch_seconds"]) == 1
    # --from writes the same report again from the run's folder, training nothing.
    [run_dir] = (tmp_path / "out").iterdir()
    again = tmp_path / "again.md"
    assert frontier.main(["--data", str(npz_path), "--from", str(run_dir), "--only", "mnist-fast", "--results",
                          str(again), "--picture", str(tmp_path / "again.png")]) == 0
    tables = [path.read_text().split("One recipe epoch", 1)[1].split("Run folder")[0] for path in (results, again)]
    assert tables[0] == tables[1]
    assert "written again from it with `--from`" in again.read_text()
    # Its header keeps the run's own provenance (how long it trained), then the rewrite's.
    run_header, rewrite = again.read_text().split("Written again with `--from`:", 1)
    assert results.read_text().split("\n\n")[1] in run_header and "- date:" in rewrite
