"""What a study shows when its command ends: the best trials, the commands that reproduce and confirm the best,
and its pictures (Optuna's visualisation module, matplotlib backend) beside its database.

| picture | what it shows |
| --- | --- |
| `<study>-history.png` | each trial's CV (pruned and failed ones left out) and the best so far |
| `<study>-importances.png` | how much each searched flag explains of the CV (Optuna's default evaluator, PED-ANOVA) |
| `<study>-epochs.png` | fold 1's held-out accuracy per epoch, per trial: where the pruner stopped trials |
"""

import io
import logging
import shlex
import warnings
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from src import files, paths
from src.tune import study as tune_study
from src.tune.plan import StudyPlan

logger = logging.getLogger(__name__)

BEST_ROWS = 5
# Each picture's Optuna function (in optuna.visualization.matplotlib) and its axes' labels (None: Optuna's).
PICTURES = {
    "history": ("plot_optimization_history", None, "CV accuracy"),
    "importances": ("plot_param_importances", None, None),
    "epochs": ("plot_intermediate_values", "epoch of fold 1", "fold 1's held-out accuracy"),
}


def best_trials(study: optuna.Study, limit: int = BEST_ROWS) -> list[FrozenTrial]:
    """Returns the completed trials, best CV first (the earlier trial first among equals)."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(completed, key=lambda trial: (-trial.value, trial.number))[:limit]


def train_command(plan: StudyPlan, trial: FrozenTrial, seed: int | None = None) -> str:
    """Returns the command that trains a trial's flags as a normal run (test accuracy included).

    Args:
        plan: the study's plan (its data, folds and seed).
        trial: the trial.
        seed: another seed, for a run that confirms the trial; None for the study's (the trial's own run again).
    """
    arguments = plan.study_flags() + list(trial.user_attrs.get("flags", []))
    if seed is not None:
        arguments[arguments.index("--seed") + 1] = str(seed)
    args = " ".join(shlex.quote(argument) for argument in arguments)
    if plan.kernel_dir.resolve() == (paths.KERNELS_DIR / plan.kernel).resolve():
        return f'make train KERNEL={plan.kernel} ARGS="{args}"'
    return f"python {shlex.quote(str(plan.script))} {args}"


def best_table(study: optuna.Study) -> str:
    """Returns the table of the best trials: rank, trial, CV mean ± std, seconds, flags."""
    lines = [f"{'rank':>4}  {'trial':>5}  {'cv (mean ± std)':<15}  {'seconds':>7}  flags"]
    for rank, trial in enumerate(best_trials(study), start=1):
        seconds = trial.user_attrs.get("seconds")
        score = f"{trial.value:.4f} ± {trial.user_attrs.get('cv_std') or 0:.4f}"
        lines.append(f"{rank:>4}  {'#' + str(trial.number):>5}  {score:<15}  "
                     f"{f'{seconds:.0f}' if seconds is not None else '?':>7}  {' '.join(trial.user_attrs['flags'])}")
    return "\n".join(lines) + "\n"


def draw_pictures(study: optuna.Study, plan: StudyPlan) -> list[Path]:
    """Writes the study's pictures beside its database (`<out>/<study>-<name>.png`); returns their paths.

    The importances need two completed trials and the epochs picture one reported epoch; until then they are
    skipped with a line. Each picture is written whole or not at all.
    """
    from matplotlib import pyplot, ticker  # here, not at the top: Optuna's pictures draw through pyplot (slow)
    from optuna.visualization import matplotlib as optuna_pictures  # here too: it imports pyplot

    # A file, not a window: no display is needed, whatever backend the machine's matplotlib would pick.
    pyplot.switch_backend("Agg")
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reported = any(trial.intermediate_values for trial in study.get_trials(deepcopy=False))
    written = []
    for name, (function, x_label, y_label) in PICTURES.items():
        if (name == "importances" and len(completed) < 2) or (name == "epochs" and not reported) or not completed:
            logger.info("tune: no %s picture yet (it needs %s)", name,
                        "two completed trials" if name == "importances" else "a completed trial")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = getattr(optuna_pictures, function)(study)
        if x_label is not None:
            axes.set_xlabel(x_label)
        if name != "importances":  # trials and epochs are counted: no tick at trial 1.5 or epoch 1.2
            axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        if y_label is not None:
            axes.set_ylabel(y_label)
        figure = axes.figure
        figure.set_size_inches(8, 5)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        pyplot.close(figure)
        written.append(files.write_bytes(plan.out_dir / f"{plan.study_name}-{name}.png", buffer.getvalue()))
    return written


def summary_text(result: tune_study.StudyResult, pictures: list[Path]) -> str:
    """Returns what the command prints at its end: the counts, the best trials, the commands, where things are."""
    plan, study = result.plan, result.study
    trials = study.get_trials(deepcopy=False)
    states = {state: sum(trial.state == state for trial in trials) for state in TrialState}
    failed = sum(trial.state == TrialState.FAIL and tune_study.counts(trial) for trial in trials)
    lines = [f"study {plan.study_name} ({plan.storage_url}): {sum(tune_study.counts(t) for t in trials)} of "
             f"{plan.trials} trials: {states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
             f"{failed} failed" + (f", {states[TrialState.RUNNING]} running" if states[TrialState.RUNNING] else "")
             + f"; {len(result.ran)} ran here in {tune_study.format_duration(result.seconds)}"
             + (" (--timeout: the same command goes on)" if result.stopped_by == "timeout" else "")]
    best = best_trials(study)
    if not best:
        lines.append("no trial has completed yet: run the same command again to go on")
    else:
        lines.append(f"best trials (CV accuracy over {plan.folds} folds, seed {plan.seed}; no test split seen):")
        lines.extend(best_table(study).splitlines())
        lines.append(f"the best, #{best[0].number}, as a run: {train_command(plan, best[0])}")
        lines.append(f"the best CV of {states[TrialState.COMPLETE]} completed trials is optimistic (it was picked for "
                     "being the highest); confirm it with a fresh run on another seed, and read its test accuracy:")
        lines.append(f"  {train_command(plan, best[0], seed=plan.seed + 1)}")
    if pictures:
        lines.append("pictures: " + ", ".join(str(path) for path in pictures))
    lines.append(f"trials' runs and logs: {plan.trials_dir} (`python -m src runs --dir {plan.trials_dir}`)")
    lines.append(f"live view: optuna-dashboard {plan.storage_url} (pip install optuna-dashboard; not part of the kit)")
    return "\n".join(lines) + "\n"
