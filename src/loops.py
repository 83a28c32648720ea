"""The two ways a fold's model learns: Keras' `model.fit`, or the kit's `tf.GradientTape` loop.

Both loops read the same batches (`data.epoch_batches`: every epoch in an order fixed by the fold's seed and
the epoch's number), reseed dropout at the start of every epoch, save their state at the end of every
epoch in the fold's folder, and pick up from the last saved epoch when the fold is trained again. A fold
that was killed and resumed therefore ends with the very weights an uninterrupted fold ends with.

| | `--loop fit` | `--loop custom` |
| --- | --- | --- |
| step | Keras' own | `Steps.train`: `tf.GradientTape`, sparse cross-entropy, `apply_gradients` |
| graph | Keras compiles it; `--eager` sets `run_eagerly` | `tf.function`; `--eager` runs it as Python |
| resume | `AtomicBackupAndRestore` in `<fold>/backup/` | `tf.train.CheckpointManager` in `<fold>/checkpoints/` |
| kept for `--restore` | `<fold>/model.keras` (`ModelCheckpoint`) | the last 3 checkpoints |
| TensorBoard | `keras.callbacks.TensorBoard` | `tf.summary`, same tags and folders |
"""

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from src import data, files

logger = logging.getLogger(__name__)
# TensorFlow's checkpoint saver logs a line through absl at INFO on every save ("Sharding callback
# duration"); the kit logs at INFO, and would print it every epoch.
logging.getLogger("absl").setLevel(logging.WARNING)

CHECKPOINTS_TO_KEEP = 3
# Loss is written to TensorBoard every this many steps, beside the per-epoch summaries.
SUMMARY_EVERY_STEPS = 50
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
EVALUATE_BATCH_SIZE = 1000


@dataclass(frozen=True)
class FoldPlan:
    """What either loop needs to train one fold.

    Attributes:
        x_train: `uint8` images `(N, 28, 28)`.
        y_train: `uint8` labels `(N,)`.
        x_validation: `uint8` images `(V, 28, 28)` evaluated after every epoch, or None.
        y_validation: their labels `(V,)`, or None.
        batch_size: images per step.
        epochs: epochs to train in all, counting those a resumed fold finished before.
        seed: the fold's seed; it fixes each epoch's order and dropout masks.
        data_format: the layout from `data.resolve_data_format`.
        fold_dir: where checkpoints go and are resumed from; None to keep none.
        logs_dir: where TensorBoard event files go; None to write none.
        eager: run the step eagerly instead of as a graph.
        verbose: 0 silent, 1 a progress bar, 2 one line per epoch (Keras' meaning).
        strategy: the `tf.distribute.Strategy` the model and optimizer were created under; None for
            TensorFlow's default. `batch_size` is then the global batch, over all replicas.
        drop_remainder: drop each epoch's last, smaller batch, so that every step has the same shape (TPUs).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray | None
    y_validation: np.ndarray | None
    batch_size: int
    epochs: int
    seed: int
    data_format: str
    fold_dir: Path | None = None
    logs_dir: Path | None = None
    eager: bool = False
    verbose: int = 0
    strategy: object = None
    drop_remainder: bool = False

    @property
    def steps_per_epoch(self) -> int:
        if self.drop_remainder:
            return len(self.x_train) // self.batch_size
        return math.ceil(len(self.x_train) / self.batch_size)

    def batches(self, first_epoch: int, one_hot: bool):
        """Returns the training batches from `first_epoch` to the last epoch (see `data.epoch_batches`)."""
        return data.epoch_batches(
            self.x_train, self.y_train, batch_size=self.batch_size, data_format=self.data_format,
            seed=self.seed, epochs=self.epochs, first_epoch=first_epoch, one_hot=one_hot,
            drop_remainder=self.drop_remainder,
        )

    def validation(self, one_hot: bool):
        """Returns the validation batches, or None."""
        if self.x_validation is None:
            return None
        return data.make_pipeline(self.x_validation, self.y_validation, batch_size=EVALUATE_BATCH_SIZE,
                                  data_format=self.data_format, one_hot=one_hot)


# --- randomness -----------------------------------------------------------------------------------


def reseed_random_layers(model: keras.Model, seed: int, epoch: int) -> None:
    """Sets the state of every random layer (dropout) to a value fixed by `(seed, epoch)`.

    Keras keeps each dropout layer's randomness in a `SeedGenerator` whose state advances every step and
    is saved neither by `save_weights` nor by `tf.train.Checkpoint`. Resetting it at every epoch's start
    makes the masks of epoch `e` the same whether the fold ran straight through or was resumed at `e`.
    """
    states = [variable for variable in model.non_trainable_variables if variable.name == "seed_generator_state"]
    for index, state in enumerate(states):
        value = int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])
        state.assign(np.array([value, 0], dtype=state.dtype))


class EpochSeeds(keras.callbacks.Callback):
    """Reseeds the model's random layers at every epoch's start (see `reseed_random_layers`)."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        reseed_random_layers(self.model, self.seed, epoch)


# --- model.fit ------------------------------------------------------------------------------------


class EpochClock(keras.callbacks.Callback):
    """Adds each epoch's wall seconds (training + validation) to its logs as `epoch_seconds`.

    Benchmarks read them from the run record to compare images/second with other programs.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Callbacks after this one (the History, the backup) record the key with the epoch's metrics.
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self.started


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore`, with a backup that a kill at any moment leaves usable.

    Keras rewrites `latest.weights.h5` in place and then `training_metadata.json`: a kill during either
    write, or between them, leaves a broken file or weights one epoch ahead of the epoch the metadata names.
    This callback writes `epoch-<e>.weights.h5` under a temporary name, renames it, and only then renames
    in the metadata that names it; restoring reads the metadata first and loads the file it names. The
    metadata also keeps the per-epoch history, so a resumed fold reports every epoch.

    It replaces Keras' `_save_model` (a private method, as of Keras 3.15) and points Keras' own restore at
    the file the metadata names; restoring the optimizer's state and the epoch stays Keras' code.
    """

    def __init__(self, backup_dir: Path):
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=False)
        self.history: dict[str, list[float]] = {}
        self.saved_epoch = 0
        metadata = self._read_metadata()
        if metadata is not None:
            self.saved_epoch = int(metadata["epoch"])
            self.history = {name: list(values) for name, values in metadata.get("history", {}).items()}
            self._weights_path = str(Path(backup_dir) / metadata["weights"])

    def _read_metadata(self) -> dict | None:
        try:
            return json.loads(Path(self._training_metadata_path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        backup_dir = Path(self.backup_dir)
        backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self._current_epoch}.weights.h5"
        # save_weights insists on the .weights.h5 ending, so the temporary name keeps it.
        temporary = backup_dir / f".{os.getpid()}.{name}"
        self.model.save_weights(str(temporary), overwrite=True)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, backup_dir / name)
        metadata = {"epoch": self._current_epoch, "batch": 0, "weights": name, "history": self.history}
        files.write_text(Path(self._training_metadata_path), json.dumps(metadata))
        self._weights_path = str(backup_dir / name)
        for stale in backup_dir.glob("epoch-*.weights.h5"):
            if stale.name != name:
                stale.unlink()


class BatchLossSummaries(keras.callbacks.Callback):
    """Writes `batch_loss` to TensorBoard every `every` steps of `model.fit`.

    The value is what Keras reports after a step: the mean loss of the epoch so far.
    """

    def __init__(self, logs_dir: Path, every: int):
        super().__init__()
        self.logs_dir = logs_dir
        self.every = every
        self.step = 0
        self.writer = None

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(str(self.logs_dir))
        # A resumed fit starts where the restored optimizer stopped counting.
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0 and logs and "loss" in logs:
            with self.writer.as_default():
                tf.summary.scalar("batch_loss", float(logs["loss"]), step=self.step)

    def on_train_end(self, logs=None):
        self.writer.close()


def fit_keras(model: keras.Model, plan: FoldPlan) -> dict[str, list[float]]:
    """Trains a compiled model with `model.fit`, resuming from the fold's backup when there is one.

    Args:
        model: compiled with one-hot categorical cross-entropy (`models.compile_model`).
        plan: the fold.

    Returns:
        Per-epoch metrics of every epoch (`loss`, `accuracy`, `val_loss`, `val_accuracy`, ...), resumed
        epochs included.
    """
    callbacks: list[keras.callbacks.Callback] = [EpochClock(), EpochSeeds(plan.seed)]
    backup = None
    if plan.logs_dir is not None:
        # Per epoch only: with update_freq=N, Keras drops the epoch summaries of every epoch whose last
        # step is not a multiple of N (tensorflow/tensorboard#4975); BatchLossSummaries writes the steps.
        callbacks.append(keras.callbacks.TensorBoard(str(plan.logs_dir)))
        callbacks.append(BatchLossSummaries(plan.logs_dir / "train", SUMMARY_EVERY_STEPS))
    if plan.fold_dir is not None:
        # The model is saved before the backup names the epoch finished, so --restore never lags it.
        callbacks.append(keras.callbacks.ModelCheckpoint(str(plan.fold_dir / MODEL_FILE)))
        backup = AtomicBackupAndRestore(plan.fold_dir / BACKUP_DIR)
        callbacks.append(backup)
    first_epoch = backup.saved_epoch if backup is not None else 0
    if first_epoch:
        logger.info("resuming from the backup of epoch %d/%d in %s", first_epoch, plan.epochs, backup.backup_dir)
    model.run_eagerly = plan.eager
    result = model.fit(
        plan.batches(first_epoch, one_hot=True),
        epochs=plan.epochs,
        steps_per_epoch=plan.steps_per_epoch,
        validation_data=plan.validation(one_hot=True),
        callbacks=callbacks,
        shuffle=False,  # the batches come shuffled, in the order of their epoch
        verbose=plan.verbose,
    )
    return backup.history if backup is not None else result.history


# --- the custom loop ------------------------------------------------------------------------------


class Steps:
    """The custom loop's training and evaluation steps, with the metrics they update.

    Each step runs on every replica of the strategy (`strategy.run`; one replica without a strategy). A
    replica's loss is its images' summed cross-entropy divided by the images in the whole global batch
    (`tf.nn.compute_average_loss`), so the optimizer's sum of the replicas' gradients is the gradient of the
    global batch's mean loss, as on one device, a smaller last batch included. The replicas' sums of loss,
    correct answers and images are then added up (`strategy.reduce`) into the metrics.

    Attributes:
        train: `train(images, labels) -> loss`: one `tf.GradientTape` step of sparse categorical
            cross-entropy and `optimizer.apply_gradients`; updates `metrics["loss"]` and `["accuracy"]`.
            The batch is a distributed one (`distribute.distribute_dataset`) under a strategy.
        evaluate: `evaluate(images, labels)`: updates `metrics["val_loss"]` and `["val_accuracy"]`.
        metrics: Keras metrics by name: `loss`, `accuracy`, `val_loss`, `val_accuracy`, each a mean over images.
    """

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, eager: bool = False,
                 strategy=None):
        """Builds the steps; `eager` leaves them Python functions instead of `tf.function` graphs.

        `model` and `optimizer` must have been created in `strategy.scope()`.
        """
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy or tf.distribute.get_strategy()
        self.loss_function = keras.losses.SparseCategoricalCrossentropy(reduction=None)
        names = ("loss", "accuracy", "val_loss", "val_accuracy")
        self.metrics = {name: keras.metrics.Mean(name=name) for name in names}
        # One graph per step instead of one Python call per operation (see `make bench-graph`).
        self.train = self._train if eager else tf.function(self._train)
        self.evaluate = self._evaluate if eager else tf.function(self._evaluate)

    def _totals(self, labels, probabilities, per_example_loss):
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, axis=-1, output_type=labels.dtype),
                                                 labels), tf.float32))
        return tf.reduce_sum(per_example_loss), correct, count

    def _train_replica(self, images, labels):
        labels = tf.cast(labels, tf.int32)
        with tf.GradientTape() as tape:
            probabilities = self.model(images, training=True)
            per_example_loss = self.loss_function(labels, probabilities)
            global_batch = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.shape(labels)[0])
            loss = tf.nn.compute_average_loss(per_example_loss, global_batch_size=global_batch)
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return self._totals(labels, probabilities, per_example_loss)

    def _evaluate_replica(self, images, labels):
        labels = tf.cast(labels, tf.int32)
        probabilities = self.model(images, training=False)
        return self._totals(labels, probabilities, self.loss_function(labels, probabilities))

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


def fit_custom(model: keras.Model, optimizer: keras.optimizers.Optimizer, plan: FoldPlan) -> dict[str, list[float]]:
    """Trains a model with the kit's own loop: a `tf.GradientTape` step compiled by `tf.function`.

    The TensorFlow notes draw each batch at random with replacement (`get_batch`); this loop instead
    visits every image once per epoch in a seeded order. Every image then counts equally, an epoch means
    one pass as it does for `model.fit` (so the two loops compare), validation has a natural point to
    run, and the order being a function of `(seed, epoch)` is what lets a resumed fold match an
    uninterrupted one.

    Each epoch ends with a `tf.train.Checkpoint` of the model, the optimizer and the epoch counter, saved
    by a `tf.train.CheckpointManager` that keeps the last three; a fold that finds one resumes after it.

    Args:
        model: an uncompiled model ending in a softmax.
        optimizer: a fresh Keras optimizer (created, like the model, in `plan.strategy.scope()`).
        plan: the fold; under `plan.strategy`, each step splits its global batch over the replicas.

    Returns:
        Per-epoch `loss`, `accuracy` (and `val_loss`, `val_accuracy` with validation data), resumed epochs
        included, as `fit_keras` returns them.
    """
    steps = Steps(model, optimizer, eager=plan.eager, strategy=plan.strategy)
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
        from src import distribute

        batches = distribute.distribute_dataset(plan.strategy, batches)
        if validation is not None:
            validation = distribute.distribute_dataset(plan.strategy, validation)
    batches = iter(batches)
    metric_names = ["loss", "accuracy", "val_loss", "val_accuracy"]
    for epoch in range(first_epoch, plan.epochs):
        epoch_started = time.perf_counter()
        reseed_random_layers(model, plan.seed, epoch)
        for metric in (train_loss, train_accuracy, validation_loss, validation_accuracy):
            metric.reset_state()
        progress = None
        if plan.verbose:
            # Keras' own progress bar and epoch lines, as model.fit prints them.
            print(f"Epoch {epoch + 1}/{plan.epochs}", flush=True)
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
