"""The custom training loop (`--loop custom`): a `tf.GradientTape` step, compiled by `tf.function`, on every replica.

The step itself is the kernel's to write (`mnist-mlp` shows it); `notes_train_step` is the TensorFlow notes' own,
which every other kernel trains with under `--loop custom`. Around it this module keeps what a fit needs: the
seeded batches, distribution over the strategy's replicas, metrics, progress lines, TensorBoard summaries, and a
`tf.train.Checkpoint` every epoch that a resumed fold continues from.
"""

import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from src import callbacks, distribute, files
from src.fitting import CHECKPOINT_DIR, SUMMARY_EVERY_STEPS, FitPlan

logger = logging.getLogger(__name__)

CHECKPOINTS_TO_KEEP = 3
HISTORY_FILE = "history.json"

# A training step: `step(model, images, labels) -> (per_image_loss (B,), probabilities (B, 10))`, run on each
# replica's share of a batch (labels are int32 digits); it applies the gradients itself.
TrainStep = Callable[[keras.Model, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def notes_train_step(model: keras.Model, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The TensorFlow notes' step on one replica's share of a batch: cross-entropy's gradient, applied.

    Args:
        model: compiled (its `optimizer` applies the gradients) in the strategy's scope.
        images: the replica's images `(B, 28, 28, 1)` (or channels-first), scaled to `[0, 1]`.
        labels: their digits `(B,)`, int32.

    Returns:
        `(per_image_loss, probabilities)`: `(B,)` cross-entropies and `(B, 10)` softmax outputs.
    """
    with tf.GradientTape() as tape:
        probabilities = model(images, training=True)
        per_image_loss = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        # Each replica's share of the global batch's mean, so that the replicas' summed gradients are the mean's
        # gradient (a smaller last batch weighing what it holds).
        global_batch = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.shape(labels)[0])
        loss = tf.nn.compute_average_loss(per_image_loss, global_batch_size=global_batch)
    gradients = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return per_image_loss, probabilities


class Steps:
    """The custom loop's training and evaluation steps, with the metrics they update.

    Each step runs on every replica of the strategy (`strategy.run`; one replica without a strategy). The
    replicas' sums of loss, correct answers and images are then added up (`strategy.reduce`) into the metrics.

    Attributes:
        train: `train(images, labels) -> loss`: the training step on a (distributed) batch; updates
            `metrics["loss"]` and `["accuracy"]`.
        evaluate: `evaluate(images, labels)`: updates `metrics["val_loss"]` and `["val_accuracy"]`.
        metrics: Keras metrics by name: `loss`, `accuracy`, `val_loss`, `val_accuracy`, each a mean over images.
    """

    def __init__(self, model: keras.Model, train_step: TrainStep = notes_train_step, eager: bool = False,
                 strategy=None):
        """Builds the steps; `eager` leaves them Python functions instead of `tf.function` graphs.

        `model` (and its optimizer) must have been created in `strategy.scope()`.
        """
        self.model = model
        self.train_step = train_step
        self.strategy = strategy or tf.distribute.get_strategy()
        names = ("loss", "accuracy", "val_loss", "val_accuracy")
        self.metrics = {name: keras.metrics.Mean(name=name) for name in names}
        # One graph per step instead of one Python call per operation (see `make bench-graph`); an epoch's
        # smaller last batch reuses it rather than tracing a graph of its own.
        self.train = self._train if eager else tf.function(self._train, reduce_retracing=True)
        self.evaluate = self._evaluate if eager else tf.function(self._evaluate, reduce_retracing=True)

    @staticmethod
    def _totals(labels, probabilities, per_image_loss):
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, axis=-1, output_type=labels.dtype),
                                                 labels), tf.float32))
        return tf.reduce_sum(per_image_loss), correct, count

    def _train_replica(self, images, labels):
        labels = tf.cast(labels, tf.int32)
        per_image_loss, probabilities = self.train_step(self.model, images, labels)
        return self._totals(labels, probabilities, per_image_loss)

    def _evaluate_replica(self, images, labels):
        labels = tf.cast(labels, tf.int32)
        probabilities = self.model(images, training=False)
        return self._totals(labels, probabilities, keras.losses.sparse_categorical_crossentropy(labels, probabilities))

    def _record(self, totals, loss_name: str, accuracy_name: str):
        loss_sum, correct, count = (self.strategy.reduce(tf.distribute.ReduceOp.SUM, total, axis=None)
                                    for total in totals)
        # Weighted by the images, as Keras weighs them, so a short last batch counts for what it holds.
        self.metrics[loss_name].update_state(tf.math.divide_no_nan(loss_sum, count), sample_weight=count)
        self.metrics[accuracy_name].update_state(tf.math.divide_no_nan(correct, count), sample_weight=count)
        return tf.math.divide_no_nan(loss_sum, count)

    def _train(self, images, labels):
        return self._record(self.strategy.run(self._train_replica, args=(images, labels)), "loss", "accuracy")

    def _evaluate(self, images, labels):
        self._record(self.strategy.run(self._evaluate_replica, args=(images, labels)), "val_loss", "val_accuracy")


def fit_custom(model: keras.Model, plan: FitPlan, train_step: TrainStep = notes_train_step) -> dict[str, list[float]]:
    """Trains a compiled model with the custom loop: `train_step` on every batch, compiled by `tf.function`.

    The TensorFlow notes draw each batch at random with replacement (`get_batch`); this loop instead
    visits every image once per epoch in a seeded order. Every image then counts equally, an epoch means
    one pass as it does for `model.fit` (so the two loops compare), validation has a natural point to
    run, and the order being a function of `(seed, epoch)` is what lets a resumed fold match an
    uninterrupted one.

    Each epoch ends with a `tf.train.Checkpoint` of the model, the optimizer and the epoch counter, saved
    by a `tf.train.CheckpointManager` that keeps the last three; a fold that finds one resumes after it.

    Args:
        model: a model ending in a softmax, compiled with a fresh optimizer (both in `plan.strategy.scope()`).
        plan: the fold; under `plan.strategy`, each step splits its global batch over the replicas.
        train_step: the step, on one replica's share of a batch (see `TrainStep`).

    Returns:
        Per-epoch `loss`, `accuracy` (and `val_loss`, `val_accuracy` with validation data), resumed epochs
        included, as `fit_keras` returns them.
    """
    optimizer = model.optimizer
    steps = Steps(model, train_step, eager=plan.eager, strategy=plan.strategy)
    train_loss, train_accuracy = steps.metrics["loss"], steps.metrics["accuracy"]
    validation_loss, validation_accuracy = steps.metrics["val_loss"], steps.metrics["val_accuracy"]
    train_step, evaluate_step = steps.train, steps.evaluate

    # Building the optimizer now creates its slots before a checkpoint is restored into them (mirrored like
    # the weights they go with, under a strategy).
    with plan.strategy.scope() if plan.strategy is not None else contextlib.nullcontext():
        optimizer.build(model.trainable_variables)
    epoch_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    manager = None
    history: dict[str, list[float]] = {}
    if plan.fold_dir is not None:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_counter)
        manager = tf.train.CheckpointManager(checkpoint, str(plan.fold_dir / CHECKPOINT_DIR),
                                             max_to_keep=CHECKPOINTS_TO_KEEP)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            history = _read_history(plan.fold_dir / CHECKPOINT_DIR, int(epoch_counter.numpy()))
            logger.info("resuming from checkpoint %s (epoch %d/%d)", manager.latest_checkpoint,
                        int(epoch_counter.numpy()), plan.epochs)
    first_epoch = int(epoch_counter.numpy())
    writers = _summary_writers(plan.logs_dir)
    validation = plan.validation(one_hot=False)
    batches = plan.batches(first_epoch, one_hot=False)
    if plan.strategy is not None:
        batches = distribute.distribute_dataset(plan.strategy, batches)
        if validation is not None:
            validation = distribute.distribute_dataset(plan.strategy, validation)
    batches = iter(batches)
    metric_names = ["loss", "accuracy", "val_loss", "val_accuracy"]
    for epoch in range(first_epoch, plan.epochs):
        epoch_started = time.perf_counter()
        callbacks.reseed_random_layers(model, plan.seed, epoch)
        for metric in (train_loss, train_accuracy, validation_loss, validation_accuracy):
            metric.reset_state()
        progress = None
        if plan.verbose:
            # Keras' own progress bar and epoch lines, as model.fit shows them.
            logger.info("Epoch %d/%d", epoch + 1, plan.epochs)
            progress = keras.utils.Progbar(plan.steps_per_epoch, verbose=plan.verbose, stateful_metrics=metric_names)
        for step in range(plan.steps_per_epoch):
            images, labels = next(batches)
            loss = train_step(images, labels)
            iteration = epoch * plan.steps_per_epoch + step + 1
            if writers and iteration % SUMMARY_EVERY_STEPS == 0:
                with writers["train"].as_default():
                    tf.summary.scalar("batch_loss", loss, step=iteration)
            if progress is not None:
                progress.update(step + 1, [("loss", float(train_loss.result())),
                                           ("accuracy", float(train_accuracy.result()))], finalize=False)
        logs = {"loss": float(train_loss.result()), "accuracy": float(train_accuracy.result())}
        if validation is not None:
            for images, labels in validation:
                evaluate_step(images, labels)
            logs.update(val_loss=float(validation_loss.result()), val_accuracy=float(validation_accuracy.result()))
        if progress is not None:
            progress.update(plan.steps_per_epoch, list(logs.items()), finalize=True)
        logs["epoch_seconds"] = time.perf_counter() - epoch_started
        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        _write_epoch_summaries(writers, logs, float(keras.ops.convert_to_numpy(optimizer.learning_rate)), epoch)
        if manager is not None:
            epoch_counter.assign(epoch + 1)
            # The history goes first: a kill between the two leaves it one epoch ahead, which a resume trims.
            files.write_text(plan.fold_dir / CHECKPOINT_DIR / HISTORY_FILE, json.dumps(history))
            manager.save(checkpoint_number=epoch + 1)
        if plan.epoch_listener is not None:
            plan.epoch_listener(epoch, dict(logs))
    for writer in writers.values():
        writer.close()
    return history


def _read_history(folder: Path, epochs: int) -> dict[str, list[float]]:
    try:
        saved = json.loads((folder / HISTORY_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {name: values[:epochs] for name, values in saved.items()}


def _summary_writers(logs_dir: Path | None) -> dict:
    if logs_dir is None:
        return {}
    # The folders and tags of keras.callbacks.TensorBoard, so that both loops chart alike.
    return {split: tf.summary.create_file_writer(str(logs_dir / split)) for split in ("train", "validation")}


def _write_epoch_summaries(writers: dict, logs: dict[str, float], learning_rate: float, epoch: int) -> None:
    if not writers:
        return
    with writers["train"].as_default():
        tf.summary.scalar("epoch_loss", logs["loss"], step=epoch)
        tf.summary.scalar("epoch_accuracy", logs["accuracy"], step=epoch)
        tf.summary.scalar("epoch_learning_rate", learning_rate, step=epoch)
    if "val_loss" in logs:
        with writers["validation"].as_default():
            tf.summary.scalar("epoch_loss", logs["val_loss"], step=epoch)
            tf.summary.scalar("epoch_accuracy", logs["val_accuracy"], step=epoch)
    for writer in writers.values():
        writer.flush()


def restore_custom_checkpoint(model: keras.Model, checkpoint_path: str) -> None:
    """Loads a custom-loop checkpoint's weights into `model` (the optimizer's state is not needed).

    Raises:
        ValueError or tf.errors.OpError: the checkpoint does not fit the model.
    """
    tf.train.Checkpoint(model=model).restore(checkpoint_path).expect_partial().assert_existing_objects_matched()
