"""Tests of src.restore (`--restore PATH`): what a path restores, weights that do not fit, and restored runs."""

import numpy as np
import pytest

from conftest import run_kernel, train_fold
from src import config, fitting, layout, models, restore
from src.errors import KitError


def submission_labels(record):
    return np.loadtxt(record["outputs"]["submission"], delimiter=",", skiprows=1, dtype=int)[:, 1]


def test_restorable_models_finds_checkpoints_and_refuses_other_folders(tmp_path):
    train_fold("custom", epochs=2, fold_dir=tmp_path / "run" / "fold-0", model_name="mlp")
    train_fold("fit", epochs=1, fold_dir=tmp_path / "run" / "fold-1", model_name="mlp")

    assert restore.restorable_models(tmp_path / "run") == [
        tmp_path / "run" / "fold-0" / fitting.CHECKPOINT_DIR / "ckpt-2",
        tmp_path / "run" / "fold-1" / fitting.MODEL_FILE,
    ]
    assert restore.restorable_models(tmp_path / "run" / "fold-1" / fitting.MODEL_FILE) == [
        tmp_path / "run" / "fold-1" / fitting.MODEL_FILE]
    (tmp_path / "empty").mkdir()
    with pytest.raises(KitError, match="Nothing to restore"):
        restore.restorable_models(tmp_path / "empty")


@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_restore_weights_names_the_model_a_save_does_not_fit(loop, tmp_path):
    train_fold(loop, epochs=1, fold_dir=tmp_path, model_name="mlp")
    [saved] = restore.restorable_models(tmp_path)
    other = models.build_model("tfwiki_cnn", layout.input_shape("channels_last"))

    with pytest.raises(KitError, match="the model tfwiki_cnn .*pass the --model it was trained with"):
        restore.restore_weights(other, saved, "tfwiki_cnn")


@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_restore_weights_loads_what_was_saved(loop, tmp_path):
    trained, _ = train_fold(loop, epochs=1, fold_dir=tmp_path, model_name="mlp")
    [saved] = restore.restorable_models(tmp_path)
    fresh = models.build_model("mlp", layout.input_shape("channels_last"))

    restore.restore_weights(fresh, saved, "mlp")

    for left, right in zip(trained.trainable_variables, fresh.trainable_variables):
        np.testing.assert_array_equal(left.numpy(), right.numpy())


def test_restore_of_a_truncated_model_file_is_one_line(tmp_path):
    train_fold("fit", epochs=1, fold_dir=tmp_path, model_name="mlp")
    saved = tmp_path / fitting.MODEL_FILE
    content = saved.read_bytes()
    saved.write_bytes(content[: len(content) // 2])  # what a kill during Keras' own in-place save leaves
    fresh = models.build_model("mlp", layout.input_shape("channels_last"))

    with pytest.raises(KitError) as raised:
        restore.restore_weights(fresh, saved, "mlp")
    assert str(raised.value) == (f"Cannot read {saved}: it is not a complete .keras file (cut short, or not a Keras "
                                 "model); restore another model or checkpoint, or train the fold again.")


@pytest.mark.slow
@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_kernel_restore_gives_the_labels_of_the_saved_models(loop, sample_npz, tmp_path):
    out = tmp_path / "out"
    flags = ["--data", str(sample_npz), "--out", str(out), "--epochs", "1", "--batch-size", "50", "--folds", "2",
             "--loop", loop, "--quiet", "--no-plots"]
    record = run_kernel("mnist-mlp", flags)
    workdir = out / record["run"]

    # The run's folder restores the fold ensemble, in a kernel whose own model is another: the model is the
    # one the run's run.json names. A fold's folder restores that fold's model.
    restored = run_kernel("mnist-cnn", ["--data", str(sample_npz), "--out", str(out), "--restore", str(workdir),
                                        "--quiet", "--no-plots"])
    fold = run_kernel("mnist-mlp", ["--data", str(sample_npz), "--out", str(out), "--restore",
                                    str(workdir / "fold-1"), "--quiet", "--no-plots"])

    np.testing.assert_array_equal(submission_labels(restored), submission_labels(record))
    assert restored["restored_from"] == str(workdir) and restored["config"]["model"] == "mlp"
    assert restored["folds"] == [] and restored["cv_mean"] is None
    with np.load(workdir / "fold-1.npz") as saved, np.load(out / f"{fold['run']}.npz") as again:
        np.testing.assert_allclose(again["test_probabilities"], saved["test_probabilities"], atol=1e-6)
