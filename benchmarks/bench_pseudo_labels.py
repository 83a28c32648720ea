"""bench-pseudo-labels: what `--pseudo-label P` adds on cross-validation and on MNIST's 10,000 test images.

Each comparison trains one recipe twice, in turn, with the same seed and folds: as it is, and with
`--pseudo-label P` (src/pseudo_labels.py). The choice is made on the held-out folds: a fold's unlabelled pool holds
its held-out rows as it holds the test images, so their accuracy shows what the labels do to the images they label.
Test accuracy and how many of the labels were wrong (read against the bench's own labels) are for the report only.

    python benchmarks/bench_pseudo_labels.py --data ../shared/data/mnist.npz              # both comparisons, ~50 min
    python benchmarks/bench_pseudo_labels.py --data ../shared/data/mnist.npz --only mnist-fast
    python benchmarks/bench_pseudo_labels.py --data ../shared/data/mnist.npz --from build/bench/pseudo-labels
"""

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import bench  # benchmarks/bench.py, beside this script: running programs, the lines every results file opens with
from src import console

console.quiet_tensorflow()  # src.pseudo_labels loads Keras: TensorFlow's start-up lines stay out of the bench's output
from src import folds, loaders, pseudo_labels, records  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# name: (kernel, flags). mnist-fast: all 5 folds of its 4 epochs; quick: fold 0 of --budget quick.
COMPARISONS = {
    "mnist-fast": ("mnist-fast", ()),
    "quick fold 0": ("mnist-ensemble", ("--budget", "quick", "--fold-index", "0")),
}


def labels_of(label: str, threshold: float | None) -> str:
    """Returns the label (and folder name, slugged) of one run of a comparison."""
    return label if threshold is None else f"{label} pseudo {threshold:g}"


def read_run(out: Path, label: str, kernel: str) -> dict:
    """Returns the record of the run `bench.run_kit` wrote for `label`, with its run folder as `path`."""
    found = sorted((out / bench.slug(label)).glob(f"{kernel}-*.json"))
    if not found:
        raise SystemExit(f"error: no {kernel} run record under {out / bench.slug(label)}; train it first "
                         f"(drop --from).")
    record = records.read_record(found[-1])
    record["path"] = found[-1].with_suffix("")
    return record


def label_errors(record: dict, y_train: np.ndarray, y_test: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Returns, per fold of a pseudo-labelled run, `(labelled, pool, wrong on test rows, wrong on held-out rows)`.

    A fold's pool is the test images, then its held-out rows (`src.training`); its labels file holds row numbers
    into that pool.
    """
    counts = []
    for fold in record["folds"]:
        validation_indices = np.load(folds.fold_file(record["path"], fold["fold"]))["validation_indices"]
        pool = len(y_test) + len(validation_indices)
        labels_file = folds.fold_dir(record["path"], fold["fold"]) / pseudo_labels.FILE_NAME
        indices, labels = pseudo_labels.load(labels_file, pool, record["config"]["pseudo_label"])
        truth = np.concatenate([y_test, y_train[validation_indices]])[indices]
        on_test = indices < len(y_test)
        counts.append((len(indices), pool, int(np.sum((labels != truth) & on_test)),
                       int(np.sum((labels != truth) & ~on_test))))
    return counts


def mean_of(record: dict, key: str) -> float:
    """Returns the mean over a run's folds of one of their figures (`validation_accuracy`, `test_accuracy`)."""
    return statistics.mean(fold[key] for fold in record["folds"])


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def run_row(name: str, record: dict, errors: list | None) -> str:
    """One table row: a run's CV, test figures, training seconds and, when pseudo-labelled, its labels."""
    validation = [fold["validation_accuracy"] for fold in record["folds"]]
    spread = f" ± {100 * statistics.stdev(validation):.2f}" if len(validation) > 1 else ""
    seconds = sum(sum(fold["history"]["epoch_seconds"]) for fold in record["folds"])
    labelled = "" if errors is None else ", ".join(f"{count:,} of {pool:,} ({wrong_test} + {wrong_held} wrong)"
                                                   for count, pool, wrong_test, wrong_held in errors)
    ensemble = percent(record["test_accuracy"]) if len(validation) > 1 else ""
    per_fold = ", ".join(f"{100 * value:.2f}" for value in validation)
    return (f"| {name} | {100 * mean_of(record, 'validation_accuracy'):.2f}%{spread} | {per_fold} | "
            f"{percent(mean_of(record, 'test_accuracy'))} | {ensemble} | {seconds:,.0f} | {labelled} |")


def report(out: Path, data: Path, names: list[str], threshold: float) -> str:
    """Returns the markdown tables of the comparisons' runs under `out`."""
    (x_train, y_train), (x_test, y_test) = loaders.load_npz(data)
    lines = [
        "Held-out accuracy (CV: the choice is made on it) is the mean ± std of the trained folds; test accuracy is",
        "the mean of the fold models and, with several folds, their ensemble (report only). Labelled: per fold, how",
        "many images of its pool (test images + its held-out rows) took a pseudo-label, and how many of those were",
        "wrong on test rows + on held-out rows. Seconds: the training epochs' sum, labelling included.",
        "",
        "| run | CV | held-out accuracy per fold | test (fold models) | test (ensemble) | seconds | labelled |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    summaries, commits = [], set()
    for name in names:
        kernel, _ = COMPARISONS[name]
        base = read_run(out, labels_of(name, None), kernel)
        pseudo = read_run(out, labels_of(name, threshold), kernel)
        for record in (base, pseudo):
            commits.add(f"{record['git_commit']}{' (dirty)' if record['git_dirty'] else ''}")
        lines.append(run_row(name, base, None))
        lines.append(run_row(labels_of(name, threshold), pseudo, label_errors(pseudo, y_train, y_test)))
        changes = [100 * (mean_of(pseudo, key) - mean_of(base, key))
                   for key in ("validation_accuracy", "test_accuracy")]
        summaries.append(f"- {name}: `--pseudo-label {threshold:g}` changes CV by {changes[0]:+.2f} points and the "
                         f"fold models' mean test accuracy by {changes[1]:+.2f} points.")
    return "\n".join([*lines, "", *summaries, "", f"Runs under `{out}`, commit {', '.join(sorted(commits))}."]) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an mnist.npz whose test split has labels")
    parser.add_argument("--out", default=str(REPO / "build" / "bench" / "pseudo-labels"))
    parser.add_argument("--threshold", type=float, default=0.99, help="--pseudo-label's P (default: %(default)s)")
    parser.add_argument("--only", action="append", default=[], choices=list(COMPARISONS), metavar="NAME",
                        help=f"one comparison, repeatable: {', '.join(COMPARISONS)} (default: all)")
    parser.add_argument("--from", dest="run_dir", metavar="DIR", help="write the report from these runs, training none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per program (default: 3 hours)")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "pseudo-label-results.md"))
    args, extra = parser.parse_known_args(argv)
    started, clock, load_before = dt.datetime.now(dt.timezone.utc), time.perf_counter(), bench.load_text()
    names = args.only or list(COMPARISONS)
    out = Path(args.run_dir or args.out)
    if args.run_dir is None:
        for name in names:
            kernel, flags = COMPARISONS[name]
            for threshold in (None, args.threshold):
                pseudo = () if threshold is None else ("--pseudo-label", str(threshold))
                arguments = [*flags, *pseudo, "--seed", str(args.seed), "--no-plots", *extra]
                bench.run_kit(kernel, Path(args.data), arguments, labels_of(name, threshold), out, args.timeout)
    text = report(out, Path(args.data), names, args.threshold)
    print(text)
    header = "\n".join(bench.provenance_lines(started, time.perf_counter() - clock, load_before))
    again = " (this report was written again from them with `--from`)" if args.run_dir else ""
    Path(args.results).write_text(f"# bench-pseudo-labels{again}\n\n{header}\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
