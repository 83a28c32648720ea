"""Tests of src.tune.summary: the best trials' table, the commands that reproduce and confirm the best, and the
pictures, on a study made of recorded trials (no training)."""

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from src import paths
from src.tune import plan as tune_plan
from src.tune import space, summary
from src.tune import study as tune_study


def plan(tmp_path, kernel_dir=paths.KERNELS_DIR / "mnist-fast", data="input/mnist.npz"):
    return tune_plan.StudyPlan(kernel_dir=kernel_dir, trials=4, folds=3, seed=7,
                               space=space.Space(tmp_path / "space.yaml", ()), data=data, data_sha256="0" * 64,
                               out_dir=tmp_path, storage_url="sqlite:///x.db", study_name="mnist-fast")


def recorded_study():
    study = optuna.create_study(direction="maximize")
    distributions = {"learning-rate": FloatDistribution(1e-4, 1e-2, log=True),
                     "batch-size": CategoricalDistribution([64, 128])}
    for number, (value, rate, batch) in enumerate([(0.97, 0.001, 64), (0.99, 0.003, 128), (0.98, 0.0005, 64)]):
        study.add_trial(optuna.create_trial(
            value=value, params={"learning-rate": rate, "batch-size": batch}, distributions=distributions,
            intermediate_values={1: value - 0.05, 2: value},
            user_attrs={"flags": ["--learning-rate", f"{rate:.4g}", "--batch-size", str(batch)], "cv_std": 0.001,
                        "seconds": 10.0 + number}))
    study.add_trial(optuna.create_trial(state=TrialState.PRUNED, params={"learning-rate": 0.01, "batch-size": 64},
                                        distributions=distributions, intermediate_values={1: 0.5}))
    return study


def test_the_table_lists_the_completed_trials_best_first(tmp_path):
    table = summary.best_table(recorded_study()).splitlines()
    assert table[0].split() == ["rank", "trial", "cv", "(mean", "±", "std)", "seconds", "flags"]
    assert [line.split()[1] for line in table[1:]] == ["#1", "#2", "#0"]
    assert table[1].split()[2:] == ["0.9900", "±", "0.0010", "11", "--learning-rate", "0.003", "--batch-size", "128"]


def test_the_commands_train_the_best_flags_with_the_studys_data_folds_and_seed(tmp_path):
    best = summary.best_trials(recorded_study())[0]
    assert summary.train_command(plan(tmp_path), best) == ('make train KERNEL=mnist-fast ARGS="--data input/mnist.npz '
                                                           '--folds 3 --seed 7 --learning-rate 0.003 --batch-size 128"')
    assert "--seed 8 " in summary.train_command(plan(tmp_path), best, seed=8)
    elsewhere = summary.train_command(plan(tmp_path, kernel_dir=tmp_path / "mine", data=None), best)
    assert elsewhere == f"python {tmp_path / 'mine' / 'kernel.py'} --folds 3 --seed 7 --learning-rate 0.003 " \
                        "--batch-size 128"


def test_the_pictures_are_written_beside_the_database(tmp_path):
    pictures = summary.draw_pictures(recorded_study(), plan(tmp_path))
    assert [path.name for path in pictures] == ["mnist-fast-history.png", "mnist-fast-importances.png",
                                                "mnist-fast-epochs.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in pictures)


def test_the_pictures_of_trials_and_epochs_tick_whole_numbers_only(tmp_path, monkeypatch):
    from matplotlib import pyplot

    closed = []
    monkeypatch.setattr(pyplot, "close", lambda figure: closed.append(figure))
    summary.draw_pictures(recorded_study(), plan(tmp_path))
    history, _, epochs = (figure.axes[0] for figure in closed)
    for axes in (history, epochs):
        assert all(float(tick).is_integer() for tick in axes.get_xticks()), axes.get_xlabel()
    assert epochs.get_xlabel() == "epoch of fold 1"


def test_a_study_without_a_completed_trial_draws_nothing_and_says_so(tmp_path):
    empty = optuna.create_study(direction="maximize")
    assert summary.draw_pictures(empty, plan(tmp_path)) == []
    text = summary.summary_text(tune_study.StudyResult(plan(tmp_path), empty), [])
    assert "no trial has completed yet" in text and "make train" not in text
