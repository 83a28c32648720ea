"""The kit's Keras callbacks for `model.fit`: replayable dropout, epoch timing, a kill-proof backup and model file,
batch losses.

`reseed_random_layers` serves the custom loop too: both loops reseed dropout at every epoch's start, which is
what lets a fold resumed at epoch `e` end with the weights of a fold that ran straight through.
"""

import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from src import files


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


class ReportAccuracy(keras.callbacks.Callback):
    """Adds the accuracy on images the fit does not learn from to each epoch's logs as `test_accuracy`.

    For reports (`--test-curve`, `make bench-frontier`): it runs after `EpochClock` has stopped the epoch's clock,
    so the epoch's `epoch_seconds` do not include it.

    Args:
        images: a `tf.data.Dataset` of image batches, unshuffled.
        labels: their labels `(M,)`.
    """

    def __init__(self, images, labels: np.ndarray):
        super().__init__()
        self.images, self.labels = images, np.asarray(labels)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            predicted = np.argmax(self.model.predict(self.images, verbose=0), axis=1)
            logs["test_accuracy"] = float(np.mean(predicted == self.labels))


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
        name = f"epoch-{self._current_epoch}.weights.h5"
        # save_weights insists on the .weights.h5 ending, so the temporary name keeps it.
        with files.atomic_path(backup_dir / name, keep_suffix=True) as temporary:
            self.model.save_weights(str(temporary), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": 0, "weights": name, "history": self.history}
        files.write_text(Path(self._training_metadata_path), json.dumps(metadata))
        self._weights_path = str(backup_dir / name)
        for stale in backup_dir.glob("epoch-*.weights.h5"):
            if stale.name != name:
                stale.unlink()


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Saves the whole model as `path` (a `.keras` file) at every epoch's end, complete or not at all.

    Keras' `ModelCheckpoint` writes the file in place, so a kill during a save leaves a truncated file under
    the final name; this one writes under a temporary name and renames it (`files.atomic_path`).
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        # model.save insists on the .keras ending, so the temporary name keeps it.
        with files.atomic_path(self.path, keep_suffix=True) as temporary:
            self.model.save(str(temporary), overwrite=True)


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
