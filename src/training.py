"""Training: one fit, stratified k-fold cross-validation, the fold ensemble, and predicting from checkpoints.

How one model learns (`model.fit` or the custom loop) and how a fold resumes are in `src.loops`; this module
decides what each fold trains on, saves each finished fold, and reuses the folds a run finished earlier.
"""

import logging
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src import data, files
from src.config import RunConfig
from src.errors import KitError

logger = logging.getLogger(__name__)

PREDICT_BATCH_SIZE = 1000


@dataclass
class FoldResult:
    """What one fold's model left behind.

    Attributes:
        fold_index: 0-based.
        seconds: wall time of the fit and predictions.
        validation_indices: training rows held out for this fold, shape `(V,)`; None for `--folds 1`.
        validation_probabilities: softmax on those rows, `(V, 10)`; None for `--folds 1`.
        validation_accuracy: accuracy on the held-out rows (on the test split for `--folds 1` when
            it has labels); None when nothing labelled was held out.
        test_probabilities: softmax on the test split, `(M, 10)`.
        test_accuracy: this model's accuracy on the test split when it has labels, else None.
        history: Keras' per-epoch metrics (`loss`, `accuracy`, `val_loss`, `val_accuracy`).
    """

    fold_index: int
    seconds: float
    validation_indices: np.ndarray | None
    validation_probabilities: np.ndarray | None
    validation_accuracy: float | None
    test_probabilities: np.ndarray
    test_accuracy: float | None
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class CrossValidation:
    """The folds of a run and their ensemble.

    Attributes:
        folds: one `FoldResult` per fold.
        oof_probabilities: out-of-fold softmax, `(N, 10)`, every training row predicted once by the
            model that did not see it; None for `--folds 1`.
        test_probabilities: the mean of the folds' test softmax, `(M, 10)`.
        oof_accuracy: accuracy of `oof_probabilities`; None for `--folds 1`.
        test_accuracy: the ensemble's test accuracy when the test split has labels, else None.
    """

    folds: list[FoldResult]
    oof_probabilities: np.ndarray | None
    test_probabilities: np.ndarray
    oof_accuracy: float | None
    test_accuracy: float | None

    @property
    def validation_accuracies(self) -> list[float]:
        return [fold.validation_accuracy for fold in self.folds if fold.validation_accuracy is not None]

    @property
    def cv_mean(self) -> float | None:
        scores = self.validation_accuracies
        return float(np.mean(scores)) if scores else None

    @property
    def cv_std(self) -> float | None:
        scores = self.validation_accuracies
        return float(np.std(scores)) if scores else None

    @property
    def test_labels(self) -> np.ndarray:
        """The submission's labels: argmax of the ensemble's probabilities, shape `(M,)`."""
        return self.test_probabilities.argmax(axis=1)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Returns the share of rows whose argmax equals the label."""
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def fold_splits(labels: np.ndarray, num_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Splits training rows into stratified, shuffled, seeded folds.

    Args:
        labels: `(N,)` training labels.
        num_folds: 1 for a single split that trains on every row; K >= 2 for `StratifiedKFold`.
        seed: the shuffle seed.

    Returns:
        One `(train_indices, validation_indices)` pair per fold; `validation_indices` is None for one fold.

    Raises:
        KitError: a digit has fewer images than there are folds.
    """
    if num_folds == 1:
        return [(np.arange(len(labels)), None)]
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(labels, minlength=data.NUM_CLASSES).min())
    if smallest < num_folds:
        raise KitError(
            f"folds must not exceed the images of the rarest digit ({smallest}); use fewer folds or more "
            f"data. Received: folds={num_folds}."
        )
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    # Identical runs give identical submissions: TensorFlow picks deterministic kernels.
    tf.config.experimental.enable_op_determinism()


def _verbosity(quiet: bool) -> int:
    if quiet:
        return 0
    # A progress bar per batch is for terminals; logs get one line per epoch.
    return 1 if sys.stdout.isatty() else 2


def fold_seed(seed: int, fold_index: int) -> int:
    """Returns the seed of one fold: its initial weights, its epochs' orders and its dropout masks."""
    return seed * 1000 + fold_index


def fold_dir(workdir: Path, fold_index: int) -> Path:
    """Returns the folder of a fold's work in progress: checkpoints, backups, its saved model."""
    return workdir / f"fold-{fold_index}"


def member_seed(seed: int, fold_index: int, seed_index: int) -> int:
    """Returns the seed of the `seed_index`-th model of a fold (`--seeds`); the first is the fold's seed."""
    return fold_seed(seed, fold_index) + 1_000_003 * seed_index


def member_dir(workdir: Path, fold_index: int, seed_index: int, num_seeds: int) -> Path:
    """Returns the folder of one model of a fold: the fold's own folder, or `seed-<s>/` in it for `--seeds` > 1."""
    folder = fold_dir(workdir, fold_index)
    return folder if num_seeds == 1 else folder / f"seed-{seed_index}"


def predict_probabilities(
    model, images: np.ndarray, data_format: str, tta: int = 0, seed: int = 0, batch_size: int = PREDICT_BATCH_SIZE
) -> np.ndarray:
    """Predicts softmax probabilities, optionally with test-time augmentation.

    Args:
        model: a trained model.
        images: `uint8` images `(M, 28, 28)`.
        data_format: the layout the model takes.
        tta: 0 predicts the images as they are; N > 0 returns the mean over N randomly augmented copies
            (the rotations, zooms and shifts of `models.build_augmentation`, seeded by `seed`).
        seed: seeds the augmentation, so the same call gives the same probabilities.
        batch_size: images per prediction step.

    Returns:
        `float32` probabilities `(M, 10)`.
    """
    pipeline = data.make_pipeline(images, batch_size=batch_size, data_format=data_format)
    if tta == 0:
        return model.predict(pipeline, verbose=0).astype(np.float32)
    from src import models

    augmentation = models.build_augmentation(data_format, seed=seed)
    total = np.zeros((len(images), data.NUM_CLASSES), dtype=np.float64)
    for _ in range(tta):
        # Called eagerly batch by batch, so that each copy draws new transformations from the seeded generator.
        augmented = np.concatenate([augmentation(batch, training=True).numpy() for batch in pipeline])
        total += model.predict(augmented, batch_size=batch_size, verbose=0)
    return (total / tta).astype(np.float32)


def fit_fold(
    dataset: data.Dataset,
    config: RunConfig,
    train_indices: np.ndarray,
    validation_indices: np.ndarray | None,
    fold_index: int,
    data_format: str,
    workdir: Path | None = None,
    logs_dir: Path | None = None,
    seed_index: int = 0,
) -> FoldResult:
    """Trains one model on `train_indices` and predicts its held-out rows and the test split.

    Args:
        dataset, config: the data and the run's configuration (`loop`, `eager`, `epochs`, ...).
        train_indices: training rows `(T,)` of this fold.
        validation_indices: held-out rows `(V,)`, or None to train on everything.
        fold_index: 0-based.
        data_format: the layout.
        workdir: the run's folder; the fold checkpoints into `workdir/fold-<i>/` and resumes from there.
            None keeps no checkpoints.
        logs_dir: the run's TensorBoard folder; the fold writes into `logs_dir/fold-<i>/`. None writes none.
        seed_index: which of the fold's `--seeds` models this is; each has its own seed and folder.

    Returns:
        The fold's `FoldResult` (of this one model).

    The model and its optimizer are created in the scope of the run's `tf.distribute` strategy
    (`distribute.select(config.strategy)`); a step then reads `config.batch_size` images per replica.
    """
    from src import distribute, loops, models

    started = time.perf_counter()
    distribution = distribute.select(config.strategy)
    seed = member_seed(config.seed, fold_index, seed_index)
    _seed_everything(seed)
    models.set_precision(config.effective_precision)
    with distribution.strategy.scope():
        model = models.build_model(config.model, data_format)
    if validation_indices is not None:
        validation_images, validation_labels = dataset.x_train[validation_indices], dataset.y_train[validation_indices]
    elif dataset.has_test_labels:
        validation_images, validation_labels = dataset.x_test, dataset.y_test
    else:
        validation_images = validation_labels = None

    plan = loops.FoldPlan(
        x_train=dataset.x_train[train_indices],
        y_train=dataset.y_train[train_indices],
        x_validation=validation_images,
        y_validation=validation_labels,
        batch_size=distribution.global_batch_size(config.batch_size),
        epochs=config.epochs,
        seed=seed,
        data_format=data_format,
        fold_dir=member_dir(workdir, fold_index, seed_index, config.seeds) if workdir is not None else None,
        logs_dir=member_dir(logs_dir, fold_index, seed_index, config.seeds) if logs_dir is not None else None,
        eager=config.eager,
        verbose=_verbosity(config.quiet),
        strategy=None if distribution.kind == "none" else distribution.strategy,
        drop_remainder=distribution.fixed_shapes,
    )
    if plan.steps_per_epoch == 0:
        raise KitError(f"A step's batch ({config.batch_size} per replica x {distribution.replicas} replicas) is "
                       f"larger than fold {fold_index}'s {len(train_indices)} training images; lower --batch-size. "
                       f"Received: batch_size={config.batch_size}.")
    total_steps = config.epochs * plan.steps_per_epoch
    with distribution.strategy.scope():
        if config.loop == "custom":
            learning_rate = models.build_learning_rate(config.schedule, config.effective_learning_rate, total_steps,
                                                       plan.steps_per_epoch)
            optimizer = models.build_optimizer(config.optimizer, learning_rate)
        else:
            models.compile_model(model, config.optimizer, config.effective_learning_rate, schedule=config.schedule,
                                 total_steps=total_steps, steps_per_epoch=plan.steps_per_epoch)
    if config.loop == "custom":
        history = loops.fit_custom(model, optimizer, plan)
    else:
        history = loops.fit_keras(model, plan)

    def predict(images: np.ndarray) -> np.ndarray:
        # On a TPU every batch has the same shape: blank rows fill the last one and are cut off again.
        batch_size = distribution.global_batch_size(PREDICT_BATCH_SIZE // distribution.replicas or 1)
        padded = distribute.pad_rows(images, batch_size) if distribution.fixed_shapes else images
        probabilities = predict_probabilities(model, padded, data_format, tta=config.tta, seed=seed,
                                              batch_size=batch_size)
        return probabilities[: len(images)]

    test_probabilities = predict(dataset.x_test)
    test_accuracy = accuracy(test_probabilities, dataset.y_test) if dataset.has_test_labels else None
    validation_probabilities = None
    validation_accuracy = None
    if validation_indices is not None:
        validation_probabilities = predict(validation_images)
        validation_accuracy = accuracy(validation_probabilities, validation_labels)
    elif dataset.has_test_labels:
        validation_accuracy = test_accuracy
    return FoldResult(
        fold_index=fold_index,
        seconds=time.perf_counter() - started,
        validation_indices=validation_indices,
        validation_probabilities=validation_probabilities,
        validation_accuracy=validation_accuracy,
        test_probabilities=test_probabilities,
        test_accuracy=test_accuracy,
        history={name: [float(value) for value in values] for name, values in history.items()},
    )


def _fold_path(workdir: Path, fold_index: int) -> Path:
    return workdir / f"fold-{fold_index}.npz"


def _save_fold(path: Path, fold: FoldResult) -> None:
    import json

    arrays = {"test_probabilities": fold.test_probabilities}
    if fold.validation_indices is not None:
        arrays["validation_indices"] = fold.validation_indices
        arrays["validation_probabilities"] = fold.validation_probabilities
    summary = {
        "fold_index": fold.fold_index,
        "seconds": fold.seconds,
        "validation_accuracy": fold.validation_accuracy,
        "test_accuracy": fold.test_accuracy,
        "history": fold.history,
    }
    with files.atomic_path(path) as temporary, open(temporary, "wb") as stream:
        np.savez(stream, summary=np.array(json.dumps(summary)), **arrays)


def _load_fold(path: Path) -> FoldResult:
    import json

    with np.load(path, allow_pickle=False) as saved:
        summary = json.loads(str(saved["summary"]))
        return FoldResult(
            fold_index=summary["fold_index"],
            seconds=summary["seconds"],
            validation_indices=saved["validation_indices"] if "validation_indices" in saved else None,
            validation_probabilities=saved["validation_probabilities"] if "validation_probabilities" in saved else None,
            validation_accuracy=summary["validation_accuracy"],
            test_probabilities=saved["test_probabilities"],
            test_accuracy=summary["test_accuracy"],
            history=summary["history"],
        )


def _remove_backup(workdir: Path, fold_index: int) -> None:
    """Deletes a saved fold's resume backups; `model.keras` and the custom loop's checkpoints stay for --restore."""
    from src import loops

    folder = fold_dir(workdir, fold_index)
    for member in (folder, *folder.glob("seed-*")):
        shutil.rmtree(member / loops.BACKUP_DIR, ignore_errors=True)


def combine_members(members: list[FoldResult], dataset: data.Dataset) -> FoldResult:
    """Averages the models of one fold (`--seeds`) into the fold's result.

    Returns:
        A `FoldResult` whose probabilities are the members' means and whose accuracies are recomputed from
        them; its history is the first member's, its seconds the members' sum.
    """
    if len(members) == 1:
        return members[0]
    first = members[0]
    test_probabilities = np.mean([member.test_probabilities for member in members], axis=0)
    test_accuracy = accuracy(test_probabilities, dataset.y_test) if dataset.has_test_labels else None
    validation_probabilities = None
    validation_accuracy = test_accuracy
    if first.validation_indices is not None:
        validation_probabilities = np.mean([member.validation_probabilities for member in members], axis=0)
        validation_accuracy = accuracy(validation_probabilities, dataset.y_train[first.validation_indices])
    return FoldResult(
        fold_index=first.fold_index,
        seconds=sum(member.seconds for member in members),
        validation_indices=first.validation_indices,
        validation_probabilities=validation_probabilities,
        validation_accuracy=validation_accuracy,
        test_probabilities=test_probabilities,
        test_accuracy=test_accuracy,
        history=first.history,
    )


def train_fold(
    dataset: data.Dataset,
    config: RunConfig,
    train_indices: np.ndarray,
    validation_indices: np.ndarray | None,
    fold_index: int,
    data_format: str,
    workdir: Path | None = None,
    logs_dir: Path | None = None,
) -> FoldResult:
    """Trains a fold's `--seeds` models and averages them; each finished model is saved and reused on resume.

    Args and Returns: as `fit_fold`, for the fold's ensemble of models.
    """
    members = []
    for seed_index in range(config.seeds):
        saved = None
        if workdir is not None and config.seeds > 1:
            saved = member_dir(workdir, fold_index, seed_index, config.seeds).with_suffix(".npz")
        if saved is not None and saved.is_file():
            member = _load_fold(saved)
            logger.info("fold %d: model %d/%d finished earlier, reusing %s", fold_index + 1, seed_index + 1,
                        config.seeds, saved)
        else:
            member = fit_fold(dataset, config, train_indices, validation_indices, fold_index, data_format,
                              workdir=workdir, logs_dir=logs_dir, seed_index=seed_index)
            if saved is not None:
                _save_fold(saved, member)
        if config.seeds > 1:
            score = f"{member.validation_accuracy:.4f}" if member.validation_accuracy is not None else "n/a"
            logger.info("fold %d: model %d/%d validation_accuracy=%s in %s", fold_index + 1, seed_index + 1,
                        config.seeds, score, _duration(member.seconds))
        members.append(member)
    return combine_members(members, dataset)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def cross_validate(
    dataset: data.Dataset,
    config: RunConfig,
    workdir: Path | None = None,
    data_format: str | None = None,
    logs_dir: Path | None = None,
) -> CrossValidation:
    """Trains one model per fold and ensembles their test predictions.

    Args:
        dataset: the loaded data.
        config: the run's configuration (`folds`, `epochs`, `model`, ...).
        workdir: where each finished fold is saved; a fold already saved there is reused, not retrained,
            and a fold interrupted there resumes from its last finished epoch.
        data_format: the layout; None decides it with `data.resolve_data_format()`.
        logs_dir: the run's TensorBoard folder, or None.

    Returns:
        A `CrossValidation`: per-fold results, out-of-fold probabilities `(N, 10)` (None for one fold),
        and the mean test probabilities `(M, 10)`.
    """
    data_format = data_format or data.resolve_data_format()
    splits = fold_splits(dataset.y_train, config.folds, config.seed)
    num_folds = len(splits)
    started = time.perf_counter()
    trained_seconds: list[float] = []
    folds: list[FoldResult] = []
    for fold_index, (train_indices, validation_indices) in enumerate(splits):
        if config.fold_index is not None and fold_index != config.fold_index:
            continue  # --fold-index: the other folds run elsewhere (make push-folds)
        saved = _fold_path(workdir, fold_index) if workdir is not None else None
        if saved is not None and saved.is_file():
            fold = _load_fold(saved)
            logger.info("fold %d/%d: finished earlier, reusing %s", fold_index + 1, num_folds, saved)
            _remove_backup(workdir, fold_index)
        else:
            logger.info(
                "fold %d/%d: training on %d images, validating on %d",
                fold_index + 1,
                num_folds,
                len(train_indices),
                len(validation_indices) if validation_indices is not None else
                (len(dataset.x_test) if dataset.has_test_labels else 0),
            )
            fold = train_fold(dataset, config, train_indices, validation_indices, fold_index, data_format,
                              workdir=workdir, logs_dir=logs_dir)
            trained_seconds.append(fold.seconds)
            if saved is not None:
                _save_fold(saved, fold)
                _remove_backup(workdir, fold_index)
        folds.append(fold)
        remaining = 0 if config.fold_index is not None else num_folds - fold_index - 1
        estimate = np.mean(trained_seconds) * remaining if trained_seconds else 0.0
        score = f"{fold.validation_accuracy:.4f}" if fold.validation_accuracy is not None else "n/a"
        logger.info(
            "fold %d/%d: validation_accuracy=%s in %s; elapsed %s, about %s left",
            fold_index + 1,
            num_folds,
            score,
            _duration(fold.seconds),
            _duration(time.perf_counter() - started),
            _duration(estimate),
        )
    return ensemble(folds, dataset)


def ensemble(folds: list[FoldResult], dataset: data.Dataset) -> CrossValidation:
    """Combines fold results: out-of-fold probabilities and the mean of the test probabilities.

    Returns:
        The run's `CrossValidation`.
    """
    test_probabilities = np.mean([fold.test_probabilities for fold in folds], axis=0)
    oof_probabilities = None
    oof_accuracy = None
    # Out-of-fold predictions exist only when the folds hold out every training row (not for one fold of K).
    if all(fold.validation_indices is not None for fold in folds) and \
            sum(len(fold.validation_indices) for fold in folds) == len(dataset.y_train):
        oof_probabilities = np.zeros((len(dataset.y_train), data.NUM_CLASSES), dtype=np.float32)
        for fold in folds:
            oof_probabilities[fold.validation_indices] = fold.validation_probabilities
        oof_accuracy = accuracy(oof_probabilities, dataset.y_train)
    test_accuracy = accuracy(test_probabilities, dataset.y_test) if dataset.has_test_labels else None
    return CrossValidation(
        folds=folds,
        oof_probabilities=oof_probabilities,
        test_probabilities=test_probabilities,
        oof_accuracy=oof_accuracy,
        test_accuracy=test_accuracy,
    )


# --- predicting from saved models -----------------------------------------------------------------


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
    import tensorflow as tf

    from src import loops

    path = Path(path)
    if path.is_file() and path.suffix == ".keras":
        return [path]
    if Path(f"{path}.index").is_file():
        return [path]
    if path.is_dir():
        if (path / loops.MODEL_FILE).is_file():
            return [path / loops.MODEL_FILE]
        for folder in (path, path / loops.CHECKPOINT_DIR):
            latest = tf.train.latest_checkpoint(str(folder))
            if latest:
                return [Path(latest)]
        # A run's folds, or a fold's --seeds models.
        folds = sorted(
            (child for child in path.iterdir() if child.is_dir() and _member_number(child.name) is not None),
            key=lambda child: _member_number(child.name),
        )
        found = [model for fold in folds for model in _restorable_in_fold(fold)]
        if found:
            return found
    raise KitError(
        f"Nothing to restore at {path}: --restore takes a model.keras, a checkpoint (…/checkpoints/ckpt-N), "
        f"a fold folder or a run folder with fold-<i>/ folders. Received: restore={str(path)!r}."
    )


def _member_number(name: str) -> int | None:
    for prefix in ("fold-", "seed-"):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):])
    return None


def _restorable_in_fold(fold: Path) -> list[Path]:
    try:
        return restorable_models(fold)
    except KitError:
        return []


def load_restored_model(path: Path, model_name: str, data_format: str):
    """Loads one saved model: a `.keras` file as saved, or a checkpoint into a fresh `model_name`.

    Returns:
        `(model, data_format)`: the model and the layout it takes.

    Raises:
        KitError: the file is unreadable or the checkpoint does not fit `model_name`.
    """
    import keras
    import tensorflow as tf

    from src import loops, models

    if path.suffix == ".keras":
        try:
            model = keras.models.load_model(path, compile=False)
        except (OSError, ValueError) as error:
            raise KitError(f"Cannot load {path} ({error}); is it a model.keras the kit saved?") from None
        layout = "channels_first" if tuple(model.input_shape[1:]) == data.input_shape("channels_first") else \
            "channels_last"
        return model, layout
    model = models.build_model(model_name, data_format)
    # A model that cannot fit is told before restoring: a failed restore leaves TensorFlow to print a page
    # of unmatched values when the process exits.
    try:
        available = Counter(tuple(shape) for _, shape in tf.train.list_variables(str(path)))
    except (ValueError, tf.errors.OpError) as error:
        raise KitError(f"Cannot read the checkpoint {path} ({str(error).splitlines()[0]}).") from None
    needed = Counter(tuple(variable.shape) for variable in model.trainable_variables)
    missing = sorted(shape for shape, count in needed.items() if available[shape] < count)
    if missing:
        raise KitError(
            f"The checkpoint {path} does not fit the model {model_name} (it holds no weights of shape "
            f"{missing[0]}); pass the --model it was trained with. Received: model={model_name!r}."
        )
    try:
        loops.restore_custom_checkpoint(model, str(path))
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        reason = str(error).splitlines()[0]
        raise KitError(
            f"The checkpoint {path} does not fit the model {model_name} ({reason}); pass the --model it was "
            f"trained with. Received: model={model_name!r}."
        ) from None
    return model, data_format


def predict_restored(
    dataset: data.Dataset, config: RunConfig, path: Path, data_format: str | None = None
) -> CrossValidation:
    """Predicts the test split with saved models instead of training (`--restore PATH`).

    Args:
        dataset: the data; only its test split is predicted.
        config: `model` names the architecture of checkpoints, unless a `run.json` beside them names it.
        path: see `restorable_models`; several models (a run's folds) are averaged as the run averaged them.
        data_format: the layout; None decides it with `data.resolve_data_format()`.

    Returns:
        A `CrossValidation` without folds: the mean test probabilities `(M, 10)` and their accuracy when the
        test split has labels.
    """
    from src import records

    data_format = data_format or data.resolve_data_format()
    model_name = records.run_model_name(Path(path)) or config.model
    probabilities = []
    for saved in restorable_models(Path(path)):
        model, layout = load_restored_model(saved, model_name, data_format)
        probabilities.append(predict_probabilities(model, dataset.x_test, layout, tta=config.tta, seed=config.seed))
        logger.info("restore: predicted %d test images with %s", len(dataset.x_test), saved)
    test_probabilities = np.mean(probabilities, axis=0)
    return CrossValidation(
        folds=[],
        oof_probabilities=None,
        test_probabilities=test_probabilities,
        oof_accuracy=None,
        test_accuracy=accuracy(test_probabilities, dataset.y_test) if dataset.has_test_labels else None,
    )
