"""Tests of src/blend.py: runs' saved probabilities averaged into a new run (`python -m src blend`)."""

import fcntl

import numpy as np
import pytest

from src import blend, cli, finish, loaders, plots, records, results, runs
from src.errors import KitError


def read_arrays(out_dir, record) -> dict:
    with np.load(out_dir / record["probabilities"]) as saved:
        return {key: saved[key] for key in saved.files}


def test_blend_of_a_run_with_itself_equals_the_run(fake_run, npz_path, tmp_path):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    path = tmp_path / f"{run['run']}.json"
    mix = blend.blend_runs([path, path])

    assert mix["kernel"] == "blend" and mix["run"].startswith("blend-")
    original, blended = read_arrays(tmp_path, run), read_arrays(tmp_path, mix)
    np.testing.assert_allclose(blended["test_probabilities"], original["test_probabilities"], rtol=1e-6)
    np.testing.assert_allclose(blended["oof_probabilities"], original["oof_probabilities"], rtol=1e-6)
    assert (tmp_path / mix["submission"]).read_text() == (tmp_path / run["submission"]).read_text()
    for key in ("cv_mean", "cv_std", "oof_accuracy", "test_accuracy"):
        assert mix[key] == pytest.approx(run[key], abs=1e-6), key
    assert [fold["validation_accuracy"] for fold in mix["folds"]] == pytest.approx(
        [fold["validation_accuracy"] for fold in run["folds"]], abs=1e-6)
    assert mix["blend"] == {"runs": [run["run"], run["run"]], "weights": [0.5, 0.5], "out_of_fold": True}
    # A record of its own, which the runs table lists.
    assert records.read_record(tmp_path / f"{mix['run']}.json")["submission"] == mix["submission"]
    assert mix["run"] in [record["run"] for _, record in records.find_records(tmp_path)]
    assert {name for name in plots.PICTURE_PIXELS if (tmp_path / mix["run"] / name).is_file()} == {
        plots.CONFUSION_OOF, plots.MISTAKES_OOF, plots.CONFUSION_TEST}


def test_blend_weights_average_the_probabilities_and_never_overwrite(fake_run, npz_path, tmp_path):
    first = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    second = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path), "--model", "mlp"])
    paths = [tmp_path / f"{run['run']}.json" for run in (first, second)]
    mix = blend.blend_runs(paths, [3, 1], plots=False)

    a, b, mixed = (read_arrays(tmp_path, record) for record in (first, second, mix))
    for key in ("test_probabilities", "oof_probabilities"):
        assert not np.allclose(a[key], b[key])
        np.testing.assert_allclose(mixed[key], 0.75 * a[key] + 0.25 * b[key], rtol=1e-5)
    (_, y_train), (_, y_test) = loaders.load_npz(npz_path)
    assert mix["oof_accuracy"] == pytest.approx(results.accuracy(mixed["oof_probabilities"], y_train), abs=1e-6)
    assert mix["test_accuracy"] == pytest.approx(results.accuracy(mixed["test_probabilities"], y_test), abs=1e-6)
    assert mix["outputs"]["pictures"] == [] and list((tmp_path / mix["run"]).glob("*.png")) == []

    again = blend.blend_runs(paths, [3, 1], plots=False)
    assert again["run"] != mix["run"]
    assert (tmp_path / again["submission"]).read_text() == (tmp_path / mix["submission"]).read_text()


def test_blend_of_runs_with_different_folds_blends_the_test_split_only(fake_run, npz_path, tmp_path):
    first = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    other_seed = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path), "--seed", "1"])
    mix = blend.blend_runs([tmp_path / f"{run['run']}.json" for run in (first, other_seed)], plots=False)
    arrays = read_arrays(tmp_path, mix)
    assert set(arrays) == {"test_probabilities"}
    assert mix["oof_accuracy"] is None and mix["cv_mean"] is None and mix["folds"] == []
    assert mix["config"]["folds"] is None
    assert mix["test_accuracy"] is not None


def test_blend_with_its_data_gone_writes_the_blend_without_accuracies(fake_run, npz_path, tmp_path):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path / "out")])
    moved = npz_path.rename(tmp_path / "moved.npz")
    path = tmp_path / "out" / f"{run['run']}.json"
    mix = blend.blend_runs([path, path])
    assert mix["oof_accuracy"] is None and mix["test_accuracy"] is None
    assert mix["outputs"]["pictures"] == []
    found_again = blend.blend_runs([path, path], data_path=str(moved))
    assert found_again["oof_accuracy"] == pytest.approx(run["oof_accuracy"], abs=1e-6)


def test_blend_rejects_bad_weights_one_run_and_runs_of_other_data(fake_run, npz_path, competition_dir, tmp_path):
    first = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    other = fake_run(["--no-plots", "--data", str(competition_dir), "--out", str(tmp_path)])
    path, other_path = (tmp_path / f"{run['run']}.json" for run in (first, other))
    cases = [
        (([path, path], [1]), "one weight per run: 2 runs, 1 weights"),
        (([path, path], [1, -1]), "non-negative"),
        (([path, path], [0, 0]), "not all zero"),
        (([path, path], [1, float("nan")]), "finite"),
        (([path], None), "at least two runs"),
        (([path, other_path], None), "different data"),
    ]
    before = sorted(tmp_path.iterdir())
    for (record_paths, weights), message in cases:
        with pytest.raises(KitError, match=message):
            blend.blend_runs(record_paths, weights)
    assert sorted(tmp_path.iterdir()) == before  # nothing half-written


def test_blend_of_a_run_whose_probabilities_are_missing_names_the_file(fake_run, npz_path, tmp_path):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    (tmp_path / run["probabilities"]).unlink()
    with pytest.raises(KitError, match=f"{run['run']}.npz is missing"):
        blend.blend_runs([tmp_path / f"{run['run']}.json"] * 2)


def test_blend_command_prints_the_submission_line(fake_run, npz_path, tmp_path, capsys):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    capsys.readouterr()
    assert cli.main(["blend", run["run"], run["run"], "--dir", str(tmp_path), "--weights", "1", "2",
                     "--no-plots"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"submission: {tmp_path}/blend-") and f"cv_accuracy={run['cv_mean']:.4f}" in last
    assert cli.main(["blend", run["run"], "missing-run", "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: Run not found")


def test_blend_weights_scale_to_one_and_default_to_equal():
    np.testing.assert_allclose(blend.blend_weights(None, 4), [0.25] * 4)
    np.testing.assert_allclose(blend.blend_weights([3, 1], 2), [0.75, 0.25])
    np.testing.assert_allclose(blend.blend_weights([0, 2, 0], 3), [0, 1, 0])
    for weights, message in (([1], "one weight per run: 2 runs, 1 weights"), ([1, -1], "non-negative"),
                             ([0, 0], "not all zero"), ([1, float("inf")], "finite")):
        with pytest.raises(KitError, match=message):
            blend.blend_weights(weights, 2)


def test_blend_ends_through_finish_run_with_its_lock_released_and_a_kernel_runs_record(
        fake_run, npz_path, tmp_path, monkeypatch):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    finished = []
    finish_run = finish.finish_run

    def spy(blend_run, *args, **kwargs):
        finished.append(blend_run)
        return finish_run(blend_run, *args, **kwargs)

    monkeypatch.setattr(finish, "finish_run", spy)
    path = tmp_path / f"{run['run']}.json"
    mix = blend.blend_runs([path, path], plots=False)

    [blend_run] = finished
    assert blend_run.name == mix["run"] and blend_run.workdir == tmp_path / mix["run"]
    with open(blend_run.workdir / runs.LOCK_FILE, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError while it is held
    # The record on disk has every key a kernel run's has (but the kernel's training `distribution`), and `blend`.
    written = records.read_record(tmp_path / f"{mix['run']}.json")
    assert set(written) == set(records.read_record(path)) - {"distribution"} | {"blend"}
    assert set(mix) == set(written) | {"outputs"}
    assert set(mix["outputs"]) == set(run["outputs"])
    assert [set(fold) for fold in written["folds"]] == [set(fold) for fold in run["folds"]]
    assert written["data"] == run["data"]
