"""Search spaces: which of a kernel's flags a trial sets, and to what values (`tune-space.yaml`, `--space FILE`).

A space is a YAML (`.yaml`, `.yml`) or JSON (`.json`) mapping from kernel flags, with or without their `--`, to
one of:

    learning-rate: {low: 0.0005, high: 0.01, log: true}   # a range: floats, or integers for an integer flag
    epochs: {low: 2, high: 6}                             # (`step` optional; `log: true` samples on a log scale)
    batch-size: [64, 128, 256]                            # choices
    precision: float32                                    # one value, which every trial sets

A kernel's default space is `kernels/<name>/tune-space.yaml`; `--space FILE` replaces it. Only the settings that
change what a run computes can be searched (`--model`, `--optimizer`, `--learning-rate`, ...); the study fixes
`--folds`, `--seed` and `--data` for all its trials, so that their scores compare. Every value is checked here,
before a trial starts, with the checks a kernel's flags get: a bad space is one line, naming the file and flag.
"""

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from src import config, models
from src.errors import KitError

SPACE_FILE = "tune-space.yaml"
# The configuration fields that change what a run computes, less those the study fixes for every trial.
STUDY_FIELDS = {"kernel": "the kernel is the study's", "folds": "give `--folds K` to make tune",
                "seed": "give `--seed S` to make tune", "fold_index": "a study scores every fold",
                "data": "give `--data PATH` to make tune"}
TUNABLE_FIELDS = tuple(name for name in config.field_names("identity") if name not in STUDY_FIELDS)
RANGE_KEYS = {"low", "high", "log", "step"}


def flag_name(field: str) -> str:
    """Returns the kernel flag of a configuration field: `learning_rate` -> `--learning-rate`."""
    return "--" + field.replace("_", "-")


def _field_type(field: str) -> type:
    """Returns the Python type a flag's values have: int, float, str or bool."""
    annotation = {item.name: item.type for item in dataclasses.fields(config.RunConfig)}[field]
    kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)] or [annotation]
    return kinds[0]


@dataclass(frozen=True)
class Parameter:
    """One flag of a space.

    Attributes:
        flag: the kernel flag, e.g. `--learning-rate`; also the parameter's name in the study (without `--`).
        field: its configuration field, e.g. `learning_rate`.
        kind: `"range"`, `"choices"` or `"fixed"`.
        low, high, log, step: a range's bounds, scale and step (None for none).
        choices: the values to choose from; a fixed flag's one value.
    """

    flag: str
    field: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    @property
    def name(self) -> str:
        """The parameter's name in the study: the flag without `--`."""
        return self.flag[2:]

    def to_dict(self) -> dict:
        """Returns the parameter as the space file would write it (JSON-ready)."""
        if self.kind == "range":
            entry = {"low": self.low, "high": self.high}
            entry.update({"log": True} if self.log else {})
            entry.update({"step": self.step} if self.step is not None else {})
            return entry
        return list(self.choices) if self.kind == "choices" else self.choices[0]


@dataclass(frozen=True)
class Space:
    """A checked search space.

    Attributes:
        source: the file it was read from.
        parameters: its flags, in the file's order.
    """

    source: Path
    parameters: tuple[Parameter, ...]

    def to_dict(self) -> dict:
        """Returns the space as `{flag: entry}` (what a study keeps, to notice a changed space)."""
        return {parameter.flag: parameter.to_dict() for parameter in self.parameters}


def default_space_file(kernel_dir: Path) -> Path:
    """Returns a kernel's default space, `kernels/<name>/tune-space.yaml`."""
    return Path(kernel_dir) / SPACE_FILE


def _read(path: Path):
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise KitError(f"{path}: a search space is a .yaml, .yml or .json file. Received: {path.name!r}.")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KitError(f"No search space at {path}; pass --space FILE (see src/tune/space.py for the format).") \
            from None
    except (OSError, UnicodeDecodeError) as error:
        raise KitError(f"Cannot read the search space {path} ({error}).") from None
    try:
        return json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        reason = " ".join(str(error).split())
        raise KitError(f"{path} is not valid {'JSON' if suffix == '.json' else 'YAML'} ({reason}).") from None


def _is_of(kind: type, value) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def _check_value(path: Path, kernel: str, field: str, value):
    """Returns `value` as the flag's type, checked as the kernel's flags check it."""
    kind = _field_type(field)
    flag = flag_name(field)
    if kind is float and isinstance(value, str):
        # YAML 1.1 reads `1e-3` (no dot) as a string; the number is what was meant.
        try:
            value = float(value)
        except ValueError:
            pass
    if not _is_of(kind, value):
        raise KitError(f"{path}: {flag} takes {kind.__name__} values. Received: {field}={value!r}.")
    value = float(value) if kind is float else value
    try:
        if field == "model":
            config.check_choice("model", value, models.MODEL_NAMES)
        config.RunConfig(kernel=kernel, **{field: value})
    except KitError as error:
        raise KitError(f"{path}: {flag}: {error}") from None
    return value


def _parameter(path: Path, kernel: str, field: str, entry) -> Parameter:
    flag = flag_name(field)
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - RANGE_KEYS)
        if unknown or not {"low", "high"} <= set(entry):
            raise KitError(f"{path}: {flag}: a range is {{low: L, high: H}} with optional log: true and step: S. "
                           f"Received: {flag[2:]}={entry!r}.")
        if _field_type(field) not in (int, float):
            raise KitError(f"{path}: {flag} takes no range; list its choices instead. Received: {flag[2:]}={entry!r}.")
        low, high = (_check_value(path, kernel, field, entry[key]) for key in ("low", "high"))
        log, step = entry.get("log", False), entry.get("step")
        if not isinstance(log, bool) or not low < high or (log and low <= 0) or (log and step is not None):
            raise KitError(f"{path}: {flag}: a range needs low < high (low > 0 and no step on a log scale). "
                           f"Received: {flag[2:]}={entry!r}.")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0
                                 or (_field_type(field) is int and not isinstance(step, int))):
            raise KitError(f"{path}: {flag}: step must be a positive {_field_type(field).__name__}. "
                           f"Received: step={step!r}.")
        return Parameter(flag, field, "range", low=low, high=high, log=log, step=step)
    if isinstance(entry, list):
        choices = tuple(_check_value(path, kernel, field, value) for value in entry)
        if not choices or len(set(choices)) != len(choices):
            raise KitError(f"{path}: {flag}: choices must be a list of different values. "
                           f"Received: {flag[2:]}={entry!r}.")
        return Parameter(flag, field, "choices", choices=choices)
    return Parameter(flag, field, "fixed", choices=(_check_value(path, kernel, field, entry),))


def load_space(path: Path, kernel: str) -> Space:
    """Reads and checks a search space.

    Args:
        path: the `.yaml`, `.yml` or `.json` file.
        kernel: the kernel whose flags it sets (its values are checked as that kernel's flags are).

    Returns:
        The `Space`.

    Raises:
        KitError: the file is missing or not YAML/JSON, names an unknown flag or one the study fixes, or gives a
            value the flag refuses.
    """
    path = Path(path)
    content = _read(path)
    if not isinstance(content, dict) or not content:
        raise KitError(f"{path}: a search space maps kernel flags to ranges, choices or values (see "
                       f"src/tune/space.py). Received: {type(content).__name__}.")
    parameters: dict[str, Parameter] = {}
    for key, entry in content.items():
        field = str(key).removeprefix("--").replace("-", "_")
        if field in STUDY_FIELDS:
            raise KitError(f"{path}: {flag_name(field)} is the study's, not a trial's: {STUDY_FIELDS[field]}. "
                           f"Received: {key!r}.")
        if field not in TUNABLE_FIELDS:
            raise KitError(f"{path}: unknown flag {flag_name(field)}: a space sets the kernel flags that change what "
                           f"a run computes: {', '.join(flag_name(name) for name in TUNABLE_FIELDS)}. "
                           f"Received: {key!r}.")
        if field in parameters:
            raise KitError(f"{path}: {flag_name(field)} is given twice. Received: {key!r}.")
        parameters[field] = _parameter(path, kernel, field, entry)
    if all(parameter.kind == "fixed" for parameter in parameters.values()):
        raise KitError(f"{path}: every flag has one value, so every trial would be the same run; give a range or "
                       "a list of choices for at least one.")
    return Space(path, tuple(parameters.values()))


def suggest(trial: optuna.trial.Trial, space: Space) -> dict[str, object]:
    """Draws a trial's values from the space (Optuna's sampler picks them); fixed flags keep their value.

    Returns:
        `{flag: value}`, in the space's order.
    """
    values = {}
    for parameter in space.parameters:
        if parameter.kind == "fixed":
            value = parameter.choices[0]
        elif parameter.kind == "choices":
            value = trial.suggest_categorical(parameter.name, list(parameter.choices))
        elif _field_type(parameter.field) is int:
            value = trial.suggest_int(parameter.name, parameter.low, parameter.high, log=parameter.log,
                                      step=parameter.step or 1)
        else:
            value = trial.suggest_float(parameter.name, parameter.low, parameter.high, log=parameter.log,
                                        step=parameter.step)
        values[parameter.flag] = value
    return values


def flag_arguments(values: dict[str, object]) -> list[str]:
    """Returns the kernel's command-line flags for `{flag: value}`: `["--learning-rate", "0.003123", ...]`.

    Floats are written with 4 significant digits: the trial runs with exactly the flags written, so the command
    that reproduces it is exact.
    """
    arguments: list[str] = []
    for flag, value in values.items():
        if isinstance(value, bool):
            arguments.extend([flag] if value else [])
        elif isinstance(value, float):
            arguments.extend([flag, format(value, ".4g")])
        else:
            arguments.extend([flag, str(value)])
    return arguments
