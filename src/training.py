"""A training run as a kernel tells it: open the run, fit and evaluate each fold, average the folds, finish.

    with training.start_run(flags, dataset) as run:
        for fold in run.folds():                  # each fold's model, in order; finished folds are reused
            with fold.scope():                    # the run's tf.distribute strategy
                model = build_model()
                model.compile(optimizer=keras.optimizers.Adadelta(fold.learning_rate), ...)
            fold.fit(model)                       # model.fit (or --loop custom), resumed from its last epoch
            fold.evaluate(model)                  # held-out and test probabilities
        record = run.finish(run.ensemble())       # submission, record, probabilities, pictures

Everything else a run needs happens below these lines: the run's folder and lock, resuming an unfinished run of
the same command (`src.runs`), the stratified split (`src.folds`), seeds and precision, checkpoints and backups,
TensorBoard, progress lines, `--seeds` models per fold, `--fold-index`, `--test-curve`, `--pseudo-label`,
`--restore` (`fit` loads saved weights instead of training) and writing the outputs (`src.finish`).
"""

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from src import (custom_loop, data, distribute, finish, fitting, folds, layout, leaks, optimizers, paths, prediction,
                 records, restore, results, runs, trial_hooks)
from src.config import RunConfig
from src.errors import KitError

logger = logging.getLogger(__name__)


def start_run(flags: RunConfig, dataset: data.Dataset) -> "TrainingRun":
    """Opens a run of these flags on this data: its strategy, its folder (an unfinished one of the same command is
    resumed), its lock and its TensorBoard folder. Use it as a context manager (`with ... as run:`).

    Args:
        flags: the kernel's parsed flags.
        dataset: the loaded data.

    Returns:
        The open `TrainingRun`.

    Raises:
        KitError: the strategy cannot run these flags, `--restore` finds nothing, or the output folder cannot be
            written.
    """
    return TrainingRun(flags, dataset)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class TrainingRun:
    """An open run: see `start_run`.

    Attributes:
        flags: the run's configuration.
        dataset: its data (a search's trial gets it without test labels: `src.trial_hooks`).
        distribution: the `distribute.Distribution` it trains under.
        data_format: the layout every model is built and fed in (`layout.data_format()`).
        run: its place on disk (`runs.Run`), locked.
        fold_results: the finished folds, in order (a restored run: one per saved model).
    """

    def __init__(self, flags: RunConfig, dataset: data.Dataset):
        self.started = time.perf_counter()
        self.code = records.code_state()
        self.flags = flags
        self.dataset = trial_hooks.visible_dataset(dataset)  # a search's trial sees no test labels
        self.distribution = distribute.select(flags.strategy)
        distribute.check_config(flags, self.distribution)
        self.data_format = layout.data_format()
        self.data_sha256 = data.source_sha256(dataset.source)
        self.fold_results: list[results.FoldResult] = []
        self.finished = False
        out_dir, self.logs_root, self.scratch = flags.output_dir, paths.logs_dir(), None
        if not self.distribution.is_chief:
            # Every worker trains, but only the chief writes; the others checkpoint into a folder they delete.
            self.scratch = Path(tempfile.mkdtemp(prefix=f"digit-kit-worker-{self.distribution.worker_index}-"))
            out_dir, self.logs_root = self.scratch, self.scratch / "logs"
        self.saved_models = restore.restorable_models(Path(flags.restore)) if flags.restore else []
        self.splits = [] if flags.restore else folds.fold_splits(dataset.y_train, flags.folds, flags.seed)
        self.leaks = leaks.check_leaks(dataset, self.splits)  # test images in the training data, copies across folds
        if flags.restore:
            self.run = runs.start_run(flags.kernel, out_dir)
            logger.info("run: %s (restoring %d saved model%s of %s, %s)", self.run.workdir, len(self.saved_models),
                        "" if len(self.saved_models) == 1 else "s", flags.model, flags.restore)
            return
        # A multi-worker run starts afresh: its workers would all have to resume the same fold and epoch.
        identity = runs.run_identity(flags, self.data_sha256) if self.distribution.workers == 1 else None
        self.run = runs.start_run(flags.kernel, out_dir, identity=identity, restart=flags.restart)
        replicas = self.distribution.replicas
        batch = str(flags.batch_size) if replicas == 1 else \
            f"{flags.batch_size} per replica x {replicas} = {self.distribution.global_batch_size(flags.batch_size)}"
        logger.info("run: %s (model %s, %s at %g, %s schedule, %d epochs, batch %s, %d fold%s%s, loop %s%s, %s%s)",
                    self.run.workdir, flags.model, flags.optimizer, flags.effective_learning_rate, flags.schedule,
                    flags.epochs, batch, flags.folds, "" if flags.folds == 1 else "s",
                    "" if flags.fold_index is None else f" (fold {flags.fold_index} only)", flags.loop,
                    ", eager" if flags.eager else "", flags.effective_precision,
                    "" if flags.pseudo_label is None else f", pseudo-labels at >= {flags.pseudo_label:g}")

    def __enter__(self) -> "TrainingRun":
        return self

    def __exit__(self, *exception) -> bool:
        if not self.finished:
            # Interrupted or failed: the lock goes, the folder stays, and the same command resumes it.
            runs.release(self.run)
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)
        return False

    # --- the folds --------------------------------------------------------------------------------

    def folds(self) -> Iterator["Fold"]:
        """Yields each model to train, fold by fold (and `--seeds` models per fold), skipping finished ones.

        Between two folds it saves the finished one (`fold-<i>.npz`: a rerun reuses it) and prints its score,
        time and the time left. Under `--restore` it yields one fold per saved model, which `Fold.fit` loads.

        Yields:
            A `Fold` whose model the caller builds and compiles in `fold.scope()`, then passes to `fold.fit()`
            and `fold.evaluate()`.

        Raises:
            KitError: a fold ended without `fold.evaluate(model)`.
        """
        if self.flags.restore:
            for index, path in enumerate(self.saved_models):
                fold = Fold(self, index, len(self.saved_models), restore_from=path)
                yield fold
                self.fold_results.append(fold.checked_result())
                logger.info("restore: predicted %d test images with %s", len(self.dataset.x_test), path)
            return
        trained_seconds: list[float] = []
        started = time.perf_counter()
        num_folds = len(self.splits)
        for fold_index, (train_indices, validation_indices) in enumerate(self.splits):
            if self.flags.fold_index is not None and fold_index != self.flags.fold_index:
                continue  # --fold-index: the other folds run elsewhere (make push-folds)
            saved = folds.fold_file(self.run.workdir, fold_index)
            if saved.is_file():
                result = results.load_fold(saved)
                logger.info("fold %d/%d: finished earlier, reusing %s", fold_index + 1, num_folds, saved)
            else:
                held_out = len(validation_indices) if validation_indices is not None else \
                    (len(self.dataset.x_test) if self.dataset.has_test_labels else 0)
                logger.info("fold %d/%d: training on %d images, validating on %d", fold_index + 1, num_folds,
                            len(train_indices), held_out)
                members = []
                for seed_index in range(self.flags.seeds):
                    member = yield from self._member(fold_index, seed_index, train_indices, validation_indices)
                    members.append(member)
                result = results.combine_members(members, self.dataset)
                results.save_fold(saved, result)
                trained_seconds.append(result.seconds)
            self._remove_backups(fold_index)
            self.fold_results.append(result)
            remaining = 0 if self.flags.fold_index is not None else num_folds - fold_index - 1
            estimate = float(np.mean(trained_seconds)) * remaining if trained_seconds else 0.0
            score = f"{result.validation_accuracy:.4f}" if result.validation_accuracy is not None else "n/a"
            logger.info("fold %d/%d: validation_accuracy=%s in %s; elapsed %s, about %s left", fold_index + 1,
                        num_folds, score, _duration(result.seconds), _duration(time.perf_counter() - started),
                        _duration(estimate))

    def _member(self, fold_index: int, seed_index: int, train_indices, validation_indices):
        """Yields the `seed_index`-th model of a fold unless it finished earlier; returns its result."""
        num_seeds = self.flags.seeds
        saved = folds.member_file(self.run.workdir, fold_index, seed_index, num_seeds)
        if saved is not None and saved.is_file():
            logger.info("fold %d: model %d/%d finished earlier, reusing %s", fold_index + 1, seed_index + 1,
                        num_seeds, saved)
            return results.load_fold(saved)
        fold = Fold(self, fold_index, len(self.splits), seed_index, train_indices, validation_indices)
        yield fold
        member = fold.checked_result()
        if saved is not None:
            results.save_fold(saved, member)
            score = f"{member.validation_accuracy:.4f}" if member.validation_accuracy is not None else "n/a"
            logger.info("fold %d: model %d/%d validation_accuracy=%s in %s", fold_index + 1, seed_index + 1,
                        num_seeds, score, _duration(member.seconds))
        return member

    def _remove_backups(self, fold_index: int) -> None:
        """Deletes a saved fold's resume backups; `model.keras` and the custom loop's checkpoints stay for --restore."""
        folder = folds.fold_dir(self.run.workdir, fold_index)
        for member in (folder, *folder.glob("seed-*")):
            shutil.rmtree(member / fitting.BACKUP_DIR, ignore_errors=True)

    # --- the end ----------------------------------------------------------------------------------

    def ensemble(self) -> results.CrossValidation:
        """Returns the fold ensemble: the mean of the folds' test probabilities, and their out-of-fold ones.

        Under `--restore` it is the mean of the saved models' test probabilities, as the run averaged them.
        """
        if not self.fold_results:
            raise KitError("The run has no finished fold to average; call run.ensemble() after the loop over "
                           "run.folds().")
        if not self.flags.restore:
            return results.ensemble(self.fold_results, self.dataset)
        test_probabilities = np.mean([fold.test_probabilities for fold in self.fold_results], axis=0)
        test_accuracy = results.accuracy(test_probabilities, self.dataset.y_test) if self.dataset.has_test_labels \
            else None
        return results.CrossValidation(folds=[], oof_probabilities=None, test_probabilities=test_probabilities,
                                       oof_accuracy=None, test_accuracy=test_accuracy)

    def finish(self, ensemble: results.CrossValidation) -> dict:
        """Finishes the run (`finish.finish_run`): its probabilities, submission, record and pictures.

        A worker other than the multi-worker chief writes nothing: it deletes its scratch folder.

        Returns:
            The run record, with the paths written under `"outputs"`.
        """
        if self.scratch is not None:
            runs.mark_finished(self.run)
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.finished = True
            return {"worker": {"index": self.distribution.worker_index, "count": self.distribution.workers},
                    "outputs": {}}
        distribution = self.distribution
        extra = {"distribution": {"strategy": distribution.kind, "requested": distribution.requested,
                                  "replicas": distribution.replicas, "workers": distribution.workers,
                                  "global_batch_size": distribution.global_batch_size(self.flags.batch_size)},
                 "leaks": self.leaks}
        if self.flags.restore:
            extra["restored_from"] = str(self.flags.restore)
        record = finish.finish_run(self.run, ensemble, config=self.flags.to_dict(),
                                   data=records.data_summary(self.dataset, self.data_sha256),
                                   seconds=time.perf_counter() - self.started,
                                   code=self.code, dataset=self.dataset, draw_pictures=self.flags.plots, extra=extra)
        self.finished = True
        return record


class Fold:
    """One model of one fold: what it trains on, its seed, its learning rate, and its fit and evaluation.

    Attributes:
        index: the fold, 0-based (under `--restore`, the saved model).
        count: the folds of the split.
        seed_index: which of the fold's `--seeds` models this is.
        seed: the model's seed: its initial weights, its epochs' orders, its dropout masks.
        train_indices: the training rows it learns from, `(T,)`; None under `--restore`.
        validation_indices: the rows held out, `(V,)`; None when it trains on every row (`--folds 1`).
        restore_from: under `--restore`, the saved model `fit` loads instead of training.
    """

    def __init__(self, run: TrainingRun, index: int, count: int, seed_index: int = 0, train_indices=None,
                 validation_indices=None, restore_from: Path | None = None):
        self.run = run
        self.index = index
        self.count = count
        self.seed_index = seed_index
        self.seed = folds.member_seed(run.flags.seed, index, seed_index) if restore_from is None else run.flags.seed
        self.train_indices = train_indices
        self.validation_indices = validation_indices
        self.restore_from = restore_from
        self.history: dict[str, list[float]] = {}
        self.result: results.FoldResult | None = None
        self.started = time.perf_counter()
        keras.utils.set_random_seed(self.seed)
        # Identical runs give identical submissions: TensorFlow picks deterministic kernels.
        tf.config.experimental.enable_op_determinism()
        optimizers.set_precision(run.flags.effective_precision)
        self.plan = self._plan() if restore_from is None else None

    def _plan(self) -> fitting.FitPlan:
        run, flags, dataset = self.run, self.run.flags, self.run.dataset
        distribution = run.distribution
        workdir = run.run.workdir
        validation = self._validation_split()
        report_test = flags.test_curve and dataset.has_test_labels
        plan = fitting.FitPlan(
            x_train=dataset.x_train[self.train_indices],
            y_train=dataset.y_train[self.train_indices],
            x_validation=validation[0],
            y_validation=validation[1],
            batch_size=distribution.global_batch_size(flags.batch_size),
            epochs=flags.epochs,
            seed=self.seed,
            data_format=run.data_format,
            fold_dir=folds.member_dir(workdir, self.index, self.seed_index, flags.seeds),
            logs_dir=folds.member_dir(run.logs_root / run.run.name, self.index, self.seed_index, flags.seeds),
            eager=flags.eager, verbose=fitting.verbosity(flags.quiet),
            strategy=None if distribution.kind == "none" else distribution.strategy,
            drop_remainder=distribution.fixed_shapes, epoch_listener=trial_hooks.epoch_listener(self),
            # --test-curve: the test split's accuracy after every epoch, for reports only.
            **({"x_report": dataset.x_test, "y_report": dataset.y_test} if report_test else {}),
            # --pseudo-label's pool: the test images, then the held-out rows (unlabelled too), so that validation
            # accuracy shows what the labels do to the images they label, as the test images get them.
            x_unlabelled=None if flags.pseudo_label is None else np.concatenate(
                [dataset.x_test, *([] if self.validation_indices is None else [validation[0]])]),
            pseudo_label=flags.pseudo_label,
        )
        if plan.steps_per_epoch == 0:
            raise KitError(f"A step's batch ({flags.batch_size} per replica x {distribution.replicas} replicas) is "
                           f"larger than fold {self.index}'s {len(self.train_indices)} training images; lower "
                           f"--batch-size. Received: batch_size={flags.batch_size}.")
        return plan

    def _validation_split(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The images evaluated after every epoch: the held-out rows, else the labelled test split, else none."""
        dataset = self.run.dataset
        if self.validation_indices is not None:
            return dataset.x_train[self.validation_indices], dataset.y_train[self.validation_indices]
        if dataset.has_test_labels:
            return dataset.x_test, dataset.y_test
        return None, None

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch of this fold (the global batch over its training rows)."""
        return self.plan.steps_per_epoch if self.plan is not None else 1

    @property
    def learning_rate(self):
        """The learning rate for this fold's optimizer: `--learning-rate` shaped by `--schedule` over its steps.

        A float for the constant schedule, else a `keras.optimizers.schedules.LearningRateSchedule`.
        """
        flags = self.run.flags
        return optimizers.build_learning_rate(flags.schedule, flags.effective_learning_rate,
                                              flags.epochs * self.steps_per_epoch, self.steps_per_epoch)

    def scope(self):
        """Returns the scope of the run's `tf.distribute` strategy: build and compile the model inside it."""
        return self.run.distribution.strategy.scope()

    def fit(self, model: keras.Model, train_step: custom_loop.TrainStep | None = None) -> dict[str, list[float]]:
        """Trains the compiled model on the fold, resuming from its last finished epoch.

        `--loop fit` trains with Keras' `model.fit` (`fitting.fit_keras`), `--loop custom` with `train_step`
        (or the notes' step) in the custom loop. Under `--restore` it loads the saved model's weights instead.

        Args:
            model: built and compiled in `self.scope()`.
            train_step: the custom loop's step (see `custom_loop.TrainStep`); None for `notes_train_step`.

        Returns:
            Per-epoch metrics (`loss`, `accuracy`, `val_loss`, `val_accuracy`, `epoch_seconds`).
        """
        if self.restore_from is not None:
            restore.restore_weights(model, self.restore_from, self.run.flags.model)
            return {}
        with distribute.worker_failures(self.run.distribution):
            if self.run.flags.loop == "custom":
                history = custom_loop.fit_custom(model, self.plan, train_step or custom_loop.notes_train_step)
            else:
                history = fitting.fit_keras(model, self.plan)
        self.history = {name: [float(value) for value in values] for name, values in history.items()}
        return self.history

    def predict(self, model: keras.Model, images: np.ndarray) -> np.ndarray:
        """Returns the model's probabilities `(M, 10)` for `uint8` images `(M, 28, 28)`, with the run's `--tta`."""
        distribution = self.run.distribution
        batch_size = prediction.batch_size_for(len(images), distribution.replicas)
        with distribute.worker_failures(distribution):
            return prediction.predict_probabilities(model, images, batch_size=batch_size, tta=self.run.flags.tta,
                                                    seed=self.seed)

    def evaluate(self, model: keras.Model) -> results.FoldResult:
        """Predicts the held-out rows and the test split, and keeps the fold's result for the ensemble.

        Returns:
            The fold's `results.FoldResult`: its validation accuracy (on the held-out rows; on the labelled test
            split for `--folds 1`), and its held-out and test probabilities.
        """
        dataset = self.run.dataset
        test_probabilities = self.predict(model, dataset.x_test)
        test_accuracy = results.accuracy(test_probabilities, dataset.y_test) if dataset.has_test_labels else None
        validation_probabilities = validation_accuracy = None
        if self.validation_indices is not None:
            validation_probabilities = self.predict(model, dataset.x_train[self.validation_indices])
            validation_accuracy = results.accuracy(validation_probabilities,
                                                   dataset.y_train[self.validation_indices])
        elif self.restore_from is None:
            validation_accuracy = test_accuracy
        self.result = results.FoldResult(
            fold_index=self.index, seconds=time.perf_counter() - self.started,
            validation_indices=self.validation_indices, validation_probabilities=validation_probabilities,
            validation_accuracy=validation_accuracy, test_probabilities=test_probabilities,
            test_accuracy=test_accuracy, history=self.history,
        )
        return self.result

    def checked_result(self) -> results.FoldResult:
        """Returns the fold's result; raises the kit's error when the kernel never evaluated the fold."""
        if self.result is None:
            raise KitError(f"Fold {self.index + 1} ended without fold.evaluate(model); call it after fold.fit(model) "
                           "in the loop over run.folds().")
        return self.result
