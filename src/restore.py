"""`--restore PATH`: finding the saved models of a run, fold or file, and loading their weights into a model.

A restored run tells the same story as a trained one: the kernel builds and compiles each model as usual, and
`Fold.fit` loads saved weights into it (`restore_weights`) instead of training it.
"""

import warnings
import zipfile
from collections import Counter
from pathlib import Path

import tensorflow as tf

from src import custom_loop, folds
from src.errors import KitError
from src.fitting import CHECKPOINT_DIR, MODEL_FILE


def restorable_models(path: Path) -> list[Path]:
    """Finds what `--restore PATH` predicts with.

    Args:
        path: a `.keras` model (what `--loop fit` saves as `fold-<i>/model.keras`), a custom-loop checkpoint
            prefix (`fold-<i>/checkpoints/ckpt-<epoch>`), a fold's folder (its `model.keras`, else its latest
            checkpoint), or a run's folder (every `fold-<i>/` in it, for the fold ensemble).

    Returns:
        The `.keras` files and checkpoint prefixes, one per model, in fold order.

    Raises:
        KitError: nothing restorable is there.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".keras":
        return [path]
    if Path(f"{path}.index").is_file():
        return [path]
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return [path / MODEL_FILE]
        for folder in (path, path / CHECKPOINT_DIR):
            latest = tf.train.latest_checkpoint(str(folder))
            if latest:
                return [Path(latest)]
        # A run's folds, or a fold's --seeds models.
        members = sorted(
            (child for child in path.iterdir() if child.is_dir() and folds.member_number(child.name) is not None),
            key=lambda child: folds.member_number(child.name),
        )
        found = [model for member in members for model in _restorable_in_fold(member)]
        if found:
            return found
    raise KitError(
        f"Nothing to restore at {path}: --restore takes a model.keras, a checkpoint (…/checkpoints/ckpt-N), "
        f"a fold folder or a run folder with fold-<i>/ folders. Received: restore={str(path)!r}."
    )


def _restorable_in_fold(fold: Path) -> list[Path]:
    try:
        return restorable_models(fold)
    except KitError:
        return []


def restore_weights(model, path: Path, model_name: str) -> None:
    """Loads the weights of a saved model (`.keras`) or a custom-loop checkpoint prefix into `model`.

    Args:
        model: built as the saved model was (the same architecture and layout).
        path: one of `restorable_models`' answers.
        model_name: the model's name, for messages.

    Raises:
        KitError: the file is unreadable, or its weights do not fit `model`.
    """
    hint = f"pass the --model it was trained with. Received: model={model_name!r}."
    path = Path(path)
    if path.suffix == ".keras":
        # A .keras file is a zip; one cut short (a kill while Keras' own ModelCheckpoint rewrote it in place, as
        # the kit's fold folders had it before AtomicModelCheckpoint; a copy or a disk that ran out) is not.
        if not zipfile.is_zipfile(path):
            raise KitError(f"Cannot read {path}: it is not a complete .keras file (cut short, or not a Keras model); "
                           "restore another model or checkpoint, or train the fold again.")
        try:
            with warnings.catch_warnings():
                # The file holds the optimizer's state too, which predicting does not need (nor load).
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                model.load_weights(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise KitError(f"Cannot load the weights of {path} into the model {model_name} ({reason[:200]}); "
                           f"{hint}") from None
        return
    # A model that cannot fit is told before restoring: a failed restore leaves TensorFlow to print a page
    # of unmatched values when the process exits.
    try:
        available = Counter(tuple(shape) for _, shape in tf.train.list_variables(str(path)))
    except (ValueError, tf.errors.OpError) as error:
        raise KitError(f"Cannot read the checkpoint {path} ({str(error).splitlines()[0]}).") from None
    needed = Counter(tuple(variable.shape) for variable in model.trainable_variables)
    missing = sorted(shape for shape, count in needed.items() if available[shape] < count)
    if missing:
        raise KitError(f"The checkpoint {path} does not fit the model {model_name} (it holds no weights of shape "
                       f"{missing[0]}); {hint}")
    try:
        custom_loop.restore_custom_checkpoint(model, str(path))
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        reason = str(error).splitlines()[0]
        raise KitError(f"The checkpoint {path} does not fit the model {model_name} ({reason}); {hint}") from None
