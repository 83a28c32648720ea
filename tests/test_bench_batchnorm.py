"""Tests of benchmarks/batchnorm.py: Keras' layer swapped in for the fused one, and a row per configuration."""

import importlib.util
import sys

import keras
import pytest

from src import paths
from src.models import batchnorm as fused_batchnorm
from src.models import strong

sys.path.insert(0, str(paths.REPO_ROOT / "benchmarks"))  # batchnorm.py imports precision, its neighbour
spec = importlib.util.spec_from_file_location("batchnorm_bench", paths.REPO_ROOT / "benchmarks" / "batchnorm.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_with_keras_normalization_swaps_only_the_normalization_layers():
    model = strong.build_strong_cnn_affine()

    copy = bench.with_keras_normalization(model)

    normalizations = [layer for layer in copy.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(normalizations) == 7
    assert not any(isinstance(layer, fused_batchnorm.FusedBatchNormalization) for layer in copy.layers)
    assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
    assert copy.count_params() == model.count_params()


def test_batchnorm_prints_each_configuration_with_its_ratio(npz_path, capsys):
    status = bench.main([str(npz_path), "--rounds", "2", "--images", "64"])

    assert status == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("strong_cnn_affine")]
    assert len(lines) == 4
    assert "float32, Keras BatchNorm: " in lines[0] and "(1.00x)" in lines[0]
    assert "mixed_bfloat16, fused BatchNorm" in lines[3]


@pytest.mark.parametrize("flags", [["--rounds", "1"], ["--images", "10"]])
def test_batchnorm_refuses_bad_flags(flags, capsys):
    with pytest.raises(SystemExit) as raised:
        bench.parse_args(flags)

    assert raised.value.code == 2 and "Received:" in capsys.readouterr().err
