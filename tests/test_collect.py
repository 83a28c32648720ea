"""src.collect: blending folds run as separate Kaggle kernels exactly as a local k-fold run blends its own.

The slow tests run the fold kernels for real, each as Kaggle runs a bundle (alone, on a copy of the competition),
and the fake Kaggle API serves what they wrote as their output to the real kaggle CLI. The fast ones run the
folds in this process with training faked (conftest's `fake_run`) and answer the kit's Kaggle calls from their
folders.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_arrays, run_kernel, write_competition
from kaggle_fixtures import FAKE_USERNAME, KERNEL
from src import cli, collect, data, folds, paths, results, sample
from src.errors import KitError
from src.kaggle import bundle, kernels, watch

pytest_plugins = ["kaggle_fixtures"]

NUM_FOLDS = 2
# The flags of every fold kernel and of the local run they are compared with (the bundle adds the fold's own).
TRAIN_ARGS = ["--model", "mlp", "--optimizer", "adam", "--epochs", "2", "--batch-size", "16", "--quiet"]
RUN_AS_KAGGLE = """
import runpy, sys
sys.argv = ["kernel.py", *sys.argv[1:]]
runpy.run_path("kernel.py", run_name="__main__")
"""


def fold_slug(fold_index: int) -> str:
    return f"digit-kit-{KERNEL}-fold-{fold_index}"


def record_of(files: dict[str, bytes]) -> tuple[str, dict]:
    """Returns the name and content of the run record among a fold kernel's output files."""
    name = next(name for name in files if name.endswith(".json") and "/" not in name)
    return name, json.loads(files[name])


# --- one fold of a run ------------------------------------------------------------------------------


def test_fold_index_trains_only_that_fold(fake_run, sample_npz, tmp_path):
    record = fake_run(["--fold-index", "1", "--data", str(sample_npz), "--out", str(tmp_path / "out"), "--no-plots"])

    assert [fold["fold"] for fold in record["folds"]] == [1]
    assert (record["config"]["folds"], record["config"]["fold_index"]) == (3, 1)
    saved = results.load_fold(folds.fold_file(tmp_path / "out" / record["run"], 1))
    y_train = data.load_dataset(str(sample_npz)).y_train
    splits = folds.fold_splits(y_train, 3, record["config"]["seed"])
    np.testing.assert_array_equal(saved.validation_indices, splits[1][1])
    # One fold of three holds out a third of the rows: there are no out-of-fold predictions of every row.
    assert record["oof_accuracy"] is None and "oof_probabilities" not in np.load(record["outputs"]["probabilities"])
    assert record["cv_mean"] == record["folds"][0]["validation_accuracy"]


# --- collect, with the Kaggle calls answered in this process ---------------------------------------


@pytest.fixture
def folds_run_apart(fake_run, credentials, kit_dirs, monkeypatch, tmp_path):
    """Runs each fold of mnist-cnn as a fold kernel would (`--fold-index i`, training faked) and answers collect's
    Kaggle calls (status, output) from their folders.

    Returns:
        `(competition folder, {fold kernel slug: output folder}, {fold kernel slug: status})`; change the last
        two to play unfinished or mismatched folds.
    """
    (x_train, y_train), (x_test, _) = make_arrays(train_per_class=12, test_rows=30)
    competition = write_competition(tmp_path / "competition" / paths.COMPETITION, x_train, y_train, x_test)
    outputs, statuses = {}, {}
    for fold_index in range(NUM_FOLDS):
        working = tmp_path / f"working-{fold_index}"
        fake_run(["--folds", str(NUM_FOLDS), "--fold-index", str(fold_index), "--data", str(competition),
                  "--out", str(working), "--no-plots"])
        outputs[fold_slug(fold_index)] = working

    def status_of(ref, name, push_command=None):
        return kernels.KernelStatus(ref=ref, status=statuses.get(ref.split("/")[1], "complete"))

    def download_output_of(ref, target, name, push_command=None):
        shutil.copytree(outputs[ref.split("/")[1]], target, dirs_exist_ok=True)
        return target

    monkeypatch.setattr(kernels, "status_of", status_of)
    monkeypatch.setattr(kernels, "download_output_of", download_output_of)
    return competition, outputs, statuses


def test_collect_blends_folds_run_apart_as_one_local_run(folds_run_apart, fake_run, tmp_path):
    competition, outputs, _ = folds_run_apart

    record = collect.collect(KERNEL, data_path=str(competition), out_dir=tmp_path / "blend")

    collected = np.load(record["outputs"]["probabilities"])
    # The folds' own files, read with numpy alone: the mean of their test probabilities, their held-out rows.
    saved = [np.load(next(outputs[fold_slug(index)].glob(f"*/fold-{index}.npz"))) for index in range(NUM_FOLDS)]
    np.testing.assert_allclose(collected["test_probabilities"],
                               sum(fold["test_probabilities"] for fold in saved) / NUM_FOLDS, rtol=0, atol=1e-7)
    for fold in saved:
        np.testing.assert_array_equal(collected["oof_probabilities"][fold["validation_indices"]],
                                      fold["validation_probabilities"])
    local = fake_run(["--folds", str(NUM_FOLDS), "--data", str(competition), "--out", str(tmp_path / "local"),
                      "--no-plots"])
    expected = np.load(local["outputs"]["probabilities"])
    np.testing.assert_array_equal(collected["test_probabilities"], expected["test_probabilities"])
    np.testing.assert_array_equal(collected["oof_probabilities"], expected["oof_probabilities"])
    assert (record["cv_mean"], record["oof_accuracy"]) == (local["cv_mean"], local["oof_accuracy"])
    assert Path(record["outputs"]["submission"]).read_text() == Path(local["outputs"]["submission"]).read_text()
    assert record["config"]["fold_index"] is None and record["config"]["folds"] == NUM_FOLDS
    assert [source["kernel"] for source in record["collected_from"]] == \
        [f"{FAKE_USERNAME}/{fold_slug(index)}" for index in range(NUM_FOLDS)]


def test_collect_of_unfinished_or_mismatched_folds_writes_nothing(folds_run_apart, tmp_path):
    competition, outputs, statuses = folds_run_apart
    statuses[fold_slug(1)] = "running"
    with pytest.raises(KitError, match=f"has not finished every fold of {KERNEL}: fold 1 running; wait"):
        collect.collect(KERNEL, data_path=str(competition), out_dir=tmp_path / "blend")

    statuses.clear()
    path = next(outputs[fold_slug(1)].glob("*.json"))
    changed = json.loads(path.read_text())
    changed["config"]["epochs"] = 7
    path.write_text(json.dumps(changed))
    with pytest.raises(KitError, match="Fold 1 .* ran with epochs=7 but fold 0 with epochs=2"):
        collect.collect(KERNEL, data_path=str(competition), out_dir=tmp_path / "blend")
    assert not (tmp_path / "blend").exists()


def test_watch_folds_waits_for_every_fold_then_collects_them(folds_run_apart, monkeypatch, tmp_path, caplog):
    competition, _, _ = folds_run_apart
    script = {fold_slug(0): ["running", "complete"], fold_slug(1): ["queued", "running", "running", "complete"]}

    def status_of(ref, name, push_command=None):
        states = script[ref.split("/")[1]]
        return kernels.KernelStatus(ref=ref, status=states.pop(0) if len(states) > 1 else states[0])

    monkeypatch.setattr(kernels, "status_of", status_of)
    pauses = []
    pace = watch.Pace(clock=lambda: sum(pauses), sleep=pauses.append)
    with caplog.at_level(logging.INFO, logger="src"):
        record = collect.watch_folds(KERNEL, NUM_FOLDS, data_path=str(competition), out_dir=tmp_path / "blend",
                                     pace=pace)

    lines = [entry.getMessage() for entry in caplog.records]
    assert f"{FAKE_USERNAME}/{fold_slug(1)}: complete (0m20s)" in lines
    assert record["config"]["folds"] == NUM_FOLDS and record["submitted"] is None
    assert Path(record["outputs"]["submission"]).parent == tmp_path / "blend"
    assert record["leaks"] == {"test_in_train": 0, "test_rows": 30, "train_duplicates": 0, "duplicates_across_folds": 0}


def test_watch_folds_of_a_failed_fold_says_why_and_collects_nothing(folds_run_apart, monkeypatch, tmp_path):
    competition, _, statuses = folds_run_apart
    statuses[fold_slug(1)] = "error"
    monkeypatch.setattr(kernels, "log_tail", lambda ref, name: ["Traceback", "MemoryError"])
    with pytest.raises(KitError, match=f"Kaggle's run of {FAKE_USERNAME}/{fold_slug(1)} ended in error"):
        collect.watch_folds(KERNEL, NUM_FOLDS, data_path=str(competition), out_dir=tmp_path / "blend",
                            pace=watch.Pace(clock=lambda: 0.0, sleep=lambda seconds: None))


# What a fold kernel's output may hold instead of what the kit wrote, and the line collect answers.
RECORD_CHANGES = [
    # Fields of a downloaded record pass the checks their flags passed (1 to 50 folds, ...) before they are used.
    (0, lambda record: record["config"].update(folds=10**9),
     r"fold 0 .* holds settings the kit refuses: folds must be an integer from 1 to 50. Received: folds=1000000000"),
    (0, lambda record: record["config"].update(folds=0), "folds must be an integer from 1 to 50. Received: folds=0"),
    (1, lambda record: record["config"].update(learning_rate="fast"), "fold 1 .* holds settings of the wrong type"),
    (1, lambda record: record["config"].update(optimizer="sgd"), r"Unknown optimizer.*Received: optimizer='sgd'"),
    (0, lambda record: record["config"].pop("kernel"), "fold 0 .* holds settings of the wrong type"),
    (1, lambda record: record.update(data=None), r"fold 1 .* names no data sha256"),
    # A record damaged in its types is no record: the fold kernel's output holds none.
    (0, lambda record: record["config"].update(folds="2"), "holds no run record of fold 0"),
    (1, lambda record: record.update(run="../../elsewhere"), "holds no run record of fold 1"),
]
INDEX_CHANGES = [
    lambda indices: indices + 1,  # other rows
    lambda indices: -indices - 1,  # negative indices, which numpy would count from the end
    lambda indices: indices[:-1],  # a row fewer
]


def test_collect_refuses_downloaded_fields_that_fail_the_flags_checks_or_the_split(folds_run_apart, tmp_path):
    competition, outputs, _ = folds_run_apart
    pristine = {slug: shutil.copytree(folder, tmp_path / "pristine" / slug) for slug, folder in outputs.items()}

    def restore():
        for slug, folder in outputs.items():
            shutil.rmtree(folder)
            shutil.copytree(pristine[slug], folder)

    for fold_index, change, message in RECORD_CHANGES:
        restore()
        path = next(outputs[fold_slug(fold_index)].glob("*.json"))
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))
        with pytest.raises(KitError, match=message) as raised:
            collect.collect(KERNEL, data_path=str(competition), out_dir=tmp_path / "blend")
        assert "\n" not in str(raised.value)
    for change in INDEX_CHANGES:
        restore()
        fold_file = next(outputs[fold_slug(1)].rglob("fold-1.npz"))
        with np.load(fold_file) as saved:
            arrays = dict(saved)
        arrays["validation_indices"] = change(arrays["validation_indices"])
        arrays["validation_probabilities"] = arrays["validation_probabilities"][:len(arrays["validation_indices"])]
        np.savez(fold_file, **arrays)
        with pytest.raises(KitError, match="fold-1.npz holds out other training rows than fold 1 of --folds 2 "
                                           "--seed 0"):
            collect.collect(KERNEL, data_path=str(competition), out_dir=tmp_path / "blend")
    assert not (tmp_path / "blend").exists()


# --- the folds, run as Kaggle runs them -------------------------------------------------------------


@pytest.fixture(scope="module")
def fold_outputs(tmp_path_factory):
    """Bundles each fold kernel, runs them side by side as Kaggle would, and returns what each wrote.

    Returns:
        `(competition folder, {fold kernel slug: {relative path: bytes}})`.
    """
    root = tmp_path_factory.mktemp("folds")
    (x_train, y_train), (x_test, _) = make_arrays(train_per_class=12, test_rows=30)
    competition = write_competition(root / "kaggle-input" / paths.COMPETITION, x_train, y_train, x_test)
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("PYTHONPATH", "PYTHONHOME", "TF_CONFIG", paths.LOGS_ENV)
                   and not name.startswith("KAGGLE_")}
    environment.update({paths.KAGGLE_INPUT_ENV: str(root / "kaggle-input"), "TF_CPP_MIN_LOG_LEVEL": "3"})
    runs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAGGLE_USERNAME", FAKE_USERNAME)
        patch.setenv("KAGGLE_CONFIG_DIR", str(root / "kaggle-config"))
        patch.setattr(paths, "KERNEL_BUNDLES_DIR", root / "build")
        for fold_index in range(NUM_FOLDS):
            folder = bundle.bundle(KERNEL, fold=(fold_index, NUM_FOLDS))
            working = root / f"working-{fold_index}"
            working.mkdir()
            runs.append((working, subprocess.Popen(
                [sys.executable, "-c", RUN_AS_KAGGLE, *TRAIN_ARGS], cwd=folder, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, env={**environment, paths.KAGGLE_WORKING_ENV: str(working)})))
    outputs = {}
    for fold_index, (working, process) in enumerate(runs):
        log, _ = process.communicate(timeout=300)
        assert process.returncode == 0, log[-3000:]
        assert f"with --folds {NUM_FOLDS} --fold-index {fold_index}:" in log
        outputs[fold_slug(fold_index)] = {path.relative_to(working).as_posix(): path.read_bytes()
                                          for path in working.rglob("*") if path.is_file()}
    return competition, outputs


@pytest.mark.slow
def test_each_fold_kernel_trains_its_fold_and_writes_a_submission(fold_outputs):
    competition, outputs = fold_outputs
    for fold_index in range(NUM_FOLDS):
        files = outputs[fold_slug(fold_index)]
        assert paths.KAGGLE_SUBMISSION_NAME in files
        _, record = record_of(files)
        assert (record["config"]["folds"], record["config"]["fold_index"]) == (NUM_FOLDS, fold_index)
        assert [fold["fold"] for fold in record["folds"]] == [fold_index]
        assert f"{record['run']}/fold-{fold_index}.npz" in files
        assert record["distribution"]["replicas"] == 1


@pytest.mark.slow
def test_collect_blends_the_folds_exactly_as_a_local_k_fold_run(fake_kaggle, fold_outputs, tmp_path, kit_dirs,
                                                                capsys):
    competition, outputs = fold_outputs
    fake_kaggle.kernel_outputs_by_slug = outputs
    out = tmp_path / "blend"

    assert cli.main(["collect", KERNEL, "--data", str(competition), "--out", str(out)]) == 0

    assert "submission: " in capsys.readouterr().out
    record = json.loads(next(out.glob("*.json")).read_text())
    collected = np.load(out / record["probabilities"])
    assert record["config"]["fold_index"] is None and record["config"]["folds"] == NUM_FOLDS
    assert [source["kernel"] for source in record["collected_from"]] == \
        [f"{FAKE_USERNAME}/{fold_slug(index)}" for index in range(NUM_FOLDS)]
    # The very fold files the kernels saved, read here with numpy alone: the test probabilities are the mean of
    # the folds', and each training row's out-of-fold probabilities are those of the fold that held it out...
    saved = [np.load(next((kit_dirs[1] / f"{KERNEL}-folds" / f"fold-{index}").rglob(f"fold-{index}.npz")))
             for index in range(NUM_FOLDS)]
    np.testing.assert_allclose(collected["test_probabilities"],
                               sum(fold["test_probabilities"] for fold in saved) / NUM_FOLDS, rtol=0, atol=1e-7)
    held_out = np.concatenate([fold["validation_indices"] for fold in saved])
    assert sorted(held_out.tolist()) == list(range(len(collected["oof_probabilities"])))  # every row, once
    for fold in saved:
        np.testing.assert_array_equal(collected["oof_probabilities"][fold["validation_indices"]],
                                      fold["validation_probabilities"])
    # ...and what one local run of every fold writes, with the same flags: the same numbers and pictures.
    local = run_kernel(KERNEL, [*TRAIN_ARGS, "--folds", str(NUM_FOLDS), "--data", str(competition),
                                "--out", str(tmp_path / "local")])
    local_probabilities = np.load(local["outputs"]["probabilities"])
    np.testing.assert_allclose(collected["test_probabilities"], local_probabilities["test_probabilities"], atol=1e-6)
    np.testing.assert_allclose(collected["oof_probabilities"], local_probabilities["oof_probabilities"], atol=1e-6)
    assert (record["cv_mean"], record["oof_accuracy"]) == (local["cv_mean"], local["oof_accuracy"])
    assert (out / record["submission"]).read_text() == Path(local["outputs"]["submission"]).read_text()
    pictures = sorted(path.name for path in (out / record["run"]).glob("*.png"))
    assert pictures and pictures == sorted(Path(path).name for path in local["outputs"]["pictures"])


@pytest.mark.slow
def test_collect_waits_for_every_fold_to_finish(fake_kaggle, fold_outputs, tmp_path):
    fake_kaggle.kernel_outputs_by_slug = fold_outputs[1]
    fake_kaggle.kernel_statuses = {fold_slug(1): "RUNNING"}

    with pytest.raises(KitError, match=f"has not finished every fold of {KERNEL}: fold 1 running; wait"):
        collect.collect(KERNEL, data_path=str(fold_outputs[0]), out_dir=tmp_path / "blend")
    fake_kaggle.kernel_statuses = {fold_slug(0): "ERROR"}
    with pytest.raises(KitError, match="fold 0 error"):
        collect.collect(KERNEL, data_path=str(fold_outputs[0]), out_dir=tmp_path / "blend")
    assert not (tmp_path / "blend").exists()


@pytest.mark.slow
def test_collect_refuses_folds_of_different_runs_or_data(fake_kaggle, fold_outputs, tmp_path):
    competition, outputs = fold_outputs
    changed = {slug: dict(files) for slug, files in outputs.items()}
    other = changed[fold_slug(1)]
    name, record = record_of(other)
    record["config"]["epochs"] = 7
    other[name] = json.dumps(record).encode()
    fake_kaggle.kernel_outputs_by_slug = changed

    with pytest.raises(KitError, match="Fold 1 .* ran with epochs=7 but fold 0 with epochs=2"):
        collect.collect(KERNEL, data_path=str(competition), out_dir=tmp_path / "blend")

    fake_kaggle.kernel_outputs_by_slug = outputs
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class=12, test_rows=30, seed=1)
    elsewhere = sample.write_npz(tmp_path / "other.npz", x_train, y_train, x_test, y_test)
    with pytest.raises(KitError, match="collect needs the same data"):
        collect.collect(KERNEL, data_path=str(elsewhere), out_dir=tmp_path / "blend")
    assert not (tmp_path / "blend").exists()


@pytest.mark.slow
def test_collect_of_a_kernel_without_fold_outputs_names_push_folds(fake_kaggle, tmp_path):
    fake_kaggle.kernel_outputs_by_slug = {fold_slug(0): {"submission.csv": b"ImageId,Label\n1,1\n"}}

    with pytest.raises(KitError, match=f"holds no run record of fold 0.*make push-folds KERNEL={KERNEL}"):
        collect.collect(KERNEL, out_dir=tmp_path / "blend")


@pytest.mark.slow
def test_collect_of_folds_never_pushed_says_to_push_them(fake_kaggle, tmp_path):
    fake_kaggle.fail("GetKernelSessionStatus", 404)

    with pytest.raises(KitError, match=f"no kernel {FAKE_USERNAME}/{fold_slug(0)}.*`make push-folds KERNEL={KERNEL}`"):
        collect.collect(KERNEL, out_dir=tmp_path / "blend")


@pytest.mark.skipif(Path(sys.prefix).resolve() != (paths.REPO_ROOT / ".venv").resolve(),
                    reason="make uses the repository's .venv; run the suite from it (make test)")
def test_make_collect_passes_the_kernel_on():
    completed = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "collect",
                                "KERNEL=mnist-cnn"], cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "-m src collect kernels/mnist-cnn" in completed.stdout
