"""`make tune`: a hyperparameter search over a kernel's flags with Optuna, scored on cross-validation.

    python -m src tune kernels/mnist-fast --trials 20 [--timeout MIN] [--folds K] [--space FILE] [--storage URL]

| module | holds |
| --- | --- |
| `space` | search spaces: the kernel's `tune-space.yaml` or `--space FILE`, checked; a trial's flags from them |
| `plan` | a study's settings (kernel, trials, folds, seed, space, data, storage), checked before anything is written |
| `storage` | the study in its storage (SQLite or `--storage URL`); trials whose process died, run again |
| `trial` | one trial: the kernel's own script run in this process with the trial's flags, pruned or not |
| `study` | the loop of trials until the study has its count or the timeout passes, a progress line per trial |
| `summary` | what a study shows: the best trials, the commands that reproduce and confirm the best, its pictures |

A trial runs the kernel's own script with the trial's flags, in this process (`src.trial_hooks` makes the run
a trial: no test labels, an epoch listener for pruning). Importing the package loads Optuna; TensorFlow loads
with the first trial.
"""

import os

from src.tune import plan, study, summary


def tune(kernel: str | os.PathLike, **options) -> tuple[study.StudyResult, str]:
    """Runs a study of a kernel's flags (see `plan.plan_study` for the options), then draws its pictures.

    Returns:
        `(result, text)`: what ran, and the summary to print (the best trials and the commands to go on).

    Raises:
        KitError: a bad option, space, kernel or storage; a trial's own `KitError` only fails that trial.
        KeyboardInterrupt: Ctrl-C; finished trials are kept and the running one runs again next time.
    """
    result = study.run_study(plan.plan_study(kernel, **options))
    pictures = summary.draw_pictures(result.study, result.plan)
    return result, summary.summary_text(result, pictures)
