"""The flags every kernel shares (`python kernels/<name>/kernel.py --help`), parsed into a checked `RunConfig`.

`parse_flags` is a kernel's first line of work. Before TensorFlow loads it also quiets TensorFlow's logging,
prints the kit's log lines, makes a kit error one line with exit status 2, and, for `--strategy multiworker`,
joins the cluster (which must happen before TensorFlow runs anything else).
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from src import config, console, machine, models, runs
from src.errors import KitError


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are the kit's one-line errors."""

    def __init__(self, *args, **kwargs):
        # `--mod` for `--model` would make a flag given by hand ambiguous (see `_given`).
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        raise KitError(f"{self.prog}: {message}; see --help.")


def kernel_parser(kernel: str, description: str | None = None, **defaults) -> ArgumentParser:
    """Returns the parser of the flags every kernel shares, with this kernel's defaults.

    Args:
        kernel: the kernel's name.
        description: shown by `--help`.
        **defaults: overrides of `RunConfig`'s defaults, e.g. `folds=5`.
    """
    base = config.RunConfig(kernel=kernel, **defaults)
    own_rates = ", ".join(f"{rate:g} for {name}" for name, rate in config.DEFAULT_LEARNING_RATES.items())
    learning_rate_help = (f"the optimizer's rate, a schedule's peak (default: {base.learning_rate:g} with "
                          f"{base.optimizer}; another --optimizer takes its own: {own_rates})"
                          if base.learning_rate is not None else f"the optimizer's rate, a schedule's peak "
                          f"(default: {own_rates})")
    parser = ArgumentParser(prog=f"kernels/{kernel}/kernel.py", description=description)
    parser.add_argument("--data", metavar="PATH", default=base.data,
                        help="an mnist.npz, a competition folder, a TFRecord folder, or a folder to search "
                        "(default: input/, or /kaggle/input on Kaggle)")
    parser.add_argument("--out", metavar="DIR", default=base.out,
                        help="folder for the submission and everything the run writes "
                        "(default: submissions/, or /kaggle/working on Kaggle)")
    parser.add_argument("--model", metavar="NAME", default=base.model,
                        help=f"one of {', '.join(models.MODEL_NAMES)} (default: %(default)s)")
    parser.add_argument("--optimizer", metavar="NAME", default=base.optimizer,
                        help=f"one of {', '.join(config.OPTIMIZER_NAMES)} (default: %(default)s)")
    parser.add_argument("--learning-rate", metavar="X", type=float, default=base.learning_rate,
                        help=learning_rate_help)
    parser.add_argument("--schedule", metavar="NAME", default=base.schedule,
                        help=f"learning-rate schedule, one of {', '.join(config.SCHEDULE_NAMES)}; warmup_cosine "
                        "ramps up over the first tenth of the steps, then decays to zero (default: %(default)s)")
    parser.add_argument("--precision", metavar="NAME", default=base.precision,
                        help=f"one of {', '.join(config.PRECISION_NAMES)}; auto computes in bfloat16 on CPUs "
                        "that do so natively (AMX, AVX512-BF16), else float32 (default: %(default)s)")
    parser.add_argument("--epochs", metavar="N", type=int, default=base.epochs, help="default: %(default)s")
    parser.add_argument("--batch-size", metavar="N", type=int, default=base.batch_size, help="default: %(default)s")
    parser.add_argument("--folds", metavar="K", type=int, default=base.folds,
                        help="stratified K-fold with a fold ensemble; 1 trains once on all data (default: %(default)s)")
    parser.add_argument("--seed", metavar="S", type=int, default=base.seed, help="default: %(default)s")
    parser.add_argument("--quiet", action="store_true", default=base.quiet, help="log lines only, no progress bars")
    parser.add_argument("--verbose", action="store_true", default=base.verbose,
                        help="show TensorFlow's own log lines too (hidden by default)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", default=base.plots,
                        help="skip the pictures (learning curves, confusion matrices, mistakes) in the run's folder")
    parser.add_argument("--loop", metavar="fit|custom", default=base.loop, choices=config.LOOP_NAMES,
                        help="fit: Keras' model.fit; custom: the kit's GradientTape loop (default: %(default)s)")
    parser.add_argument("--eager", action="store_true", default=base.eager,
                        help="run the training step eagerly instead of as a tf.function graph (slower; for debugging)")
    parser.add_argument("--restore", metavar="PATH", default=base.restore,
                        help="predict with a saved checkpoint, model.keras or run folder and write a submission; "
                        "trains nothing")
    parser.add_argument("--restart", action="store_true", default=base.restart,
                        help="discard an unfinished run of the same command instead of resuming it")
    parser.add_argument("--seeds", metavar="N", type=int, default=base.seeds,
                        help="models per fold, each from its own seed, averaged (default: %(default)s)")
    parser.add_argument("--tta", metavar="N", type=int, default=base.tta,
                        help="predict with the mean over N augmented copies of each image; 0 for none "
                        "(default: %(default)s)")
    parser.add_argument("--strategy", metavar="NAME", default=base.strategy, choices=config.STRATEGY_NAMES,
                        help="tf.distribute strategy: auto picks a TPU, else MirroredStrategy over several GPUs, else "
                        "none; multiworker reads TF_CONFIG; --batch-size is per replica (default: %(default)s)")
    parser.add_argument("--fold-index", type=int, metavar="I", default=base.fold_index,
                        help="train only fold I (0-based) of --folds K and save its probabilities; `make collect` "
                        "blends the folds run apart (default: every fold)")
    parser.add_argument("--test-curve", action="store_true", default=base.test_curve,
                        help="also measure the labelled test split's accuracy after every epoch, untimed, for "
                        "reports (make bench-frontier); nothing is chosen on it")
    parser.add_argument("--pseudo-label", metavar="P", type=float, default=base.pseudo_label,
                        help="from half-way through each model's epochs, also learn from the test and held-out images "
                        "it labels with a probability of at least P, e.g. 0.99 (default: none)")
    return parser


def _given(argv: Sequence[str], flag: str) -> bool:
    """Returns whether `flag` was given on the command line (not left to its default)."""
    return any(argument == flag or argument.startswith(f"{flag}=") for argument in argv)


def _budget(argv: Sequence[str], kernel: str, budgets: dict[str, dict], cpu_budget: str) -> str:
    """Returns the budget `--budget` names: `auto` is `gpu` when a GPU is present and the kernel has that budget,
    else `cpu_budget`."""
    early = ArgumentParser(prog=f"kernels/{kernel}/kernel.py", add_help=False)
    early.add_argument("--budget", choices=(*budgets, "auto"), default="auto")
    budget = early.parse_known_args(argv)[0].budget
    if budget == "auto":
        budget = "gpu" if "gpu" in budgets and machine.gpu_present() else cpu_budget
    return budget


def parse_flags(
    kernel: str,
    description: str | None = None,
    *,
    argv: Sequence[str] | None = None,
    budgets: dict[str, dict] | None = None,
    cpu_budget: str = "cpu",
    **defaults,
) -> config.RunConfig:
    """Parses a kernel's flags into a checked `RunConfig`, and gets the process ready to train.

    Args:
        kernel: the kernel's name, e.g. `"mnist-cnn"`.
        description: `--help`'s text: the kernel's docstring (its first line is shown).
        argv: the flags; None reads `sys.argv`.
        budgets: a recipe kernel's named sets of defaults (e.g. `{"cpu": {...}, "gpu": {...}}`), chosen with
            `--budget NAME` (default `auto`: `gpu` when a GPU is present and the kernel has that budget, else
            `cpu_budget`); flags given explicitly still win.
        cpu_budget: the budget `auto` picks where no GPU is present.
        **defaults: the kernel's defaults, overriding `RunConfig`'s, e.g. `folds=5`. A default `learning_rate`
            goes with the default `optimizer`: `--optimizer` alone takes that optimizer's own default rate.

    Returns:
        The configuration. Under `--restore` without `--model`, `model` is the one the restored run trained.

    Raises:
        KitError: a flag is unknown or out of range (also printed as one line when the kernel is run as a script),
            or `cpu_budget` is not one of `budgets`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    console.quiet_tensorflow(verbose="--verbose" in argv)
    console.configure_logging()
    console.install_error_hook()
    budget = None
    if budgets:
        if cpu_budget not in budgets:
            raise KitError(f"cpu_budget must be one of the budgets {', '.join(budgets)}. "
                           f"Received: cpu_budget={cpu_budget!r}")
        budget = _budget(argv, kernel, budgets, cpu_budget)
        defaults = {**defaults, **budgets[budget], "budget": budget}
    parser = kernel_parser(kernel, description.strip().splitlines()[0] if description else None, **defaults)
    if budgets:
        parser.add_argument("--budget", metavar="NAME", choices=(*budgets, "auto"), default="auto",
                            help="a named set of defaults: " + "; ".join(
                                f"{name}: " + ", ".join(f"{key}={value}" for key, value in values.items())
                                for name, values in budgets.items())
                            + f" (default: auto, gpu when one is present, else {cpu_budget})")
    values = {name.replace("-", "_"): value for name, value in vars(parser.parse_args(argv)).items()}
    values["budget"] = budget
    if "learning_rate" in defaults and _given(argv, "--optimizer") and not _given(argv, "--learning-rate"):
        values["learning_rate"] = None  # the kernel's rate was for its own optimizer
    if values["restore"] and not _given(argv, "--model"):
        values["model"] = runs.run_model_name(Path(values["restore"])) or values["model"]
    config.check_choice("model", values["model"], models.MODEL_NAMES)
    flags = config.RunConfig(kernel=kernel, **values)
    if flags.strategy == "multiworker":
        from src import distribute  # here, not at the top: it loads TensorFlow, which --help must not wait for

        distribute.select(flags.strategy)
    return flags
