"""Tests of the fast recipe: the `fast_cnn` model, the warm-up + cosine schedule, epoch timing, mnist-fast."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import make_arrays
from src import cli, config, data, models, paths, records, submission, training
from src.errors import KitError

FAST_KERNEL = paths.KERNELS_DIR / "mnist-fast" / "kernel.py"


@pytest.fixture(autouse=True)
def float32_after():
    """Keras keeps the dtype policy globally: leave it float32 for the tests that follow."""
    yield
    keras.config.set_dtype_policy("float32")


def test_build_fast_cnn_is_the_fast_architecture():
    model = models.build_fast_cnn("channels_last")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense"]
    # 32*(9+1) + 64*(32*9+1) + (7*7*64+1)*128 + (128+1)*10
    assert model.count_params() == 320 + 18_496 + 401_536 + 1_290
    assert models.build_fast_cnn("channels_first").count_params() == model.count_params()


def test_multiply_adds_counts_convolutions_and_dense_layers():
    # seed_cnn: 26*26*32*9 + 24*24*64*9*32 + 9216*128 + 128*10
    assert models.multiply_adds(models.build_seed_cnn()) == 194_688 + 10_616_832 + 1_179_648 + 1_280
    # fast_cnn: 28*28*32*9 + 14*14*64*9*32 + 3136*128 + 128*10
    fast = 225_792 + 3_612_672 + 401_408 + 1_280
    assert models.multiply_adds(models.build_fast_cnn("channels_last")) == fast
    assert models.multiply_adds(models.build_fast_cnn("channels_first")) == fast
    assert models.multiply_adds(models.build_mlp()) == 784 * 100 + 100 * 10


def test_build_learning_rate_constant_is_the_rate():
    assert models.build_learning_rate("constant", 0.5, total_steps=10) == 0.5


def test_build_learning_rate_warmup_cosine_ramps_up_then_decays_to_zero():
    schedule = models.build_learning_rate("warmup_cosine", 0.003, total_steps=100)
    rates = np.array([float(schedule(step)) for step in range(101)])
    warmup = round(models.WARMUP_FRACTION * 100)
    assert rates[0] == 0.0
    assert np.all(np.diff(rates[: warmup + 1]) > 0)
    assert rates[warmup] == pytest.approx(0.003)
    assert rates.max() == pytest.approx(0.003)
    assert np.all(np.diff(rates[warmup:]) < 0)
    assert rates[100] == pytest.approx(0.0, abs=1e-9)
    # Halfway through the decay the cosine is at half the peak.
    assert rates[warmup + (100 - warmup) // 2] == pytest.approx(0.0015, rel=1e-3)


def test_build_learning_rate_warmup_cosine_survives_one_step():
    schedule = models.build_learning_rate("warmup_cosine", 0.01, total_steps=1)
    assert np.isfinite(float(schedule(0))) and np.isfinite(float(schedule(1)))


def test_build_learning_rate_rejects_unknown_schedule_and_no_steps():
    with pytest.raises(KitError, match="choose one of constant, warmup_cosine, .*Received: schedule='linear'"):
        models.build_learning_rate("linear", 0.1, total_steps=10)
    with pytest.raises(KitError, match="Received: total_steps=0"):
        models.build_learning_rate("warmup_cosine", 0.1, total_steps=0)


def test_compile_model_schedule_moves_the_rate_with_each_step():
    keras.utils.set_random_seed(0)
    # 40 steps warm up over the first 4, so the first three steps see a rising rate.
    model = models.compile_model(models.build_fast_cnn(), "adam", 0.003, schedule="warmup_cosine", total_steps=40)
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    y = keras.utils.to_categorical(np.arange(8) % 10, 10)
    rates = []
    for _ in range(3):
        model.train_on_batch(x, y)
        rates.append(float(model.optimizer.learning_rate))
    assert rates == pytest.approx([0.00075, 0.0015, 0.00225])


def test_run_config_checks_schedule():
    assert config.RunConfig(kernel="k").schedule == "constant"
    with pytest.raises(KitError, match="Received: schedule='cyclic'"):
        config.RunConfig(kernel="k", schedule="cyclic")
    parsed = cli.parse_kernel_args(["--schedule", "warmup_cosine"], "k")
    assert parsed.schedule == "warmup_cosine" and parsed.to_dict()["schedule"] == "warmup_cosine"


def write_cpuinfo(path, flags):
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    return path


def test_cpu_computes_bfloat16_reads_the_flags(tmp_path):
    assert config.cpu_computes_bfloat16(write_cpuinfo(tmp_path / "amx", "fpu sse2 avx2 amx_bf16 amx_tile"))
    assert config.cpu_computes_bfloat16(write_cpuinfo(tmp_path / "avx512", "fpu sse2 avx2 avx512_bf16"))
    assert not config.cpu_computes_bfloat16(write_cpuinfo(tmp_path / "none", "fpu sse2 avx2 avx512f amx_tile"))
    assert not config.cpu_computes_bfloat16(tmp_path / "missing")


def test_run_config_resolves_auto_precision_for_this_cpu(monkeypatch):
    assert config.RunConfig(kernel="k").effective_precision == "float32"
    assert config.RunConfig(kernel="k", precision="mixed_bfloat16").to_dict()["precision"] == "mixed_bfloat16"
    for native, expected in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(config, "cpu_computes_bfloat16", lambda native=native: native)
        run_config = config.RunConfig(kernel="k", precision="auto")
        assert run_config.effective_precision == expected and run_config.to_dict()["precision"] == expected
    with pytest.raises(KitError, match="choose one of float32, mixed_bfloat16, auto. Received: precision='fp8'"):
        config.RunConfig(kernel="k", precision="fp8")


def test_set_precision_builds_bfloat16_layers_with_float32_weights_and_output():
    models.set_precision("mixed_bfloat16")
    model = models.build_fast_cnn()
    assert model.layers[0].compute_dtype == "bfloat16" and model.layers[0].kernel.dtype == "float32"
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    probabilities = keras.ops.convert_to_numpy(model(x))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    models.set_precision("float32")
    assert models.build_fast_cnn().layers[0].compute_dtype == "float32"
    with pytest.raises(KitError, match="Received: precision='auto'"):
        models.set_precision("auto")


def test_cross_validate_records_epoch_seconds_and_fit_seconds(tmp_path):
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class=6, test_rows=12)
    dataset = data.Dataset(x_train, y_train, x_test, y_test, source=tmp_path / "mnist.npz", kind="npz")
    run_config = config.RunConfig(kernel="k", model="fast_cnn", optimizer="adam", schedule="warmup_cosine",
                                  precision="mixed_bfloat16", epochs=2, batch_size=16, folds=2)
    result = training.cross_validate(dataset, run_config, data_format="channels_last")
    for fold in result.folds:
        assert len(fold.history["epoch_seconds"]) == 2
        assert all(seconds > 0 for seconds in fold.history["epoch_seconds"])
        assert sum(fold.history["epoch_seconds"]) <= fold.seconds
    run = records.Run(out_dir=tmp_path, name="k-run")
    record = records.build_record(run, run_config, dataset, result, data_sha256="0", seconds=1.0,
                                  submission=tmp_path / "k-run.csv")
    for fold, fold_record in zip(result.folds, record["folds"]):
        assert fold_record["fit_seconds"] == pytest.approx(sum(fold.history["epoch_seconds"]), abs=0.01)
    json.dumps(record)  # the record stays JSON-ready


def test_build_record_fit_seconds_is_none_without_epoch_times(tmp_path):
    (x_train, y_train), (x_test, y_test) = make_arrays()
    dataset = data.Dataset(x_train, y_train, x_test, y_test, source=tmp_path / "mnist.npz", kind="npz")
    fold = training.FoldResult(0, 1.0, None, None, None, np.full((12, 10), 0.1, np.float32), None,
                               history={"loss": [1.0]})
    result = training.ensemble([fold], dataset)
    record = records.build_record(records.Run(tmp_path, "k-run"), config.RunConfig(kernel="k"), dataset, result,
                                  data_sha256="0", seconds=1.0, submission=tmp_path / "k-run.csv")
    assert record["folds"][0]["fit_seconds"] is None


def run_fast_kernel(arguments, cwd):
    environment = {**os.environ}
    return subprocess.run([sys.executable, str(FAST_KERNEL), *arguments], capture_output=True, text=True, cwd=cwd,
                          env=environment, timeout=300)


def test_mnist_fast_kernel_trains_with_its_defaults(tmp_path, sample_npz):
    out = tmp_path / "out"
    result = run_fast_kernel(["--data", str(sample_npz), "--out", str(out), "--epochs", "1", "--folds", "1",
                              "--quiet"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [csv_path] = out.glob("mnist-fast-*.csv")
    assert submission.validate_submission(csv_path) == 100
    record = json.loads(csv_path.with_suffix(".json").read_text())
    expected = {"model": "fast_cnn", "optimizer": "adam", "learning_rate": 0.003, "schedule": "warmup_cosine",
                "precision": "mixed_bfloat16" if config.cpu_computes_bfloat16() else "float32", "batch_size": 128,
                "epochs": 1, "folds": 1}
    assert {key: record["config"][key] for key in expected} == expected
    assert record["folds"][0]["fit_seconds"] > 0
    assert "test_accuracy=" in result.stdout.strip().splitlines()[-1]


def test_mnist_fast_kernel_help_shows_its_defaults_and_bad_schedule_is_one_line(tmp_path):
    help_text = run_fast_kernel(["--help"], cwd=tmp_path)
    assert help_text.returncode == 0
    assert "fast_cnn" in help_text.stdout and "warmup_cosine" in help_text.stdout
    result = run_fast_kernel(["--schedule", "cyclic", "--out", str(tmp_path / "out")], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Unknown schedule; choose one of constant, warmup_cosine, exponential. Received: schedule='cyclic'."
    ]
    assert not (tmp_path / "out").exists()
