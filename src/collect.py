"""Collecting folds run as separate Kaggle kernels (`make collect`): download each fold's output, check that the
folds belong together, and blend them exactly as a local k-fold run ends, into a run of its own; `make watch-folds`
waits for the fold kernels first.

`make push-folds` pushes one kernel per fold (`<slug>-fold-<i>`, each running `--folds K --fold-index i`); each
writes its run record and its saved fold (`<run>/fold-<i>.npz`). This puts the saved folds through
`results.ensemble`, as a local run's `run.ensemble()` does, and finishes the blend with `finish.finish_run`.
"""

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src import config, data, finish, folds, paths, records, results, runs
from src.errors import KitError
from src.kaggle import competition, kernels, metadata, watch


@dataclass(frozen=True)
class FetchedFold:
    """One fold kernel's downloaded output.

    Attributes:
        fold_index: 0-based.
        ref: the fold kernel's `<owner>/<slug>`.
        folder: where its output was downloaded.
        record: its run record (`<kernel>-<time>.json`).
        fold_file: its saved fold, `<run>/fold-<i>.npz`, as a training run saves it.
    """

    fold_index: int
    ref: str
    folder: Path
    record: dict
    fold_file: Path


def _fetch_fold(ref: str, fold_index: int, target: Path, name: str) -> FetchedFold:
    """Downloads one fold kernel's output and finds its run record and saved fold in it."""
    kernels.download_output_of(ref, target, name, push_command=f"make push-folds KERNEL={name}")
    found = [(path, record) for path, record in records.find_records(target)
             if record["config"].get("fold_index") == fold_index]
    if not found:
        raise KitError(f"The output of {ref} holds no run record of fold {fold_index} (a JSON record whose config has "
                       f"fold_index {fold_index}); push the folds again with `make push-folds KERNEL={name}`.")
    path, record = max(found, key=lambda item: item[1]["run"])
    fold_file = target / record["run"] / f"fold-{fold_index}.npz"
    if not fold_file.is_file():
        raise KitError(f"The output of {ref} lacks {record['run']}/fold-{fold_index}.npz beside {path.name}; "
                       f"push the folds again with `make push-folds KERNEL={name}`.")
    return FetchedFold(fold_index=fold_index, ref=ref, folder=target, record=record, fold_file=fold_file)


def _recorded_config(fold: FetchedFold) -> config.RunConfig:
    """Returns the configuration a fold kernel recorded, through the checks its flags passed (ranges, choices)."""
    known = {item.name for item in dataclasses.fields(config.RunConfig)}
    settings = {key: value for key, value in fold.record["config"].items() if key in known}
    push_again = "blend only folds the kit wrote: push the folds again with `make push-folds`"
    try:
        recorded = config.RunConfig(**settings)
    except KitError as error:
        raise KitError(f"The record of fold {fold.fold_index} ({fold.ref}) holds settings the kit refuses: "
                       f"{str(error).rstrip('.')}; {push_again}.") from None
    except TypeError:  # a missing kernel name, a number that is text, ...
        raise KitError(f"The record of fold {fold.fold_index} ({fold.ref}) holds settings of the wrong type; "
                       f"{push_again}.") from None
    if not isinstance((fold.record.get("data") or {}).get("sha256"), str):
        raise KitError(f"The record of fold {fold.fold_index} ({fold.ref}) names no data sha256; {push_again}.")
    if recorded.fold_index != fold.fold_index:
        raise KitError(f"The record of fold {fold.fold_index} ({fold.ref}) is of fold {recorded.fold_index}; "
                       f"{push_again}.")
    return recorded


def _check_fold_rows(fold: FetchedFold, loaded: results.FoldResult, dataset, num_folds: int, seed: int) -> None:
    """Raises the kit's error unless a downloaded fold holds out exactly the rows its fold of the split holds out
    and predicts every test image: what a local run of the same settings would have."""
    if loaded.fold_index != fold.fold_index or loaded.validation_indices is None:
        raise KitError(f"{fold.fold_file} does not hold fold {fold.fold_index} of a k-fold run; push the folds "
                       "again.")
    expected = folds.fold_splits(dataset.y_train, num_folds, seed)[fold.fold_index][1]
    if not np.array_equal(loaded.validation_indices, expected):
        raise KitError(f"{fold.fold_file} holds out other training rows than fold {fold.fold_index} of --folds "
                       f"{num_folds} --seed {seed} on this data; push the folds again.")
    if len(loaded.test_probabilities) != len(dataset.x_test):
        raise KitError(f"{fold.fold_file} predicts {len(loaded.test_probabilities)} test images but "
                       f"{dataset.source} has {len(dataset.x_test)}; push the folds again.")


def _check_folds_agree(fetched: list[FetchedFold]) -> None:
    """Raises the kit's error unless every fold kernel ran the same settings on the same data."""
    first = fetched[0]
    compared = config.field_names("compared")
    settings = {key: value for key, value in first.record["config"].items() if key in compared}
    for fold in fetched[1:]:
        other = {key: value for key, value in fold.record["config"].items() if key in compared}
        differing = sorted(key for key in settings.keys() | other.keys() if settings.get(key) != other.get(key))
        if differing:
            key = differing[0]
            raise KitError(f"Fold {fold.fold_index} ({fold.ref}) ran with {key}={other.get(key)!r} but fold 0 with "
                           f"{key}={settings.get(key)!r}; blend only folds of one push: `make push-folds` again.")
        if fold.record["data"]["sha256"] != first.record["data"]["sha256"]:
            raise KitError(f"Fold {fold.fold_index} ({fold.ref}) trained on other data than fold 0 (sha256 "
                           f"{fold.record['data']['sha256'][:12]} vs {first.record['data']['sha256'][:12]}); push "
                           "the folds again.")


def collect(kernel: str | os.PathLike, data_path: str | None = None, out_dir: Path | None = None,
            downloads_dir: Path | None = None) -> dict:
    """Downloads the outputs of a kernel's fold kernels and blends them as a local k-fold run blends its folds.

    Fold 0's record says how many folds there are; every fold kernel must have finished (`kaggle kernels
    status`), with the same settings and data. The saved folds go through `results.ensemble`, as a local run's
    do: the test probabilities are the mean of the folds', and the out-of-fold probabilities put each fold's
    held-out rows together. The run is finished by `finish.finish_run`, as a kernel's is.

    Args:
        kernel: the kernel's folder or name (whose folds `push_folds` pushed).
        data_path: the data the folds trained on (the competition's, on Kaggle), for the labels of the
            out-of-fold accuracy; None for the default place (`input/`). Its sha256 must match.
        out_dir: where the blend's run goes; default `submissions/` (or `/kaggle/working` on Kaggle).
        downloads_dir: where the folds' outputs go, each in `<name>-folds/fold-<i>/`; default
            `paths.KERNEL_OUTPUTS_DIR`.

    Returns:
        The blend's run record, with the paths of what was written under `"outputs"`.

    Raises:
        KitError: a fold kernel is missing, unfinished or failed, the folds disagree, or the data differs.
    """
    folder = metadata.kernel_dir(kernel)
    name = folder.resolve().name
    ref = kernels.kernel_ref(folder)
    downloads = Path(downloads_dir or paths.KERNEL_OUTPUTS_DIR) / f"{name}-folds"

    def unfinished(indices) -> list[str]:
        push_command = f"make push-folds KERNEL={name}"
        states = [(index, kernels.status_of(metadata.fold_ref(ref, index), name, push_command=push_command))
                  for index in indices]
        return [f"fold {index} {state.status}" + (f" ({state.failure_message})" if state.failure_message else "")
                for index, state in states if state.status != "complete"]

    waiting = unfinished([0])
    if waiting:
        raise KitError(f"Kaggle has not finished the folds of {name}: {', '.join(waiting)}; wait for them "
                       f"(`kaggle kernels status {metadata.fold_ref(ref, 0)}`), or push them with `make push-folds "
                       f"KERNEL={name}`.")
    fetched = [_fetch_fold(metadata.fold_ref(ref, 0), 0, downloads / "fold-0", name)]
    recorded = _recorded_config(fetched[0])
    num_folds = recorded.folds
    waiting = unfinished(range(1, num_folds))
    if waiting:
        raise KitError(f"Kaggle has not finished every fold of {name}: {', '.join(waiting)}; wait for them, or push "
                       f"the folds again with `make push-folds KERNEL={name} FOLDS={num_folds}`.")
    fetched += [_fetch_fold(metadata.fold_ref(ref, index), index, downloads / f"fold-{index}", name)
                for index in range(1, num_folds)]
    for fold in fetched[1:]:
        _recorded_config(fold)
    _check_folds_agree(fetched)

    dataset = data.load_dataset(data_path)
    data_sha256 = data.source_sha256(dataset.source)
    expected = fetched[0].record["data"]["sha256"]
    if data_sha256 != expected:
        raise KitError(f"The folds trained on data with sha256 {expected[:12]}..., but {dataset.source} has "
                       f"{data_sha256[:12]}...; collect needs the same data for the out-of-fold accuracy: fill "
                       "input/ with the competition's files (`make data` with Kaggle credentials) or pass --data.")
    fold_results = []
    for fold in fetched:
        loaded = results.load_fold(fold.fold_file)
        _check_fold_rows(fold, loaded, dataset, num_folds, recorded.seed)
        fold_results.append(loaded)
    result = results.ensemble(fold_results, dataset)

    run_config = dataclasses.replace(recorded, fold_index=None, data=str(dataset.source),
                                     out=str(out_dir) if out_dir is not None else None)
    run = runs.start_run(name, run_config.output_dir)
    try:
        return finish.finish_run(
            run, result, config=run_config.to_dict(), data=records.data_summary(dataset, data_sha256),
            seconds=sum(fold.seconds for fold in fold_results), code=records.code_state(), dataset=dataset,
            draw_pictures=run_config.plots,
            extra={"collected_from": [{"fold": fold.fold_index, "kernel": fold.ref, "run": fold.record["run"],
                                       "distribution": fold.record.get("distribution")} for fold in fetched],
                   "leaks": fetched[0].record.get("leaks")},  # every fold checked the same data and split
        )
    finally:
        runs.release(run)


def watch_folds(kernel: str | os.PathLike, num_folds: int, *, message: str | None = None, allow_leak: bool = False,
                timeout: float = watch.DEFAULT_TIMEOUT_SECONDS, pace: watch.Pace = watch.Pace(),
                data_path: str | None = None, out_dir: Path | None = None) -> dict:
    """Waits for the fold kernels `make push-folds` pushed, collects them (`collect`) and may submit the blend.

    Args:
        kernel: the kernel's folder or name.
        num_folds: K, as pushed.
        message: submit the blend's submission with this description; None submits nothing.
        allow_leak: submit it even when the folds trained on test images.
        timeout, pace: how long and how often to ask Kaggle (`watch.wait_for`).
        data_path, out_dir: as for `collect`.

    Returns:
        The blend's run record, with `"submitted"`: what `competition.submit` answered (or None).

    Raises:
        KitError: a fold's run failed (its log's last lines shown first), the wait timed out, or as `collect`.
    """
    config.check_range("folds", num_folds, 2, config.MAX_FOLDS)
    folder = metadata.kernel_dir(kernel)
    name = folder.resolve().name
    ref = kernels.kernel_ref(folder)
    states = watch.wait_for([metadata.fold_ref(ref, index) for index in range(num_folds)], name, timeout=timeout,
                            pace=pace, push_command=f"make push-folds KERNEL={name}",
                            again=f"make watch-folds KERNEL={name} FOLDS={num_folds}")
    failed = [state for state in states.values() if state.status != "complete"]
    if failed:
        others = len(failed) - 1
        raise KitError(watch.failure_text(failed[0], name) +
                       (f" ({others} other fold{'s' if others > 1 else ''} failed too)" if others else ""))
    record = collect(folder, data_path=data_path, out_dir=out_dir)
    submitted = None
    if message is not None:
        submitted = competition.submit(record["outputs"]["submission"], message, allow_leak=allow_leak)
    return {**record, "submitted": submitted}
