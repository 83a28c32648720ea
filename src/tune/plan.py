"""A study's plan: its kernel, trials, folds and seed, space, data and storage, checked before anything is written."""

import os
from dataclasses import dataclass
from pathlib import Path

from src import config, data, paths
from src.errors import KitError
from src.tune import space as search_space

DEFAULT_FOLDS = 5
PRUNER_NAMES = ("median", "hyperband", "none")
KERNEL_SCRIPT = "kernel.py"


@dataclass(frozen=True)
class StudyPlan:
    """What a study searches, and where it keeps what it finds.

    Attributes:
        kernel_dir: the kernel's folder; its `kernel.py` is what each trial runs.
        trials: the trials the study should count in all (finished earlier ones included).
        folds, seed: the cross-validation every trial is scored on.
        space: the search space.
        data: `--data` as given (None: the kernel's default, `input/`); `data_sha256` is its content's.
        out_dir: the folder of the SQLite file, the pictures and the trials' runs (`<out>/<study>/`).
        storage_url: the study's database.
        study_name: the study's name in it (the kernel's, by default).
        timeout_minutes: no trial starts after this many minutes of this process; None for no limit.
        pruner: a name from `PRUNER_NAMES`, or an Optuna pruner.
    """

    kernel_dir: Path
    trials: int
    folds: int
    seed: int
    space: search_space.Space
    data: str | None
    data_sha256: str
    out_dir: Path
    storage_url: str
    study_name: str
    timeout_minutes: float | None = None
    pruner: object = "median"

    @property
    def kernel(self) -> str:
        return self.kernel_dir.resolve().name

    @property
    def script(self) -> Path:
        return self.kernel_dir / KERNEL_SCRIPT

    @property
    def trials_dir(self) -> Path:
        """Where the trials' runs and logs go."""
        return self.out_dir / self.study_name

    def study_flags(self) -> list[str]:
        """The flags every trial shares: the data, folds and seed (what makes their scores compare)."""
        return [*(["--data", self.data] if self.data is not None else []), "--folds", str(self.folds),
                "--seed", str(self.seed)]

    def settings(self) -> dict:
        """What a study keeps to refuse being continued on other terms."""
        return {"kernel": self.kernel, "folds": self.folds, "seed": self.seed, "data_sha256": self.data_sha256}


def plan_study(kernel: str | os.PathLike, *, trials: int, folds: int = DEFAULT_FOLDS, seed: int = 0,
               space_file: str | os.PathLike | None = None, data_path: str | None = None,
               out: str | os.PathLike | None = None, storage: str | None = None, study_name: str | None = None,
               timeout_minutes: float | None = None, pruner: object = "median") -> StudyPlan:
    """Checks a study's settings, its kernel, space and data, before anything is written.

    Args:
        kernel: the kernel's folder (`kernels/mnist-fast`) or name.
        trials: trials in all, 1 or more.
        folds: K >= 2 (a study is scored on cross-validation).
        seed: the folds' and the models' seed, the same for every trial.
        space_file: the search space; None for the kernel's `tune-space.yaml`.
        data_path: the data (`--data`); None for the kernel's default.
        out: the tuning folder; None for `submissions/tune/`.
        storage: a database URL (`sqlite:///...`, `postgresql://...`); None for `<out>/<kernel>.db`.
        study_name: None for the kernel's name.
        timeout_minutes: None for none.
        pruner: `median`, `hyperband`, `none`, or an Optuna pruner.

    Raises:
        KitError: a bad value, an unknown kernel, a bad space file, or no data.
    """
    config.check_range("trials", trials, 1, 100_000)
    config.check_range("folds", folds, 2, config.MAX_FOLDS)
    config.check_range("seed", seed, 0, 2**31 - 1)
    if timeout_minutes is not None and not timeout_minutes > 0:
        raise KitError(f"timeout must be a positive number of minutes. Received: timeout={timeout_minutes!r}.")
    if isinstance(pruner, str):
        config.check_choice("pruner", pruner, PRUNER_NAMES)
    kernel_dir = Path(kernel)
    if not (kernel_dir / KERNEL_SCRIPT).is_file():
        kernel_dir = paths.KERNELS_DIR / Path(kernel).name
    if not (kernel_dir / KERNEL_SCRIPT).is_file():
        known = sorted(path.parent.name for path in paths.KERNELS_DIR.glob(f"*/{KERNEL_SCRIPT}"))
        raise KitError(f"No kernel at {kernel} (no {KERNEL_SCRIPT} there); choose one of {', '.join(known)}.")
    name = kernel_dir.resolve().name
    space = search_space.load_space(Path(space_file) if space_file is not None else
                                    search_space.default_space_file(kernel_dir), name)
    data_sha256 = data.source_sha256(data.find_data(data_path))
    out_dir = Path(out) if out is not None else paths.default_output_dir() / "tune"
    storage_url = storage or f"sqlite:///{(out_dir / f'{name}.db').resolve()}"
    return StudyPlan(kernel_dir=kernel_dir, trials=trials, folds=folds, seed=seed, space=space, data=data_path,
                     data_sha256=data_sha256, out_dir=out_dir, storage_url=storage_url,
                     study_name=study_name or name, timeout_minutes=timeout_minutes, pruner=pruner)
