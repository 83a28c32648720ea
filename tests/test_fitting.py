"""Tests of one fit (src.fitting and, for what both loops share, src.custom_loop): resume and TensorBoard."""

import glob

import numpy as np
import pytest

from conftest import train_fold
from src import callbacks, config, fitting


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


@pytest.mark.slow
@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_fit_resumed_after_an_interruption_ends_with_the_uninterrupted_weights(loop, tmp_path, monkeypatch):
    uninterrupted, uninterrupted_history = train_fold(loop, epochs=2)

    original = callbacks.reseed_random_layers

    def crash_in_epoch_two(model, seed, epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # as Ctrl-C would, after the first epoch was saved
        original(model, seed, epoch)

    monkeypatch.setattr(callbacks, "reseed_random_layers", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_fold(loop, epochs=2, fold_dir=tmp_path / "fold-0")
    monkeypatch.setattr(callbacks, "reseed_random_layers", original)
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


@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_fit_writes_readable_tensorboard_events(loop, tmp_path, monkeypatch):
    from src import custom_loop

    monkeypatch.setattr(fitting, "SUMMARY_EVERY_STEPS", 2)
    monkeypatch.setattr(custom_loop, "SUMMARY_EVERY_STEPS", 2)
    train_fold(loop, epochs=2, logs_dir=tmp_path / "logs", model_name="mlp")

    tags = event_tags(tmp_path / "logs")
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate"):
        assert tags[("train", tag)] == [0, 1]
    assert tags[("validation", "epoch_accuracy")] == [0, 1]
    assert tags[("train", "batch_loss")] == [2, 4, 6, 8]  # 4 steps per epoch


def test_fit_plan_counts_its_steps_per_epoch():
    images, labels = np.zeros((60, 28, 28), np.uint8), np.zeros(60, np.uint8)
    plan = fitting.FitPlan(images, labels, None, None, batch_size=16, epochs=1, seed=0, data_format="channels_last")
    assert plan.steps_per_epoch == 4
    dropped = fitting.FitPlan(images, labels, None, None, batch_size=16, epochs=1, seed=0,
                              data_format="channels_last", drop_remainder=True)
    assert dropped.steps_per_epoch == 3


class StopFit(Exception):
    pass


@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_fit_tells_the_epoch_listener_each_saved_epoch_and_stops_when_it_raises(loop, tmp_path):
    heard = []

    def listener(epoch, logs):
        heard.append((epoch, logs["val_accuracy"]))
        if epoch == 0:
            raise StopFit  # as a search's pruner stops a trial

    with pytest.raises(StopFit):
        train_fold(loop, epochs=2, fold_dir=tmp_path / "fold-0", model_name="mlp", epoch_listener=listener)
    assert [epoch for epoch, _ in heard] == [0]

    # The epoch the listener heard of was saved: the same fold resumes after it, the listener hearing epoch 1 only.
    _, history = train_fold(loop, epochs=2, fold_dir=tmp_path / "fold-0", model_name="mlp",
                            epoch_listener=lambda epoch, logs: heard.append((epoch, logs["val_accuracy"])))
    assert [epoch for epoch, _ in heard] == [0, 1]
    assert [accuracy for _, accuracy in heard] == pytest.approx(history["val_accuracy"])


def test_fit_with_report_images_logs_their_accuracy_each_epoch_outside_the_epoch_clock():
    import keras

    from conftest import make_arrays
    from src import layout, models, optimizers

    (x, y), (x_test, y_test) = make_arrays(train_per_class=6)
    keras.utils.set_random_seed(5)
    model = optimizers.compile_model(models.build_model("fast_cnn", layout.input_shape("channels_last")), "adam", 3e-3)
    plan = fitting.FitPlan(x, y, x[:20], y[:20], batch_size=16, epochs=2, seed=5, data_format="channels_last",
                           x_report=x_test, y_report=y_test)
    given, fit = [], model.fit

    def fit_and_keep_callbacks(*args, **kwargs):
        given.extend(kwargs["callbacks"])
        return fit(*args, **kwargs)

    model.fit = fit_and_keep_callbacks
    history = fitting.fit_keras(model, plan)
    assert len(history["test_accuracy"]) == len(history["epoch_seconds"]) == 2
    predicted = model.predict(x_test[..., None].astype("float32") / 255, verbose=0).argmax(axis=1)
    assert history["test_accuracy"][-1] == pytest.approx(np.mean(predicted == y_test))
    # Keras calls callbacks in order: the clock stops before the test images are predicted.
    kinds = [type(callback) for callback in given]
    assert kinds.index(callbacks.EpochClock) < kinds.index(callbacks.ReportAccuracy)


def test_fit_with_pseudo_labels_learns_from_the_labelled_test_images_in_its_second_half(tmp_path, monkeypatch):
    from conftest import make_arrays
    from src import pipelines, pseudo_labels

    x_test = make_arrays(train_per_class=6)[1][0]
    drawn, epoch_batches = [], pipelines.epoch_batches

    def record_batches(x, y, **options):
        drawn.append((len(x), options["first_epoch"], options["epochs"], options["rows_per_epoch"]))
        if options["rows_per_epoch"] is not None:
            np.testing.assert_array_equal(x[options["rows_per_epoch"]:], x_test)
        return epoch_batches(x, y, **options)

    monkeypatch.setattr(pipelines, "epoch_batches", record_batches)
    _, history = train_fold("fit", epochs=4, fold_dir=tmp_path / "fold-0", model_name="mlp", x_unlabelled=x_test,
                            pseudo_label=0.0)

    # Epochs 0-1 on the 60 training rows; epochs 2-3 draw 60 images each from those rows and the 12 test images.
    assert drawn == [(60, 0, 2, None), (72, 2, 4, 60)]
    assert len(history["loss"]) == len(history["epoch_seconds"]) == 4
    indices, labels = pseudo_labels.load(tmp_path / "fold-0" / pseudo_labels.FILE_NAME, 12, 0.0)
    assert indices.tolist() == list(range(12)) and labels.shape == (12,)


def test_fit_resumed_in_its_pseudo_labelled_half_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch):
    from conftest import make_arrays

    x_test = make_arrays(train_per_class=6)[1][0]
    options = dict(model_name="mlp", x_unlabelled=x_test, pseudo_label=0.2)
    uninterrupted, uninterrupted_history = train_fold("fit", epochs=4, **options)

    original = callbacks.reseed_random_layers

    def crash_in_epoch_four(model, seed, epoch):
        if epoch == 3:
            raise KeyboardInterrupt  # in the 4th epoch: the labels (made after the 2nd) and the 3rd are saved
        original(model, seed, epoch)

    monkeypatch.setattr(callbacks, "reseed_random_layers", crash_in_epoch_four)
    with pytest.raises(KeyboardInterrupt):
        train_fold("fit", epochs=4, fold_dir=tmp_path / "fold-0", **options)
    monkeypatch.setattr(callbacks, "reseed_random_layers", original)
    resumed, resumed_history = train_fold("fit", epochs=4, fold_dir=tmp_path / "fold-0", **options)

    assert_same_weights(uninterrupted, resumed)
    assert without_timing(resumed_history) == without_timing(uninterrupted_history)
