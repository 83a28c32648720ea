"""Tests of src.callbacks: dropout replayed per epoch, and a backup that names only complete weights."""

from conftest import train_fold
from src import callbacks, fitting, layout, models


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
