"""Tests of src.training and src.loops: both loops, checkpoints and resume, TensorBoard, --restore."""

import glob
import math

import numpy as np
import pytest

from conftest import make_arrays
from src import config, data, loops, models, records, training
from src.errors import KitError

LAYOUT = "channels_last"


def small_dataset(train_per_class=6, test_rows=12):
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class, test_rows)
    return data.Dataset(x_train, y_train, x_test, y_test, source=None, kind="npz")


def sample_dataset(sample_arrays):
    (x_train, y_train), (x_test, y_test) = sample_arrays
    return data.Dataset(x_train, y_train, x_test, y_test, source=None, kind="npz")


def train_fold(loop, epochs, fold_dir=None, logs_dir=None, model_name="seed_cnn", eager=False):
    """Trains one small fold with `loop`; returns the model and the history."""
    x, y = make_arrays(train_per_class=6)[0]
    training._seed_everything(5)
    model = models.build_model(model_name, LAYOUT)
    plan = loops.FoldPlan(x, y, x[:20], y[:20], batch_size=16, epochs=epochs, seed=5, data_format=LAYOUT,
                          fold_dir=fold_dir, logs_dir=logs_dir, eager=eager)
    if loop == "fit":
        models.compile_model(model, "adam", 1e-3)
        return model, loops.fit_keras(model, plan)
    return model, loops.fit_custom(model, models.build_optimizer("adam", 1e-3), plan)


def weights(model):
    return [variable.numpy() for variable in model.trainable_variables]


def without_timing(history):
    """A history without its wall-clock seconds, which no two runs share."""
    return {name: values for name, values in history.items() if name != "epoch_seconds"}


def assert_same_weights(first, second):
    assert len(weights(first)) == len(weights(second))
    for left, right in zip(weights(first), weights(second)):
        np.testing.assert_array_equal(left, right)


def event_tags(folder):
    import tensorflow as tf

    tags = {}
    for path in glob.glob(f"{folder}/**/events.out.tfevents.*", recursive=True):
        split = "validation" if "/validation/" in path else "train"
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault((split, value.tag), []).append(event.step)
    return tags


# --- the custom loop ------------------------------------------------------------------------------


def test_fit_custom_learns_in_one_short_epoch(sample_arrays):
    dataset = sample_dataset(sample_arrays)
    run_config = config.RunConfig(kernel="t", model="mlp", optimizer="adam", epochs=1, batch_size=10, folds=1,
                                  loop="custom", quiet=True)
    training._seed_everything(0)
    untrained = models.build_model("mlp", LAYOUT)
    import keras

    probabilities = untrained.predict(data.make_pipeline(dataset.x_train, batch_size=100, data_format=LAYOUT),
                                      verbose=0)
    untrained_loss = float(keras.losses.sparse_categorical_crossentropy(dataset.y_train, probabilities).numpy().mean())

    result = training.cross_validate(dataset, run_config, data_format=LAYOUT)

    history = result.folds[0].history
    assert history["loss"][0] < 0.8 * untrained_loss  # the epoch's mean loss, steps from the start included
    assert result.test_accuracy > 0.5  # chance is 0.1


def test_fit_custom_reaches_the_accuracy_of_model_fit(sample_arrays):
    dataset = sample_dataset(sample_arrays)
    results = {}
    for loop in config.LOOP_NAMES:
        run_config = config.RunConfig(kernel="t", model="mlp", optimizer="adam", epochs=2, batch_size=25, folds=1,
                                      loop=loop, quiet=True)
        results[loop] = training.cross_validate(dataset, run_config, data_format=LAYOUT)

    # Same data order, initial weights and loss: the loops differ only in who writes the step.
    fit, custom = results["fit"].folds[0].history, results["custom"].folds[0].history
    assert set(fit) == set(custom) == {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"}
    np.testing.assert_allclose(custom["loss"], fit["loss"], rtol=1e-3)
    assert abs(results["custom"].test_accuracy - results["fit"].test_accuracy) <= 0.02


@pytest.mark.parametrize("model_name", sorted(models.MODELS))
def test_cross_validate_custom_loop_trains_every_registry_model(model_name):
    dataset = small_dataset(train_per_class=3, test_rows=5)
    run_config = config.RunConfig(kernel="t", model=model_name, optimizer="adam", epochs=1, batch_size=16, folds=2,
                                  loop="custom", quiet=True)

    result = training.cross_validate(dataset, run_config, data_format=LAYOUT)

    assert len(result.folds) == 2
    assert result.oof_probabilities.shape == (30, 10)
    assert result.test_probabilities.shape == (5, 10)
    np.testing.assert_allclose(result.test_probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert all(len(fold.history["loss"]) == 1 and math.isfinite(fold.history["loss"][0]) for fold in result.folds)


def test_fit_custom_eager_step_matches_the_graph_step():
    graph, graph_history = train_fold("custom", epochs=1, model_name="mlp")
    eager, eager_history = train_fold("custom", epochs=1, model_name="mlp", eager=True)

    # The same computation: only float rounding of fused graph kernels may differ.
    for left, right in zip(weights(graph), weights(eager)):
        np.testing.assert_allclose(left, right, atol=1e-5)
    np.testing.assert_allclose(graph_history["loss"], eager_history["loss"], rtol=1e-4)


def test_cross_validate_runs_eagerly_with_either_loop():
    dataset = small_dataset(train_per_class=3, test_rows=5)
    for loop in config.LOOP_NAMES:
        run_config = config.RunConfig(kernel="t", model="mlp", optimizer="adam", epochs=1, batch_size=16, folds=1,
                                      loop=loop, eager=True, quiet=True)
        result = training.cross_validate(dataset, run_config, data_format=LAYOUT)
        assert result.test_probabilities.shape == (5, 10)


# --- resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_fit_resumed_after_an_interruption_ends_with_the_uninterrupted_weights(loop, tmp_path, monkeypatch):
    uninterrupted, uninterrupted_history = train_fold(loop, epochs=2)

    original = loops.reseed_random_layers

    def crash_in_epoch_two(model, seed, epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # as Ctrl-C would, after the first epoch was saved
        original(model, seed, epoch)

    monkeypatch.setattr(loops, "reseed_random_layers", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_fold(loop, epochs=2, fold_dir=tmp_path / "fold-0")
    monkeypatch.setattr(loops, "reseed_random_layers", original)
    resumed, resumed_history = train_fold(loop, epochs=2, fold_dir=tmp_path / "fold-0")

    # seed_cnn has dropout: equal weights also prove the dropout masks were replayed.
    assert_same_weights(uninterrupted, resumed)
    assert without_timing(resumed_history) == without_timing(uninterrupted_history)
    assert len(resumed_history["epoch_seconds"]) == 2


@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_fit_resumed_after_its_last_epoch_only_restores(loop, tmp_path):
    finished, history = train_fold(loop, epochs=2, fold_dir=tmp_path / "fold-0")

    restored, restored_history = train_fold(loop, epochs=2, fold_dir=tmp_path / "fold-0")

    assert_same_weights(finished, restored)
    assert restored_history == history


def test_fit_custom_keeps_the_last_three_checkpoints(tmp_path):
    train_fold("custom", epochs=4, fold_dir=tmp_path, model_name="mlp")

    kept = sorted(path.name for path in (tmp_path / loops.CHECKPOINT_DIR).glob("ckpt-*.index"))
    assert kept == ["ckpt-2.index", "ckpt-3.index", "ckpt-4.index"]


def test_atomic_backup_names_only_complete_weights(tmp_path):
    train_fold("fit", epochs=2, fold_dir=tmp_path, model_name="mlp")

    backup = tmp_path / loops.BACKUP_DIR
    # One weights file, named by the metadata; no temporary left behind.
    assert sorted(path.name for path in backup.iterdir()) == ["epoch-2.weights.h5", "training_metadata.json"]
    assert loops.AtomicBackupAndRestore(backup).saved_epoch == 2


def test_reseed_random_layers_depends_only_on_seed_and_epoch():
    model = models.build_model("seed_cnn", LAYOUT)

    def states(seed, epoch):
        loops.reseed_random_layers(model, seed, epoch)
        return [variable.numpy().tolist() for variable in model.non_trainable_variables
                if variable.name == "seed_generator_state"]

    assert len(states(1, 0)) == 2  # seed_cnn's two dropout layers
    assert states(1, 3) == states(1, 3)
    assert states(1, 3) != states(1, 4)
    assert states(1, 3) != states(2, 3)


def test_epoch_batches_order_depends_only_on_seed_and_epoch():
    x = np.arange(10, dtype=np.uint8).repeat(784).reshape(10, 28, 28)
    y = np.arange(10, dtype=np.uint8)

    def labels(first_epoch, epochs):
        batches = data.epoch_batches(x, y, batch_size=4, data_format=LAYOUT, seed=3, epochs=epochs,
                                     first_epoch=first_epoch, one_hot=False)
        return [batch.tolist() for _, batch in batches.as_numpy_iterator()]

    everything = labels(0, 3)
    assert len(everything) == 9  # 3 epochs of 4 + 4 + 2 images
    assert labels(2, 3) == everything[6:]  # a resume at epoch 2 sees what the full run saw
    epochs = [sorted(sum(everything[start:start + 3], [])) for start in (0, 3, 6)]
    assert all(epoch == list(range(10)) for epoch in epochs)  # each image once per epoch
    assert everything[:3] != everything[3:6]


# --- TensorBoard ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_fit_writes_readable_tensorboard_events(loop, tmp_path, monkeypatch):
    monkeypatch.setattr(loops, "SUMMARY_EVERY_STEPS", 2)
    train_fold(loop, epochs=2, logs_dir=tmp_path / "logs", model_name="mlp")

    tags = event_tags(tmp_path / "logs")
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate"):
        assert tags[("train", tag)] == [0, 1]
    assert tags[("validation", "epoch_accuracy")] == [0, 1]
    assert tags[("train", "batch_loss")] == [2, 4, 6, 8]  # 4 steps per epoch


# --- --restore ------------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_predict_restored_gives_the_labels_of_the_saved_models(loop, sample_npz, tmp_path):
    from src import cli

    base = dict(data=str(sample_npz), out=str(tmp_path / "out"), model="mlp", optimizer="adam", epochs=1,
                batch_size=50, folds=2, loop=loop, quiet=True)
    record = cli.run_kernel(config.RunConfig(kernel="t", **base))
    workdir = tmp_path / "out" / record["run"]

    # The run's folder restores the fold ensemble; a fold's folder restores that fold's model.
    restored = cli.run_kernel(config.RunConfig(kernel="t", **{**base, "model": "seed_cnn"}, restore=str(workdir)))
    fold = training.predict_restored(data.load_dataset(sample_npz), config.RunConfig(kernel="t", model="mlp"),
                                     workdir / "fold-1", data_format=LAYOUT)

    trained_labels = np.loadtxt(record["outputs"]["submission"], delimiter=",", skiprows=1, dtype=int)[:, 1]
    restored_labels = np.loadtxt(restored["outputs"]["submission"], delimiter=",", skiprows=1, dtype=int)[:, 1]
    np.testing.assert_array_equal(restored_labels, trained_labels)
    assert restored["restored_from"] == str(workdir)
    with np.load(workdir / "fold-1.npz") as saved:
        np.testing.assert_allclose(fold.test_probabilities, saved["test_probabilities"], atol=1e-6)


def test_restorable_models_finds_checkpoints_and_refuses_other_folders(tmp_path):
    train_fold("custom", epochs=2, fold_dir=tmp_path / "run" / "fold-0", model_name="mlp")
    train_fold("fit", epochs=1, fold_dir=tmp_path / "run" / "fold-1", model_name="mlp")

    assert training.restorable_models(tmp_path / "run") == [
        tmp_path / "run" / "fold-0" / loops.CHECKPOINT_DIR / "ckpt-2",
        tmp_path / "run" / "fold-1" / loops.MODEL_FILE,
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(KitError, match="Nothing to restore"):
        training.restorable_models(tmp_path / "empty")


def test_load_restored_model_names_the_model_a_checkpoint_does_not_fit(tmp_path):
    train_fold("custom", epochs=1, fold_dir=tmp_path, model_name="mlp")
    checkpoint = training.restorable_models(tmp_path)[0]

    with pytest.raises(KitError, match="does not fit the model tfwiki_cnn"):
        training.load_restored_model(checkpoint, "tfwiki_cnn", LAYOUT)


def test_run_model_name_reads_the_run_file(tmp_path):
    identity = records.run_identity(config.RunConfig(kernel="t", model="mlp").to_dict(), "0" * 64)
    run = records.start_run("t", tmp_path, identity=identity)

    assert records.run_model_name(run.workdir / "fold-0" / "checkpoints") == "mlp"
    records.finish_run(run)
