"""Tests of src.tfrecord: TFRecord shards, `python -m src data --to-tfrecord`, and kernels reading them."""

import numpy as np
import pytest

from conftest import make_arrays, run_kernel, write_competition
from src import cli, data, sample, tfrecord
from src.errors import KitError


def npz_dataset(tmp_path, train_per_class=7, test_rows=13):
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class, test_rows)
    return data.load_dataset(sample.write_npz(tmp_path / "mnist.npz", x_train, y_train, x_test, y_test))


def assert_same_arrays(loaded, expected):
    for name in ("x_train", "y_train", "x_test"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(expected, name))
        assert getattr(loaded, name).dtype == np.uint8
    if expected.y_test is None:
        assert loaded.y_test is None
    else:
        np.testing.assert_array_equal(loaded.y_test, expected.y_test)
        assert loaded.y_test.dtype == np.uint8


@pytest.mark.parametrize("num_shards", [1, 3])
def test_write_tfrecords_round_trip_gives_the_arrays_written(tmp_path, num_shards):
    dataset = npz_dataset(tmp_path)

    written = tfrecord.write_tfrecords(dataset, tmp_path / "tfrecord", num_shards=num_shards)
    loaded = data.load_dataset(tmp_path / "tfrecord")

    assert [path.name for path in written] == [tfrecord.tfrecord_name(split, shard, num_shards)
                                               for split in tfrecord.TFRECORD_SPLITS for shard in range(num_shards)]
    assert loaded.kind == "tfrecord" and loaded.source == tmp_path / "tfrecord"
    assert_same_arrays(loaded, dataset)
    assert not list((tmp_path / "tfrecord").glob(".*"))  # no temporary files left


def test_write_tfrecords_keeps_an_unlabelled_test_split_unlabelled(tmp_path):
    (x_train, y_train), (x_test, _) = make_arrays(train_per_class=3, test_rows=4)
    dataset = data.load_dataset(write_competition(tmp_path / "competition", x_train, y_train, x_test))

    tfrecord.write_tfrecords(dataset, tmp_path / "tfrecord", num_shards=2)

    assert_same_arrays(data.load_dataset(tmp_path / "tfrecord"), dataset)


def test_data_command_writes_shards_that_kernels_read(tmp_path, capsys):
    dataset = npz_dataset(tmp_path)

    status = cli.main(["data", "--data", str(dataset.source), "--to-tfrecord", "--out", str(tmp_path / "shards"),
                       "--shards", "2"])

    assert status == 0
    assert sorted(path.name for path in (tmp_path / "shards").iterdir()) == [
        "test-00000-of-00002.tfrecord", "test-00001-of-00002.tfrecord",
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
    ]
    # --data takes the folder or any of its shards.
    assert_same_arrays(data.load_dataset(tmp_path / "shards" / "train-00001-of-00002.tfrecord"), dataset)
    assert data.source_sha256(tmp_path / "shards") != data.source_sha256(dataset.source)
    record = run_kernel("mnist-cnn", ["--data", str(tmp_path / "shards"), "--out", str(tmp_path / "out"),
                                      "--model", "mlp", "--optimizer", "adam", "--learning-rate", "0.001",
                                      "--epochs", "1", "--folds", "1", "--no-plots", "--quiet"])
    assert record["data"]["kind"] == "tfrecord" and record["data"]["train_rows"] == 70
    assert record["data"]["sha256"] == data.source_sha256(tmp_path / "shards")


def test_write_tfrecords_refuses_a_folder_with_shards_and_bad_counts(tmp_path):
    dataset = npz_dataset(tmp_path)
    tfrecord.write_tfrecords(dataset, tmp_path / "tfrecord", num_shards=1)

    with pytest.raises(KitError, match="already holds TFRecord shards"):
        tfrecord.write_tfrecords(dataset, tmp_path / "tfrecord", num_shards=1)
    with pytest.raises(KitError, match="Received: shards=0"):
        tfrecord.write_tfrecords(dataset, tmp_path / "other", num_shards=0)


def test_load_tfrecord_names_a_missing_shard(tmp_path):
    tfrecord.write_tfrecords(npz_dataset(tmp_path), tmp_path / "tfrecord", num_shards=3)
    (tmp_path / "tfrecord" / "train-00001-of-00003.tfrecord").unlink()

    with pytest.raises(KitError, match="lacks train-00001-of-00003.tfrecord"):
        data.load_dataset(tmp_path / "tfrecord")


@pytest.mark.parametrize("damage, message", [
    ("truncate", "train shards hold 35 records but were written with 70"),
    ("flip", "train shards are corrupt"),
])
def test_load_tfrecord_refuses_a_damaged_shard(tmp_path, damage, message):
    tfrecord.write_tfrecords(npz_dataset(tmp_path), tmp_path / "tfrecord", num_shards=1)
    shard = tmp_path / "tfrecord" / "train-00000-of-00001.tfrecord"
    content = bytearray(shard.read_bytes())
    if damage == "truncate":
        content = content[: len(content) // 2]  # the records are of one size: this cuts between two
    else:
        content[len(content) // 2] ^= 0xFF  # a flipped byte fails the record's CRC
    shard.write_bytes(bytes(content))

    with pytest.raises(KitError, match=message):
        data.load_dataset(tmp_path / "tfrecord")
