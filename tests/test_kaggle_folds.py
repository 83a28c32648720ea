"""Kaggle accelerators, folds pushed as separate kernels, and collecting them, against the fake Kaggle API.

The fold kernels really run here, each as Kaggle runs a bundle (alone, on a copy of the competition), and the
fake API serves what they wrote as their output.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_arrays, write_competition
from src import cli, config, data, kaggle, paths, training
from src.errors import KitError
from test_kaggle import (FAKE_KEY, FAKE_USERNAME, KERNEL, REF, bundle_values, credentials, fake_kaggle,  # noqa: F401
                         kit_dirs, kernel_copy)

NUM_FOLDS = 2
# The flags of every fold kernel and of the local run they are compared with (the bundle adds the fold's own).
TRAIN_ARGS = ["--model", "mlp", "--optimizer", "adam", "--epochs", "2", "--batch-size", "16", "--quiet", "--no-plots"]
RUN_AS_KAGGLE = """
import runpy, sys
sys.argv = ["kernel.py", *sys.argv[1:]]
runpy.run_path("kernel.py", run_name="__main__")
"""


def fold_slug(fold_index: int) -> str:
    return f"digit-kit-{KERNEL}-fold-{fold_index}"


# --- accelerators -----------------------------------------------------------------------------------


@pytest.mark.parametrize("accelerator, expected", [
    ("none", {"enable_gpu": False, "enable_tpu": False}),
    ("gpu", {"enable_gpu": True, "enable_tpu": False, "machine_shape": "NvidiaTeslaT4"}),
    ("tpu", {"enable_gpu": False, "enable_tpu": True, "machine_shape": "TpuV5E8"}),
])
def test_with_accelerator_sets_a_checked_machine(kernel_copy, accelerator, expected):  # noqa: F811
    metadata = kaggle.read_metadata(kernel_copy)
    metadata["machine_shape"] = "NvidiaTeslaT4"

    changed = kaggle.with_accelerator(metadata, accelerator)

    assert {key: changed.get(key) for key in ("enable_gpu", "enable_tpu", "machine_shape")} == \
        {"machine_shape": None, **expected}
    assert kaggle.check_metadata(changed, kernel_copy) == changed
    assert kaggle.with_accelerator(metadata, None) == metadata
    with pytest.raises(KitError, match="choose one of none, gpu, tpu. Received: accelerator='v100'"):
        kaggle.with_accelerator(metadata, "v100")


def test_push_with_an_accelerator_asks_kaggle_for_its_machine(fake_kaggle, capsys):  # noqa: F811
    for accelerator in ("gpu", "tpu", "none"):
        assert cli.main(["push", KERNEL, "--accelerator", accelerator]) == 0
    sent = [(body["enableGpu"], body["enableTpu"], body.get("machineShape"))
            for body in fake_kaggle.received("SaveKernel")]
    assert sent == [(True, False, "NvidiaTeslaT4"), (False, True, "TpuV5E8"), (False, False, None)]
    assert f"pushed {REF} version 3" in capsys.readouterr().out


# --- push-folds -------------------------------------------------------------------------------------


def test_push_folds_pushes_one_kernel_per_fold_that_carries_its_index(fake_kaggle, kit_dirs, capsys):  # noqa: F811
    assert cli.main(["push-folds", KERNEL, "--folds", "3", "--accelerator", "gpu"]) == 0

    pushed = fake_kaggle.received("SaveKernel")
    assert [body["slug"] for body in pushed] == [f"{FAKE_USERNAME}/{fold_slug(index)}" for index in range(3)]
    assert [body["newTitle"] for body in pushed] == [f"digit-kit {KERNEL} fold {index}" for index in range(3)]
    assert all(body["enableGpu"] and body.get("machineShape") == "NvidiaTeslaT4" for body in pushed)
    for index, body in enumerate(pushed):
        values, _ = bundle_values(body["text"])
        assert values["arguments"] == ["--folds", "3", "--fold-index", str(index)]
        assert body["text"] == (kit_dirs[0] / f"{KERNEL}-fold-{index}" / kaggle.BUNDLE_CODE_FILE).read_text()
        assert FAKE_KEY not in body["text"]
    out = capsys.readouterr().out
    assert f"pushed {FAKE_USERNAME}/{fold_slug(2)} version 1" in out
    assert f"`make collect KERNEL={KERNEL}` blends them" in out


def test_push_folds_needs_two_folds_or_more(fake_kaggle):  # noqa: F811
    with pytest.raises(KitError, match="folds must be an integer from 2 to 50. Received: folds=1"):
        kaggle.push_folds(KERNEL, 1)
    assert fake_kaggle.received("SaveKernel") == []


def test_cross_validate_with_fold_index_trains_only_that_fold(sample_arrays):
    (x_train, y_train), (x_test, y_test) = sample_arrays
    dataset = data.Dataset(x_train, y_train, x_test, y_test, source=None, kind="npz")
    run = config.RunConfig(kernel="t", model="mlp", optimizer="adam", epochs=1, folds=3, fold_index=1, quiet=True,
                           strategy="none")

    result = training.cross_validate(dataset, run, data_format="channels_last")

    assert [fold.fold_index for fold in result.folds] == [1]
    np.testing.assert_array_equal(result.folds[0].validation_indices, training.fold_splits(y_train, 3, 0)[1][1])
    # One fold of three holds out a third of the rows: there are no out-of-fold predictions of every row.
    assert result.oof_probabilities is None and result.oof_accuracy is None
    assert result.cv_mean == result.folds[0].validation_accuracy


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
                   if name not in ("PYTHONPATH", "PYTHONHOME", "TF_CONFIG") and not name.startswith("KAGGLE_")}
    environment.update({paths.KAGGLE_INPUT_ENV: str(root / "kaggle-input"), "TF_CPP_MIN_LOG_LEVEL": "3"})
    runs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAGGLE_USERNAME", FAKE_USERNAME)
        patch.setattr(paths, "KERNEL_BUNDLES_DIR", root / "build")
        for fold_index in range(NUM_FOLDS):
            bundle = kaggle.bundle(KERNEL, fold=(fold_index, NUM_FOLDS))
            working = root / f"working-{fold_index}"
            working.mkdir()
            runs.append((working, subprocess.Popen(
                [sys.executable, "-c", RUN_AS_KAGGLE, *TRAIN_ARGS], cwd=bundle, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, env={**environment, paths.KAGGLE_WORKING_ENV: str(working)})))
    outputs = {}
    for fold_index, (working, process) in enumerate(runs):
        log, _ = process.communicate(timeout=300)
        assert process.returncode == 0, log[-3000:]
        assert f"with --folds {NUM_FOLDS} --fold-index {fold_index}:" in log
        outputs[fold_slug(fold_index)] = {path.relative_to(working).as_posix(): path.read_bytes()
                                          for path in working.rglob("*") if path.is_file()}
    return competition, outputs


def test_each_fold_kernel_trains_its_fold_and_writes_a_submission(fold_outputs):
    competition, outputs = fold_outputs
    for fold_index in range(NUM_FOLDS):
        files = outputs[fold_slug(fold_index)]
        assert paths.KAGGLE_SUBMISSION_NAME in files
        record = json.loads(next(content for name, content in files.items() if name.endswith(".json")
                                 and "/" not in name))
        assert (record["config"]["folds"], record["config"]["fold_index"]) == (NUM_FOLDS, fold_index)
        assert [fold["fold"] for fold in record["folds"]] == [fold_index]
        assert f"{record['run']}/fold-{fold_index}.npz" in files
        assert record["distribution"]["replicas"] == 1


def test_collect_blends_the_folds_exactly_as_a_local_k_fold_run(
        fake_kaggle, fold_outputs, tmp_path, kit_dirs, capsys):  # noqa: F811
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
    # The kit's own ensemble of the very fold files the kernels saved...
    dataset = data.load_dataset(competition)
    folds = [training._load_fold(next((kit_dirs[1] / f"{KERNEL}-folds" / f"fold-{index}").rglob(f"fold-{index}.npz")))
             for index in range(NUM_FOLDS)]
    expected = training.ensemble(folds, dataset)
    np.testing.assert_array_equal(collected["test_probabilities"], expected.test_probabilities)
    np.testing.assert_array_equal(collected["oof_probabilities"], expected.oof_probabilities)
    # ...and what one local run of every fold writes, with the same flags: the same numbers.
    local = cli.run_kernel(cli.parse_kernel_args(
        [*TRAIN_ARGS, "--folds", str(NUM_FOLDS), "--data", str(competition), "--out", str(tmp_path / "local")],
        KERNEL))
    local_probabilities = np.load(local["outputs"]["probabilities"])
    np.testing.assert_allclose(collected["test_probabilities"], local_probabilities["test_probabilities"], atol=1e-6)
    np.testing.assert_allclose(collected["oof_probabilities"], local_probabilities["oof_probabilities"], atol=1e-6)
    assert (record["cv_mean"], record["oof_accuracy"]) == (local["cv_mean"], local["oof_accuracy"])
    assert (out / record["submission"]).read_text() == Path(local["outputs"]["submission"]).read_text()


def test_collect_waits_for_every_fold_to_finish(fake_kaggle, fold_outputs, tmp_path):  # noqa: F811
    fake_kaggle.kernel_outputs_by_slug = fold_outputs[1]
    fake_kaggle.kernel_statuses = {fold_slug(1): "RUNNING"}

    with pytest.raises(KitError, match=f"has not finished every fold of {KERNEL}: fold 1 running; wait"):
        kaggle.collect(KERNEL, data_path=str(fold_outputs[0]), out_dir=tmp_path / "blend")
    fake_kaggle.kernel_statuses = {fold_slug(0): "ERROR"}
    with pytest.raises(KitError, match="fold 0 error"):
        kaggle.collect(KERNEL, data_path=str(fold_outputs[0]), out_dir=tmp_path / "blend")
    assert not (tmp_path / "blend").exists()


def test_collect_refuses_folds_of_different_runs_or_data(fake_kaggle, fold_outputs, tmp_path):  # noqa: F811
    competition, outputs = fold_outputs
    changed = {slug: dict(files) for slug, files in outputs.items()}
    other = changed[fold_slug(1)]
    name = next(name for name in other if name.endswith(".json") and "/" not in name)
    record = json.loads(other[name])
    record["config"]["epochs"] = 7
    other[name] = json.dumps(record).encode()
    fake_kaggle.kernel_outputs_by_slug = changed

    with pytest.raises(KitError, match="Fold 1 .* ran with epochs=7 but fold 0 with epochs=2"):
        kaggle.collect(KERNEL, data_path=str(competition), out_dir=tmp_path / "blend")

    fake_kaggle.kernel_outputs_by_slug = outputs
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class=12, test_rows=30, seed=1)
    elsewhere = data.write_npz(tmp_path / "other.npz", x_train, y_train, x_test, y_test)
    with pytest.raises(KitError, match="collect needs the same data"):
        kaggle.collect(KERNEL, data_path=str(elsewhere), out_dir=tmp_path / "blend")
    assert not (tmp_path / "blend").exists()


def test_collect_of_a_kernel_without_fold_outputs_names_push_folds(fake_kaggle, tmp_path):  # noqa: F811
    fake_kaggle.kernel_outputs_by_slug = {fold_slug(0): {"submission.csv": b"ImageId,Label\n1,1\n"}}

    with pytest.raises(KitError, match=f"holds no run record of fold 0.*make push-folds KERNEL={KERNEL}"):
        kaggle.collect(KERNEL, out_dir=tmp_path / "blend")


def test_collect_of_folds_never_pushed_says_to_push_them(fake_kaggle, tmp_path):  # noqa: F811
    fake_kaggle.fail("GetKernelSessionStatus", 404)

    with pytest.raises(KitError, match=f"no kernel {FAKE_USERNAME}/{fold_slug(0)}.*`make push-folds KERNEL={KERNEL}`"):
        kaggle.collect(KERNEL, out_dir=tmp_path / "blend")


@pytest.mark.skipif(Path(sys.prefix).resolve() != (paths.REPO_ROOT / ".venv").resolve(),
                    reason="make uses the repository's .venv; run the suite from it (make test)")
def test_make_passes_folds_and_accelerator_on():
    def dry_run(*arguments: str) -> str:
        completed = subprocess.run(["make", "--no-print-directory", "-n", *arguments], cwd=paths.REPO_ROOT,
                                   capture_output=True, text=True, timeout=60)
        assert completed.returncode == 0, completed.stderr
        return completed.stdout

    assert "-m src push-folds kernels/mnist-cnn --folds 3 --accelerator tpu" in \
        dry_run("push-folds", "KERNEL=mnist-cnn", "FOLDS=3", "ACCELERATOR=tpu")
    assert "-m src push kernels/mnist-cnn --accelerator gpu" in dry_run("push", "KERNEL=mnist-cnn", "ACCELERATOR=gpu")
    assert "-m src collect kernels/mnist-cnn" in dry_run("collect", "KERNEL=mnist-cnn")
