"""Finishing a run: the one way every run ends, whether a kernel trained it, a blend averaged it or `collect`
gathered it from Kaggle.

In this order, each file complete under its final name before the next begins: the probabilities (`<run>.npz`),
the submission (`<run>.csv`, validated), the record (`<run>.json`); then the run is marked finished and its lock
released; then, on Kaggle, `/kaggle/working/submission.csv`; and last the pictures, so that the submission and the
record are safe on disk whatever happens to a picture.
"""

import logging

from src import files, paths, plots, records, runs, submission

logger = logging.getLogger(__name__)


def finish_run(run: runs.Run, result, *, config: dict, data: dict, seconds: float, code: dict, dataset=None,
               draw_pictures: bool = True, extra: dict | None = None) -> dict:
    """Writes a finished run's files and marks it finished.

    Args:
        run: the run, locked (`runs.start_run`).
        result: its `results.CrossValidation`.
        config: the configuration the record keeps (`RunConfig.to_dict()`, or a blend's own).
        data: the record's `data` entry (`records.data_summary`).
        seconds: the run's seconds (its wall time, or the time its folds took where they ran elsewhere).
        code: `records.code_state()`, taken when the run started.
        dataset: the data, for the pictures (they need the images and labels); None draws none.
        draw_pictures: whether to draw them (`--no-plots` says no).
        extra: more entries for the record, e.g. `{"restored_from": ...}`.

    Returns:
        The record as written, with the paths of what was written under `"outputs"`: `submission`, `record`,
        `probabilities`, `pictures` and, on Kaggle, `kaggle_submission`.

    Raises:
        KitError: a file cannot be written (nothing is left half-written), or the submission is invalid.
    """
    probabilities = records.write_probabilities(run, result)
    submission_path = submission.write_submission(result.test_labels, run.path(".csv"),
                                                  expected_rows=data["test_rows"])
    record = records.build_record(run, config=config, data=data, result=result,
                                  seconds=seconds, code=code)
    record.update(extra or {})
    record_path = records.write_record(run, record)
    runs.mark_finished(run)
    outputs = {"submission": str(submission_path), "record": str(record_path), "probabilities": str(probabilities),
               "pictures": []}
    if paths.on_kaggle():
        # Kaggle takes a kernel's submission from <working dir>/submission.csv; a rerun replaces it.
        kaggle_submission = paths.kaggle_working_dir() / paths.KAGGLE_SUBMISSION_NAME
        files.write_bytes(kaggle_submission, submission_path.read_bytes())
        outputs["kaggle_submission"] = str(kaggle_submission)
    if draw_pictures and dataset is not None:
        outputs["pictures"] = [str(path) for path in plots.draw_run_pictures(run.workdir, dataset, result)]
        plots.show_inline(outputs["pictures"])  # in a notebook (a kernel pushed as one), beside their files
    return {**record, "outputs": outputs}


def summary_line(record: dict) -> str:
    """Returns a run's last line: the submission's path and its scores (a worker's: that the chief wrote it)."""
    if "worker" in record:
        return (f"worker {record['worker']['index']} of {record['worker']['count']}: trained; the chief (worker 0) "
                "wrote the submission")
    scores = []
    fold_index = record["config"].get("fold_index")
    if record["cv_mean"] is not None and fold_index is not None:
        scores.append(f"fold {fold_index} of {record['config']['folds']}: validation_accuracy={record['cv_mean']:.4f}")
    elif record["cv_mean"] is not None and (record["config"].get("folds") or 1) > 1:
        scores.append(f"cv_accuracy={record['cv_mean']:.4f}±{record['cv_std']:.4f}")
        if record["oof_accuracy"] is not None:
            scores.append(f"oof_accuracy={record['oof_accuracy']:.4f}")
    if record["test_accuracy"] is not None:
        scores.append(f"test_accuracy={record['test_accuracy']:.4f}")
    if not scores:
        scores.append("accuracy=unknown (no labelled data held out)")
    return f"submission: {record['outputs']['submission']}  {'  '.join(scores)}"
