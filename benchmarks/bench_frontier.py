"""bench-frontier: each recipe's test accuracy against its training time, in recipe epochs, and the issue's targets.

One run measures the units first: the reference recipe kernel (`../shared/reference/recipe_kernel.py`, one CNN of
the published leaderboard recipe, frozen, 45,000 images, float32), whose fastest epoch is one **recipe epoch**, and
the seed kernel, whose fastest epoch times 12 is the unit of the 99.2% row. Then it trains each recipe of `RECIPES`
as a user would (the kernel, its flags, `--quiet --test-curve`) on the training split, and reads from its run record
every model's test accuracy after every epoch (for this report only: nothing is chosen on it) and the seconds each
epoch took (training and its held-out validation; the test measurement is not timed). An ensemble's curve has one
point per model: the mean of the first k models' test probabilities, at the time those k models took; the ensemble
targets count only its last point, the finished recipe's. Last, the recipe kernel runs again: the report states how
far its epoch moved during the run (a VM's speed drifts over an hour), and keeps the first as the unit.

Writes `benchmarks/frontier.md` (the time to each accuracy, each target met or missed with its figure) and
`benchmarks/frontier.png` (test accuracy against recipe epochs, log scale, one line per recipe and reference).

    make bench-frontier                               # the default recipes on ../shared/data/mnist.npz
    make bench-frontier ARGS="--only mnist-fast"      # one recipe (the units are measured every run)
    make bench-frontier ARGS="--all"                  # also the long ensembles, for the 130-recipe-epoch row
"""

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import bench  # benchmarks/bench.py, beside this script: running programs, the lines every results file opens with
from frontier_curves import Curve, ensemble_curve, mean_curve, model_curve, reference_curve  # beside it too
from src import files  # bench has put the repository on the path (and loaded this module already)

REPO = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO.parent / "shared" / "reference"
THRESHOLDS = (0.990, 0.992, 0.995, 0.996, 0.997, 0.9975)
SEED_KERNEL_EPOCHS = 12  # the seed kernel's whole recipe: the unit of the 99.2% row
# name, script, its arguments after the data and epochs: the seed kernel at its recipe's Adadelta 1.0 (bench.py's).
REFERENCES = (("recipe kernel (reference)", "recipe_kernel.py", ()),
              ("seed kernel (reference)", "seed_kernel.py", ("1.0",)))
# The recipe kernel (REFERENCES[0]) once more after the recipes: how far the machine's speed moved during the run.
AGAIN = "recipe kernel again (reference)"


@dataclass(frozen=True)
class Recipe:
    """A kernel and the flags of one recipe, trained once per seed.

    Attributes:
        name: what `--only` picks and the report calls it.
        kernel: the folder under `kernels/`.
        flags: the kernel's flags (the budget, folds, ...).
        seeds: one training run per seed; a single-model recipe's figures are the mean and range over them.
        ensemble: whether the run's models are averaged (the record's test accuracy is the ensemble's).
        long: run only with `--all` or `--only` (hours on a laptop).
    """

    name: str
    kernel: str
    flags: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    ensemble: bool = False
    long: bool = False


PROVENANCE_FILE = "provenance.md"  # in a run's folder: the header `--from` writes again above its report

RECIPES = (
    Recipe("mnist-fast", "mnist-fast", ("--folds", "1"), seeds=(0, 1, 2)),
    Recipe("quick", "mnist-ensemble", ("--budget", "quick"), ensemble=True),
    Recipe("quick x 4 seeds", "mnist-ensemble", ("--budget", "quick", "--seeds", "4"), ensemble=True, long=True),
    Recipe("cpu", "mnist-ensemble", ("--budget", "cpu"), ensemble=True, long=True),
)


def reference_log(out: Path, name: str) -> Path:
    """Returns the log a reference kernel's run writes in a run's folder."""
    return out / "logs" / f"{bench.slug(name)}.log"


def run_reference(name: str, script: Path, more: tuple[str, ...], data: Path, epochs: int, out: Path,
                  timeout: float) -> None:
    """Runs a reference kernel for `epochs` epochs on `data`, its output in `reference_log(out, name)`."""
    bench.run_program(name, [sys.executable, str(script), str(data), str(epochs), *more], reference_log(out, name),
                      timeout)


def recipe_folder(out: Path, recipe: Recipe, seed: int) -> Path:
    """Returns the folder one seed of a recipe writes its run into (`bench.run_kit`'s)."""
    return out / bench.slug(f"{recipe.name} seed {seed}")


def run_recipe(recipe: Recipe, data: Path, out: Path, extra: list[str], timeout: float) -> None:
    """Trains a recipe once per seed with `--test-curve`, each into its `recipe_folder` under `out`."""
    for seed in recipe.seeds:
        arguments = [*recipe.flags, "--seed", str(seed), "--test-curve", "--no-plots", *extra]
        bench.run_kit(recipe.kernel, data, arguments, f"{recipe.name} seed {seed}", out, timeout)


def recipe_records(recipe: Recipe, out: Path) -> list[dict]:
    """Returns the run records of a recipe's seeds under `out`, each with its run folder as `path`; [] if none."""
    records = []
    for seed in recipe.seeds:
        for record_path in sorted(recipe_folder(out, recipe, seed).glob(f"{recipe.kernel}-*.json")):
            record = json.loads(record_path.read_text())
            record["path"] = str(record_path.with_suffix(""))
            records.append(record)
    return records


def members_of(record: dict) -> list[tuple[float, object]]:
    """Returns `(seconds, test_probabilities)` of each fold of a run, from the fold files its folder keeps.

    A fold of several seeds keeps their mean: it is one point, at its first model's seconds times the seeds.
    """
    from src import folds, results  # here, not at the top: the kit loads numpy (see ensemble_curve)

    workdir, seeds = Path(record["path"]), record["config"]["seeds"]
    return [(sum(fold["history"]["epoch_seconds"]) * seeds,
             results.load_fold(folds.fold_file(workdir, fold["fold"])).test_probabilities)
            for fold in record["folds"]]


def recipe_curves(recipe: Recipe, records: list[dict], labels) -> list[Curve]:
    """Returns a recipe's curves: its single models' mean (over seeds and folds), and each run's ensemble."""
    models = [model_curve(recipe.name, fold["history"]) for record in records for fold in record["folds"]]
    what = f"mean of {len(records)} seeds" if len(records) > 1 else f"mean of {len(models)} fold models"
    curves = [mean_curve(f"{recipe.name}: one model ({what if len(models) > 1 else 'one model'})", models)]
    if recipe.ensemble:
        for record in records:
            config = record["config"]
            curves.append(ensemble_curve(f"{recipe.name}: ensemble ({config['folds']} folds x {config['seeds']} "
                                         "seeds)", members_of(record), labels))
    return curves


@dataclass(frozen=True)
class Target:
    """One row of the issue's targets.

    Attributes:
        name: the measure, as the table says it.
        kind: the curves it looks at: "model" or "ensemble".
        unit: "recipe" (recipe epochs) or "seed" (a share of the seed kernel's 12 epochs).
        threshold: the accuracy to reach (a "time to" target), or the time limit in the unit ("best within").
        goal: the most time allowed in the unit, or the least accuracy within the limit.
        recipes: the recipes it is measured on; empty for every recipe.
    """

    name: str
    kind: str
    unit: str
    threshold: float
    goal: float
    best_within: bool = False
    recipes: tuple[str, ...] = ()


TARGETS = (
    Target("one model at >= 99.60% test accuracy (mean of its seeds or folds)", "model", "recipe", 0.996, 8.0,
           recipes=("quick", "quick x 4 seeds", "cpu")),
    Target("ensemble at >= 99.70%, no TTA", "ensemble", "recipe", 0.997, 30.0),
    Target("best ensemble within 130 recipe epochs", "ensemble", "recipe", 130.0, 0.9975, best_within=True),
    Target("time to 99.2%, as a share of the seed kernel's 12 epochs", "model", "seed", 0.992, 0.035,
           recipes=("mnist-fast",)),
)


def verdict(target: Target, curves: list[Curve], units: dict[str, float]) -> tuple[str, bool | None]:
    """Returns a target's measured figure, in words, and whether it is met (None: nothing measured for it)."""
    unit = units[target.unit]
    candidates = [curve for curve in curves if curve.kind == target.kind
                  and (not target.recipes or curve.label.split(":")[0] in target.recipes)]
    if not candidates:
        return "not measured in this run", None
    if target.kind == "ensemble":
        # Only a finished ensemble counts: the best of its first-k-model points would be a choice made on test.
        candidates = [curve.finished() for curve in candidates]
    if target.best_within:
        found = [(curve.best_within(target.threshold * unit), -curve.seconds[-1], curve.label) for curve in candidates]
        found = [entry for entry in found if entry[0] is not None]
        if not found:
            return f"no ensemble finished within {target.threshold:g} recipe epochs", False
        accuracy, minus_seconds, label = max(found)  # of equal accuracies, the one that finished first
        return (f"{100 * accuracy:.2f}% ({label}, finished in {in_units(-minus_seconds / unit, target.unit)})",
                accuracy >= target.goal - 1e-9)
    found = [(curve.time_to(target.threshold), curve.label) for curve in candidates]
    reached = [(seconds / unit, label) for seconds, label in found if seconds is not None]
    if not reached:
        best = max(candidates, key=lambda curve: max(curve.accuracies))
        return (f"not reached: best {100 * max(best.accuracies):.2f}% ({best.label}, in "
                f"{in_units(best.seconds[-1] / unit, target.unit)})"), False
    time_in_units, label = min(reached)
    return f"{in_units(time_in_units, target.unit)} ({label})", time_in_units <= target.goal + 1e-9


def in_units(value: float, unit: str) -> str:
    """Returns a time in a target's unit, in words: `7.0 recipe epochs`, or a share `0.031` of the seed kernel."""
    return f"{value:.3f}" if unit == "seed" else f"{value:.1f} recipe epochs"


def time_to_table(curves: list[Curve], recipe_epoch: float) -> list[str]:
    """Returns the markdown table of each curve's time to each threshold, in seconds and recipe epochs."""
    header = "| curve | final | " + " | ".join(f"{100 * t:g}%" for t in THRESHOLDS) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(THRESHOLDS)]
    for curve in curves:
        cells = []
        for threshold in THRESHOLDS:
            seconds = curve.time_to(threshold)
            cells.append("" if seconds is None else f"{seconds:.0f} s = {seconds / recipe_epoch:.1f}")
        seconds = curve.seconds[-1]
        final = f"{100 * curve.accuracies[-1]:.2f}% at {seconds:.0f} s = {seconds / recipe_epoch:.1f}"
        lines.append(f"| {curve.label} | {final} | " + " | ".join(cells) + " |")
    return lines


def draw(curves: list[Curve], recipe_epoch: float, path: Path) -> None:
    """Draws test accuracy against time in recipe epochs (log scale), one line per curve."""
    import matplotlib  # here, not at the top: only the picture needs it

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(9, 5.5))
    for curve in curves:
        x = [seconds / recipe_epoch for seconds in curve.seconds]
        y = [100 * accuracy for accuracy in curve.accuracies]
        style = {"reference": "--", "model": "-", "ensemble": "-"}[curve.kind]
        marker = "s" if curve.kind == "ensemble" else "o"
        [line] = axes.plot(x, y, style, marker=marker, markersize=3, label=curve.label)
        if curve.spread:
            axes.fill_between(x, [100 * low for low, _ in curve.spread], [100 * high for _, high in curve.spread],
                              color=line.get_color(), alpha=0.15)
    axes.set_xscale("log")
    lowest = min(100 * accuracy for curve in curves for accuracy in curve.accuracies)
    axes.set_ylim(max(lowest - 0.1, 97.0), 99.85)  # the frontier's end of the scale, where the targets are
    for threshold in (0.992, 0.996, 0.997, 0.9975):
        axes.axhline(100 * threshold, color="grey", linewidth=0.5, linestyle=":")
    axes.set_xlabel(f"training time, recipe epochs (1 recipe epoch = {recipe_epoch:.1f} s here), log scale")
    axes.set_ylabel("MNIST test accuracy, %")
    axes.set_title("The speed frontier: test accuracy against training time (report only: nothing chosen on it)")
    axes.legend(fontsize=7, loc="lower right")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def chosen_recipes(only: list[str], every: bool) -> list[Recipe]:
    """Returns the recipes a run trains: `--only` names, else the default ones, or all with `--all`."""
    names = [recipe.name for recipe in RECIPES]
    for name in only:
        if name not in names:
            raise SystemExit(f"error: unknown recipe {name!r} for --only; choose among {', '.join(names)}.")
    if only:
        return [recipe for recipe in RECIPES if recipe.name in only]
    return [recipe for recipe in RECIPES if every or not recipe.long]


def report(out: Path, data: Path, recipes: list[Recipe], reference_epochs: int) -> tuple[str, list[Curve], float]:
    """Reads a run's folder (the reference logs, the recipes' records) and returns the report, its curves and the
    recipe epoch's seconds."""
    from src import npz  # here, not at the top: the reference kernels run while this process is still small

    (recipe_curve, recipe_epoch), (seed_curve, seed_epoch) = [
        reference_curve(name, reference_log(out, name)) for name, _, _ in REFERENCES]
    units = {"recipe": recipe_epoch, "seed": SEED_KERNEL_EPOCHS * seed_epoch}
    again_log = reference_log(out, AGAIN)
    again = ""
    if again_log.is_file():
        _, epoch_again = reference_curve(AGAIN, again_log)
        again = (f" Measured again after the recipes, the recipe epoch was {epoch_again:.1f} s "
                 f"({epoch_again / recipe_epoch - 1:+.0%}): the times here use the first.")
    labels = npz.read_npz(data, ("y_test",), what="the benchmark's mnist.npz",
                          fix="Pass --data an mnist.npz whose test split has labels.")["y_test"]
    curves, scores = [recipe_curve, seed_curve], []
    for recipe in recipes:
        records = recipe_records(recipe, out)
        if records:
            curves += recipe_curves(recipe, records, labels)
            scores += [f"`{recipe.name}` seed {record['config']['seed']}: " + (
                f"CV {100 * record['cv_mean']:.2f}% ± {100 * record['cv_std']:.2f}, "
                if record["config"]["folds"] > 1 and record.get("cv_mean") is not None else "no CV (one fold), ")
                + f"test {100 * record['test_accuracy']:.2f}%, {record['seconds'] / 60:.1f} min wall"
                for record in records]
    rows = [(target, *verdict(target, curves, units)) for target in TARGETS]
    met_word = {True: "met", False: "missed", None: "not measured"}
    lines = [
        f"One recipe epoch = {recipe_epoch:.1f} s (the fastest of {reference_epochs} epochs of `recipe_kernel.py` "
        f"on 45,000 images); the seed kernel's 12 epochs = 12 x {seed_epoch:.1f} s = {units['seed']:.0f} s.{again} "
        f"Recipes trained on `{data.name}`'s training split and tested on its {len(labels):,} test images; a time is "
        "the sum of the models' training epochs (each with its held-out validation), without start-up or prediction. "
        "Test accuracies are for this report only.",
        "",
        "| target | goal | measured | verdict |",
        "|---|---|---|---|",
        *[f"| {target.name} | {'>=' if target.best_within else '<='} "
          f"{f'{100 * target.goal:.2f}%' if target.best_within else f'{target.goal:g}'} | {figure} | "
          f"{met_word[met]} |" for target, figure, met in rows],
        "",
        "Time to each test accuracy (seconds = recipe epochs); `final` is the last point's accuracy and time:",
        "",
        *time_to_table(curves, recipe_epoch),
        "",
        "Recipes: " + "; ".join(f"`{r.name}` = `{r.kernel} {' '.join(r.flags)}`, seeds {', '.join(map(str, r.seeds))}"
                                for r in recipes) + ".",
        "",
        "Runs (CV is what choices are made on): " + "; ".join(scores) + ".",
    ]
    return "\n".join(lines) + "\n", curves, recipe_epoch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an mnist.npz whose test split has labels")
    parser.add_argument("--out", default=str(REPO / "build" / "bench" / "frontier"),
                        help="each run writes a folder named for its start under it (default: %(default)s)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"train only this recipe (repeatable): {', '.join(r.name for r in RECIPES)}")
    parser.add_argument("--all", dest="every", action="store_true", help="also the long recipes (hours)")
    parser.add_argument("--from", dest="run_dir", metavar="DIR",
                        help="write the report and picture again from a finished run's folder; trains nothing")
    parser.add_argument("--reference-dir", default=str(REFERENCE_DIR),
                        help="where recipe_kernel.py and seed_kernel.py are (default: %(default)s)")
    parser.add_argument("--reference-epochs", type=int, default=2,
                        help="epochs each reference kernel runs; its fastest is the unit (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per program (default: 6 hours)")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "frontier.md"))
    parser.add_argument("--picture", default=str(REPO / "benchmarks" / "frontier.png"))
    args, extra = parser.parse_known_args(argv)
    recipes = chosen_recipes(args.only, args.every)
    started, clock, load_before = dt.datetime.now(dt.timezone.utc), time.perf_counter(), bench.load_text()
    data, references = Path(args.data).resolve(), Path(args.reference_dir)
    if args.run_dir:
        out = Path(args.run_dir)
    else:
        out = Path(args.out) / started.strftime("%Y%m%dT%H%M%SZ")  # each run its own folder: none reads another's
        print("units: the reference kernels", flush=True)
        for name, script, more in REFERENCES:
            run_reference(name, references / script, more, data, args.reference_epochs, out, args.timeout)
        for recipe in recipes:
            print(f"recipe {recipe.name}: {recipe.kernel} {' '.join(recipe.flags)}, seeds {recipe.seeds}", flush=True)
            run_recipe(recipe, data, out, extra, args.timeout)
        print("units again: the recipe kernel", flush=True)
        _, script, more = REFERENCES[0]
        run_reference(AGAIN, references / script, more, data, args.reference_epochs, out, args.timeout)
    text, curves, recipe_epoch = report(out, data, recipes, args.reference_epochs)
    text += f"Run folder: `{out}`" + (" (this report was written again from it with `--from`)" if args.run_dir
                                      else "") + f". Picture: `{Path(args.picture).name}`.\n"
    print(text)
    draw(curves, recipe_epoch, Path(args.picture))
    header = "\n".join(bench.provenance_lines(started, time.perf_counter() - clock, load_before))
    kept = out / PROVENANCE_FILE
    if args.run_dir and kept.is_file():
        # The run's own date, command, machine and commit, then this rewrite's: the figures are the run's.
        header = kept.read_text().rstrip("\n") + "\n\nWritten again with `--from`:\n\n" + header
    elif not args.run_dir:
        files.write_text(kept, header + "\n")
    files.write_text(Path(args.results), f"# bench-frontier\n\n{header}\n\n{text}")  # never half-written
    return 0


if __name__ == "__main__":
    sys.exit(main())
