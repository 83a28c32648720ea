"""Tests of src.data: where a run's data is found, loading it as a `Dataset`, and its sha256."""

import pytest

from conftest import make_arrays, write_competition
from src import data, paths, sample, tfrecord
from src.errors import KitError

# --- find_data ------------------------------------------------------------------------------------


def test_find_data_prefers_competition_folder_at_any_depth(tmp_path, npz_path):
    (x_train, y_train), (x_test, _) = make_arrays()
    deep = write_competition(tmp_path / "a" / "b" / "digit-recognizer", x_train, y_train, x_test)
    assert data.find_data(tmp_path) == deep
    assert data.find_data(deep / "train.csv") == deep
    assert data.find_data(npz_path) == npz_path


def test_find_data_finds_npz_in_folder(tmp_path, npz_path):
    assert data.find_data(tmp_path) == npz_path


def test_find_data_prefers_an_npz_to_tfrecord_shards_beside_it(tmp_path):
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class=7, test_rows=13)
    dataset = data.load_dataset(sample.write_npz(tmp_path / "mnist.npz", x_train, y_train, x_test, y_test))
    tfrecord.write_tfrecords(dataset, tmp_path / "tfrecord", num_shards=1)

    assert data.find_data(tmp_path) == tmp_path / "mnist.npz"
    assert data.find_data(tmp_path / "tfrecord") == tmp_path / "tfrecord"


def test_find_data_searches_kaggle_input_when_on_kaggle(tmp_path, monkeypatch):
    (x_train, y_train), (x_test, _) = make_arrays()
    mounted = write_competition(tmp_path / "kaggle" / "input" / "digit-recognizer", x_train, y_train, x_test)
    monkeypatch.setenv(paths.KAGGLE_INPUT_ENV, str(tmp_path / "kaggle" / "input"))
    assert data.find_data() == mounted
    assert data.load_dataset().kind == "competition"


def test_find_data_searches_input_folder_locally(tmp_path, monkeypatch, npz_path):
    monkeypatch.delenv(paths.KAGGLE_INPUT_ENV, raising=False)
    monkeypatch.setattr(paths, "KAGGLE_INPUT_DIR", tmp_path / "no-kaggle")
    monkeypatch.setattr(paths, "INPUT_DIR", tmp_path)
    assert data.find_data() == npz_path


def test_find_data_errors_name_the_fix(tmp_path):
    with pytest.raises(KitError, match="does not exist.*make data"):
        data.find_data(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KitError, match="No MNIST data"):
        data.find_data(tmp_path / "empty")


# --- load_dataset and source_sha256 ---------------------------------------------------------------


def test_load_dataset_records_source_and_kind(npz_path):
    dataset = data.load_dataset(npz_path)
    assert dataset.kind == "npz" and dataset.source == npz_path and dataset.has_test_labels
    assert len(data.source_sha256(npz_path)) == 64


def test_load_dataset_reads_a_competition_folder_without_test_labels(competition_dir):
    dataset = data.load_dataset(competition_dir)
    assert dataset.kind == "competition" and dataset.source == competition_dir and not dataset.has_test_labels
    assert dataset.x_train.shape == (60, 28, 28) and dataset.y_test is None


def test_source_sha256_of_a_folder_hashes_its_csv_files_only(competition_dir):
    before = data.source_sha256(competition_dir)
    (competition_dir / "notes.txt").write_text("not data")
    assert data.source_sha256(competition_dir) == before
    train = competition_dir / "train.csv"
    train.write_text(train.read_text().replace("\n", "\r\n", 1))
    assert data.source_sha256(competition_dir) != before
