"""Tests of src.tune.space: every kernel's default space is valid; a bad space file is one line naming the file
and the flag; a trial's flags are what the kernel's parser reads back."""

import json

import optuna
import pytest

from conftest import KERNELS, run_process
from src import config, flags, paths
from src.errors import KitError
from src.tune import space


def write(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_declares_a_valid_default_space_beside_it(kernel):
    loaded = space.load_space(space.default_space_file(paths.KERNELS_DIR / kernel), kernel)
    assert {parameter.flag for parameter in loaded.parameters} >= {"--learning-rate", "--batch-size", "--epochs",
                                                                   "--schedule"}
    learning_rate = next(parameter for parameter in loaded.parameters if parameter.flag == "--learning-rate")
    assert learning_rate.kind == "range" and learning_rate.log


def test_every_flag_a_space_may_set_is_a_kernel_flag():
    options = {option for action in flags.kernel_parser("mnist-cnn")._actions for option in action.option_strings}
    assert {space.flag_name(field) for field in space.TUNABLE_FIELDS} <= options
    assert "--folds" not in {space.flag_name(field) for field in space.TUNABLE_FIELDS}


def test_yaml_and_json_spaces_read_alike(tmp_path):
    entries = {"--learning-rate": {"low": 0.0005, "high": 0.01, "log": True}, "batch-size": [64, 128],
               "epochs": {"low": 2, "high": 6, "step": 2}, "precision": "float32", "eager": [True, False]}
    from_json = space.load_space(write(tmp_path, json.dumps(entries), "space.json"), "mnist-fast")
    from_yaml = space.load_space(write(tmp_path, "--learning-rate: {low: 5e-4, high: 0.01, log: true}\n"
                                       "batch-size: [64, 128]\nepochs: {low: 2, high: 6, step: 2}\n"
                                       "precision: float32\neager: [true, false]\n"), "mnist-fast")
    assert from_json.to_dict() == from_yaml.to_dict()
    kinds = [parameter.kind for parameter in from_yaml.parameters]
    assert kinds == ["range", "choices", "range", "fixed", "choices"]


def test_a_trials_flags_parse_back_to_its_values(tmp_path):
    loaded = space.load_space(write(tmp_path, "learning-rate: {low: 0.0001, high: 0.01, log: true}\n"
                                    "batch-size: [32, 64]\nepochs: {low: 1, high: 3}\nprecision: float32\n"
                                    "eager: [true, false]\n"), "mnist-fast")
    trial = optuna.trial.FixedTrial({"learning-rate": 0.0031234567, "batch-size": 64, "epochs": 2, "eager": True})
    arguments = space.flag_arguments(space.suggest(trial, loaded))
    assert arguments == ["--learning-rate", "0.003123", "--batch-size", "64", "--epochs", "2", "--precision",
                         "float32", "--eager"]
    parsed = flags.parse_flags("mnist-fast", argv=arguments, optimizer="adam", learning_rate=0.003)
    assert (parsed.learning_rate, parsed.batch_size, parsed.epochs, parsed.precision, parsed.eager) == \
        (0.003123, 64, 2, "float32", True)


@pytest.mark.parametrize("text, expected", [
    ("dropout: [0.1, 0.2]\n", "unknown flag --dropout"),
    ("--data: input/\n", "--data is the study's"),
    ("folds: [3, 5]\n", "--folds is the study's"),
    ("seed: 3\n", "--seed is the study's"),
    ("batch-size: [0, 64]\n", "batch_size must be an integer from 1"),
    ("batch-size: [64, 64]\n", "choices must be a list of different values"),
    ("batch-size: {low: 8, high: 64.5}\n", "--batch-size takes int values"),
    ("schedule: [constant, sometimes]\n", "Unknown schedule"),
    ("model: [fast_cnn, resnet]\n", "Unknown model"),
    ("learning-rate: {low: 0.01, high: 0.001}\n", "needs low < high"),
    ("learning-rate: {low: 0, high: 0.01, log: true}\n", "learning_rate must be a number in (0, 100]"),
    ("learning-rate: {low: 0.001, high: 0.01, scale: log}\n", "a range is {low: L, high: H}"),
    ("learning-rate: {low: 0.001, high: 0.01}\nlearning_rate: 0.1\n", "is given twice"),
    ("schedule: 3\n", "--schedule takes str values"),
    ("optimizer: {low: a, high: b}\n", "--optimizer takes no range"),
    ("eager: [yes, 1]\n", "--eager takes bool values"),
    ("precision: float32\n", "every trial would be the same run"),
    ("- learning-rate\n", "maps kernel flags"),
    ("learning-rate: [0.001\n", "is not valid YAML"),
])
def test_a_bad_space_is_one_line_naming_the_file_and_the_flag(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(KitError) as raised:
        space.load_space(path, "mnist-fast")
    message = str(raised.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_a_space_must_be_a_yaml_or_json_file_that_exists(tmp_path):
    with pytest.raises(KitError, match="is not valid JSON"):
        space.load_space(write(tmp_path, "{'epochs': 3}", "space.json"), "mnist-fast")
    with pytest.raises(KitError, match="a .yaml, .yml or .json file"):
        space.load_space(write(tmp_path, "epochs: [1, 2]", "space.txt"), "mnist-fast")
    with pytest.raises(KitError, match="No search space at"):
        space.load_space(tmp_path / "missing.yaml", "mnist-fast")


def test_make_tune_refuses_a_bad_space_in_one_line_before_loading_tensorflow_or_writing(tmp_path, npz_path):
    bad = write(tmp_path, "learning-rate: {low: 0.001, high: 0.01}\nwidth: [32, 64]\n")
    code = ("import sys; from src import cli\n"
            f"status = cli.main(['tune', 'mnist-fast', '--trials', '2', '--space', {str(bad)!r}, '--data', "
            f"{str(npz_path)!r}, '--out', {str(tmp_path / 'tune')!r}])\n"
            "print(status, 'tensorflow' in sys.modules)")
    result = run_process(["-c", code])
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "unknown flag --width" in result.stderr and str(bad) in result.stderr
    assert not (tmp_path / "tune").exists()


def test_tunable_fields_are_the_settings_that_change_a_runs_results():
    study_fixes = {"kernel", "folds", "seed", "fold_index"}
    assert set(space.TUNABLE_FIELDS) == set(config.field_names("identity")) - study_fixes
