"""Tests of src.callbacks: dropout replayed per epoch, and a backup and a model file that a kill at any point of a
save leaves loadable."""

import shutil

import numpy as np
import pytest

from conftest import train_fold
from faults import SAVE_KILL_POINTS, kill_points
from src import callbacks, fitting, layout, models, optimizers, restore


def test_reseed_random_layers_depends_only_on_seed_and_epoch():
    model = models.build_model("seed_cnn", layout.input_shape("channels_last"))

    def states(seed, epoch):
        callbacks.reseed_random_layers(model, seed, epoch)
        return [variable.numpy().tolist() for variable in model.non_trainable_variables
                if variable.name == "seed_generator_state"]

    assert len(states(1, 0)) == 2  # seed_cnn's two dropout layers
    assert states(1, 3) == states(1, 3)
    assert states(1, 3) != states(1, 4)
    assert states(1, 3) != states(2, 3)


def test_atomic_backup_names_only_complete_weights(tmp_path):
    train_fold("fit", epochs=2, fold_dir=tmp_path, model_name="mlp")

    backup = tmp_path / fitting.BACKUP_DIR
    # One weights file, named by the metadata; no temporary left behind.
    assert sorted(path.name for path in backup.iterdir()) == ["epoch-2.weights.h5", "training_metadata.json"]
    assert callbacks.AtomicBackupAndRestore(backup).saved_epoch == 2


# --- a kill at any point of a save ------------------------------------------------------------------------------


class SavedBytes:
    """Stands in for a model in a forked child: `save_weights` and `save` write bytes a real model saved, in two
    halves with a kill point between them (a kill mid-write leaves the file half-written)."""

    def __init__(self, content: bytes, step):
        self.content = content
        self.step = step

    def save_weights(self, filepath, overwrite=True):
        self.save(filepath)

    def save(self, filepath, overwrite=True):
        with open(filepath, "wb") as written:
            written.write(self.content[: len(self.content) // 2])
            written.flush()
            self.step()
            written.write(self.content[len(self.content) // 2:])


def _mlp(weights_seed: int):
    model = models.build_model("mlp", layout.input_shape("channels_last"))
    optimizers.compile_model(model, "adam", 1e-3)
    rng = np.random.default_rng(weights_seed)
    model.set_weights([rng.normal(size=weight.shape).astype(weight.dtype) for weight in model.get_weights()])
    return model


def _same_weights(left, right) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(left.get_weights(), right.get_weights()))


# The backup is saved from a model whose optimizer has not stepped yet, and restored into one Keras builds fully.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_a_kill_at_any_point_of_a_backup_save_leaves_a_backup_that_loads(tmp_path):
    first, second = _mlp(1), _mlp(2)
    base = tmp_path / "base"
    backup = callbacks.AtomicBackupAndRestore(base)
    backup.set_model(first)
    backup.on_epoch_end(0, {"loss": 1.0})  # epoch 1, saved by Keras for real
    second.save_weights(str(tmp_path / "second.weights.h5"))
    second_bytes = (tmp_path / "second.weights.h5").read_bytes()
    folders = {}

    def prepare(point):
        folders[point] = tmp_path / f"killed-{point}"
        shutil.copytree(base, folders[point])

    def save_epoch_2(step):
        killed = callbacks.AtomicBackupAndRestore(folders[len(folders) - 1])
        killed.set_model(SavedBytes(second_bytes, step))
        killed.on_epoch_end(1, {"loss": 0.5})

    outcomes = []
    model, unrelated = _mlp(3), _mlp(3).get_weights()

    def check(point):
        folder = folders[len(folders) - 1]
        restored = callbacks.AtomicBackupAndRestore(folder)
        model.set_weights(unrelated)
        restored.set_model(model)
        restored.on_train_begin()  # Keras' own restore, from the file the metadata names
        expected = {1: first, 2: second}[restored.saved_epoch]
        assert _same_weights(model, expected), (point, restored.saved_epoch)
        assert restored.history["loss"] == [1.0, 0.5][:restored.saved_epoch]
        outcomes.append(restored.saved_epoch)

    points = kill_points(prepare, save_epoch_2, check)

    assert points == SAVE_KILL_POINTS["backup"]
    # Killed early, the backup is epoch 1's; from the metadata's rename on, epoch 2's; at the end, only epoch 2's.
    assert outcomes == sorted(outcomes) and outcomes[0] == 1 and outcomes[-1] == 2
    left = sorted(path.name for path in folders[len(points)].iterdir())
    assert left == ["epoch-2.weights.h5", "training_metadata.json"]


def test_a_kill_at_any_point_of_a_model_save_leaves_the_last_complete_model(tmp_path):
    first, second = _mlp(1), _mlp(2)
    base = tmp_path / "base"
    base.mkdir()
    first.save(str(base / fitting.MODEL_FILE))
    second.save(str(tmp_path / "second.keras"))
    second_bytes = (tmp_path / "second.keras").read_bytes()
    folders = {}

    def prepare(point):
        folders[point] = tmp_path / f"killed-{point}"
        shutil.copytree(base, folders[point])

    def save_epoch_2(step):
        checkpoint = callbacks.AtomicModelCheckpoint(folders[len(folders) - 1] / fitting.MODEL_FILE)
        checkpoint.set_model(SavedBytes(second_bytes, step))
        checkpoint.on_epoch_end(1)

    model, unrelated = _mlp(3), _mlp(3).get_weights()

    def check(point):
        model.set_weights(unrelated)
        restore.restore_weights(model, folders[len(folders) - 1] / fitting.MODEL_FILE, "mlp")
        assert _same_weights(model, first) or _same_weights(model, second), point

    points = kill_points(prepare, save_epoch_2, check)
    assert points == SAVE_KILL_POINTS["model.keras"]
