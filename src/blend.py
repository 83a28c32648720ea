"""Blending runs (`python -m src blend`): a weighted average of runs' saved probabilities, finished as a run.

The test probabilities are always blended. When every run is k-fold with the same folds and seed, the out-of-fold
probabilities are blended too, and the blend gets a per-fold CV score on the same splits, so that `make runs`
ranks it beside its runs before anything is submitted.
"""

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src import data, finish, folds, records, results, runs
from src.errors import KitError

logger = logging.getLogger(__name__)

BLEND_KERNEL = "blend"


def blend_weights(weights: Sequence[float] | None, num_runs: int) -> np.ndarray:
    """Checks blend weights and scales them to sum to 1.

    Args:
        weights: one non-negative weight per run; None for equal weights.
        num_runs: how many runs are blended.

    Returns:
        `(num_runs,)` float64 weights summing to 1.

    Raises:
        KitError: the count differs from the runs', a weight is negative or not finite, or all are zero.
    """
    if weights is None:
        return np.full(num_runs, 1.0 / num_runs)
    values = np.asarray(list(weights), dtype=np.float64)
    if len(values) != num_runs:
        raise KitError(f"Give one weight per run: {num_runs} runs, {len(values)} weights. "
                       f"Received: weights={list(weights)}.")
    if not np.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        raise KitError(f"Weights must be finite, non-negative and not all zero. Received: weights={list(weights)}.")
    return values / values.sum()


def _blend_dataset(record: dict, data_path: str | None):
    """Loads the runs' data for its labels; None (with a warning) when the recorded source is gone or changed."""
    source = data_path if data_path is not None else (record.get("data") or {}).get("source")
    expected = (record.get("data") or {}).get("sha256")
    try:
        dataset = data.load_dataset(source) if source else None
        problem = None if dataset is None else (
            None if data.source_sha256(dataset.source) == expected else
            f"{dataset.source} is not the data the runs were trained on (its sha256 differs)"
        )
    except KitError as error:
        dataset, problem = None, str(error)
    if dataset is not None and problem is None:
        return dataset
    hint = "pass --data the file or folder the runs were trained on"
    if data_path is not None:
        raise KitError(f"{problem}; {hint}.")
    logger.warning("blend: accuracies unknown: %s; %s.", problem or "the runs record no data source", hint)
    return None


def _fold_scores(probabilities: np.ndarray, labels: np.ndarray, num_folds: int, seed: int) -> list[float]:
    return [results.accuracy(probabilities[validation], labels[validation])
            for _, validation in folds.fold_splits(labels, num_folds, seed)]


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _weighted_sum(scale: np.ndarray, arrays: list[np.ndarray]) -> np.ndarray:
    return sum(weight * array.astype(np.float64) for weight, array in zip(scale, arrays)).astype(np.float32)


def blend_runs(record_paths: Sequence[Path], weights: Sequence[float] | None = None, *, out_dir: Path | None = None,
               data_path: str | None = None, plots: bool = True) -> dict:
    """Averages the saved probabilities of runs into a new run: submission, probabilities and record.

    The out-of-fold probabilities are blended when every run has them and the runs share their folds (same data,
    number of folds and seed); the blend's CV score per fold is then measured on the same splits. Accuracies need
    the runs' labelled data, read again from the recorded source (or `data_path`) and checked against the
    recorded sha256.

    Args:
        record_paths: the runs' `.json` records; the same run may appear more than once.
        weights: one per run; None for equal weights.
        out_dir: where the blend's files go; None for the first run's folder.
        data_path: the runs' data, when it has moved since they ran.
        plots: draw the confusion matrices and mistakes of the blend.

    Returns:
        The blend's run record, with the paths written under `"outputs"`.

    Raises:
        KitError: fewer than two runs, runs of different data, bad weights, or an unreadable run.
    """
    started = time.perf_counter()
    code = records.code_state()
    if len(record_paths) < 2:
        raise KitError(f"A blend needs at least two runs (the same run twice is allowed). "
                       f"Received: {len(record_paths)} run.")
    blended = [records.read_run(path) for path in record_paths]
    scale = blend_weights(weights, len(blended))
    run_records = [record for record, _ in blended]
    hashes = {(record.get("data") or {}).get("sha256") for record in run_records}
    if len(hashes) != 1 or None in hashes:
        raise KitError("Runs trained on different data cannot be blended: their data sha256 differ. "
                       f"Received: {', '.join(record['run'] for record in run_records)}.")
    shapes = {arrays["test_probabilities"].shape for _, arrays in blended}
    if len(shapes) != 1:
        raise KitError(f"The runs predicted different test splits. Received: shapes {sorted(shapes)}.")
    test_probabilities = _weighted_sum(scale, [arrays["test_probabilities"] for _, arrays in blended])

    splits = {(record["config"].get("folds"), record["config"].get("seed")) for record in run_records}
    shares_folds = len(splits) == 1 and all("oof_probabilities" in arrays for _, arrays in blended)
    num_folds, seed = next(iter(splits)) if shares_folds else (None, None)
    oof_probabilities = None
    if shares_folds:
        oof_probabilities = _weighted_sum(scale, [arrays["oof_probabilities"] for _, arrays in blended])
    else:
        logger.info("blend: test probabilities only; out-of-fold ones need k-fold runs with the same folds and seed")

    dataset = _blend_dataset(run_records[0], data_path)
    oof_accuracy = test_accuracy = None
    fold_scores: list[float] = []
    if dataset is not None:
        if len(dataset.x_test) != len(test_probabilities):
            raise KitError(f"{dataset.source} has {len(dataset.x_test)} test images but the runs predicted "
                           f"{len(test_probabilities)}; pass --data the runs' data.")
        if dataset.has_test_labels:
            test_accuracy = results.accuracy(test_probabilities, dataset.y_test)
        if oof_probabilities is not None:
            oof_accuracy = results.accuracy(oof_probabilities, dataset.y_train)
            # The splits are recomputed from the labels and seed; each run's own fold scores prove them equal.
            for record, arrays in blended:
                recorded = [_number(fold.get("validation_accuracy")) for fold in record.get("folds", [])]
                measured = _fold_scores(arrays["oof_probabilities"], dataset.y_train, num_folds, seed)
                if (len(recorded) != len(measured) or None in recorded
                        or not np.allclose(recorded, measured, atol=1e-6)):
                    logger.warning("blend: the folds of %s cannot be reproduced here; no per-fold CV score",
                                   record["run"])
                    break
            else:
                fold_scores = _fold_scores(oof_probabilities, dataset.y_train, num_folds, seed)

    # The blend's folds carry only their CV scores: its models were trained, and timed, by the runs it blends.
    fold_results = [results.FoldResult(fold_index=index, seconds=0.0, validation_indices=None,
                                       validation_probabilities=None, validation_accuracy=score,
                                       test_probabilities=None, test_accuracy=None)
                    for index, score in enumerate(fold_scores)]
    result = results.CrossValidation(folds=fold_results, oof_probabilities=oof_probabilities,
                                     test_probabilities=test_probabilities, oof_accuracy=oof_accuracy,
                                     test_accuracy=test_accuracy)
    run = runs.start_run(BLEND_KERNEL, Path(out_dir) if out_dir is not None else Path(record_paths[0]).parent)
    try:
        return finish.finish_run(
            run, result, config={"kernel": BLEND_KERNEL, "model": BLEND_KERNEL, "folds": num_folds, "seed": seed},
            data=dict(run_records[0]["data"]), seconds=time.perf_counter() - started, code=code, dataset=dataset,
            draw_pictures=plots,
            extra={"blend": {"runs": [record["run"] for record in run_records],
                             "weights": [round(float(weight), 6) for weight in scale],
                             "out_of_fold": oof_probabilities is not None},
                   "leaks": run_records[0].get("leaks")},  # the runs trained on the same data (its sha256)
        )
    finally:
        runs.release(run)
