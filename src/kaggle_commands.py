"""The Kaggle workflow's commands of `python -m src`: bundle, notebook, push, push-folds, collect, watch,
watch-folds, scores, status, output and submit; their flags and one handler each.

As in `src.cli`, a handler imports what it needs when it runs, so that `--help` answers before anything loads.
"""

import argparse
import sys
from pathlib import Path

from src import paths
from src.errors import KitError
from src.flags import ArgumentParser


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


def add_kaggle_commands(commands, kernel_help: str) -> None:
    """Adds the Kaggle workflow's commands to `python -m src`'s sub-parsers.

    Args:
        commands: what `ArgumentParser.add_subparsers` returned.
        kernel_help: the help line of a command's `kernel` argument.
    """
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
