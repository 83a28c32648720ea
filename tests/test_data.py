"""Tests of src.data: discovery, loaders, validation, layout, the embedded sample."""

import io
import zipfile

import numpy as np
import pytest

from conftest import make_arrays, write_competition
from src import data, paths
from src.errors import KitError


def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def valid_arrays():
    (x_train, y_train), (x_test, y_test) = make_arrays()
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


# --- load_npz -------------------------------------------------------------------------------------


def test_load_npz_returns_keras_layout(npz_path):
    (x_train, y_train), (x_test, y_test) = data.load_npz(npz_path)
    expected = make_arrays()
    assert x_train.shape == (60, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60,) and y_train.dtype == np.uint8
    np.testing.assert_array_equal(x_train, expected[0][0])
    np.testing.assert_array_equal(y_train, expected[0][1])
    np.testing.assert_array_equal(x_test, expected[1][0])
    np.testing.assert_array_equal(y_test, expected[1][1])


def test_load_npz_accepts_flat_rows_and_integral_floats(tmp_path):
    arrays = valid_arrays()
    arrays["x_train"] = arrays["x_train"].reshape(-1, 784).astype(np.float64)
    arrays["y_test"] = arrays["y_test"].astype(np.int64)
    (x_train, _), (_, y_test) = data.load_npz(save_npz(tmp_path / "flat.npz", **arrays))
    assert x_train.shape == (60, 28, 28) and x_train.dtype == np.uint8
    assert y_test.dtype == np.uint8


def test_load_npz_reads_compressed_and_fortran_arrays(tmp_path):
    arrays = valid_arrays()
    arrays["x_test"] = np.asfortranarray(arrays["x_test"])
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **arrays)
    (_, _), (x_test, _) = data.load_npz(path)
    np.testing.assert_array_equal(x_test, arrays["x_test"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("y_test"), "lacks y_test"),
        (lambda a: a.update(x_train=a["x_train"][:, :27, :]), "28x28"),
        (lambda a: a.update(x_test=np.zeros((5, 783), np.uint8)), "28x28"),
        (lambda a: a.update(y_train=a["y_train"] + 5), "outside 0-9"),
        (lambda a: a.update(y_train=a["y_train"].astype(np.float32)), "integer labels"),
        (lambda a: a.update(y_train=a["y_train"].astype(np.int64) - 1), "outside 0-9"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.int32) + 1), "outside 0-255"),
        (lambda a: a.update(x_train=np.full((60, 28, 28), np.nan)), "NaN"),
        (lambda a: a.update(x_train=a["x_train"] / 255.0), "fractional"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "must match"),
        (lambda a: a.update(x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.uint8)), "empty"),
        (lambda a: a.update(y_test=a["y_test"].reshape(-1, 1)), "one label per image"),
        (lambda a: a.update(x_train=a["x_train"].astype(str)), "numbers 0-255"),
    ],
)
def test_load_npz_rejects_bad_arrays(tmp_path, change, message):
    arrays = valid_arrays()
    change(arrays)
    path = save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(KitError, match=message):
        data.load_npz(path)


def test_load_npz_refuses_pickled_objects(tmp_path):
    arrays = valid_arrays()
    arrays["y_train"] = np.array([object()] * 60, dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays)
    with pytest.raises(KitError, match="pickle"):
        data.load_npz(path)


def test_load_npz_rejects_missing_file_and_non_zip(tmp_path):
    with pytest.raises(KitError, match="not a file"):
        data.load_npz(tmp_path / "absent.npz")
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(KitError, match="not an .npz"):
        data.load_npz(text)


def test_load_npz_rejects_truncated_file(npz_path):
    content = npz_path.read_bytes()
    npz_path.write_bytes(content[: len(content) // 2])
    with pytest.raises(KitError):
        data.load_npz(npz_path)


def test_load_npz_rejects_header_claiming_absurd_size(tmp_path):
    arrays = valid_arrays()
    path = tmp_path / "absurd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array)
            content = buffer.getvalue()
            if key == "x_train":
                content = content.replace(b"(60, 28, 28)", b"(600000000000, 28, 28)")
            archive.writestr(f"{key}.npy", content)
    with pytest.raises(KitError, match="corrupt"):
        data.load_npz(path)


# --- load_competition ------------------------------------------------------------------------------


def test_load_competition_returns_images_and_no_test_labels(competition_dir):
    (x_train, y_train), (x_test, y_test) = data.load_competition(competition_dir)
    (expected_x, expected_y), (expected_test, _) = make_arrays()
    np.testing.assert_array_equal(x_train, expected_x)
    np.testing.assert_array_equal(y_train, expected_y)
    np.testing.assert_array_equal(x_test, expected_test)
    assert y_test is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: text.replace("label,", "digit,", 1), "wrong header"),
        (lambda text: text.replace(",pixel783", "", 1), "wrong header"),
        (lambda text: text.replace("\n", "\n1.5,", 2).replace("1.5,", "", 1), "not a whole number|short or long row"),
        (lambda text: text + "3," + ",".join(["0"] * 783) + "\n", "short or long row|not a whole number"),
        (lambda text: text.split("\n")[0] + "\n", "no rows"),
    ],
)
def test_load_competition_rejects_bad_train_csv(competition_dir, edit, message):
    train = competition_dir / "train.csv"
    train.write_text(edit(train.read_text()))
    with pytest.raises(KitError, match=message):
        data.load_competition(competition_dir)


def test_load_competition_rejects_bad_values(tmp_path):
    (x_train, y_train), (x_test, _) = make_arrays()
    y_bad = y_train.astype(int)
    y_bad[3] = 11
    write_competition(tmp_path / "labels", x_train, y_bad, x_test)
    with pytest.raises(KitError, match="outside 0-9"):
        data.load_competition(tmp_path / "labels")
    x_bad = x_test.astype(int)
    x_bad[0, 0, 0] = 256
    write_competition(tmp_path / "pixels", x_train, y_train, x_bad)
    with pytest.raises(KitError, match="outside 0-255"):
        data.load_competition(tmp_path / "pixels")


def test_load_competition_rejects_missing_value(competition_dir):
    test = competition_dir / "test.csv"
    lines = test.read_text().splitlines()
    lines[1] = "," + lines[1].split(",", 1)[1]
    test.write_text("\n".join(lines) + "\n")
    with pytest.raises(KitError, match="test.csv"):
        data.load_competition(competition_dir)


def test_load_competition_rejects_missing_test_csv(competition_dir):
    (competition_dir / "test.csv").unlink()
    with pytest.raises(KitError, match="test.csv is missing"):
        data.load_competition(competition_dir)


# --- discovery --------------------------------------------------------------------------------------


def test_find_data_prefers_competition_folder_at_any_depth(tmp_path, npz_path):
    (x_train, y_train), (x_test, _) = make_arrays()
    deep = write_competition(tmp_path / "a" / "b" / "digit-recognizer", x_train, y_train, x_test)
    assert data.find_data(tmp_path) == deep
    assert data.find_data(deep / "train.csv") == deep
    assert data.find_data(npz_path) == npz_path


def test_find_data_finds_npz_in_folder(tmp_path, npz_path):
    assert data.find_data(tmp_path) == npz_path


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


def test_load_dataset_records_source_and_kind(npz_path):
    dataset = data.load_dataset(npz_path)
    assert dataset.kind == "npz" and dataset.source == npz_path and dataset.has_test_labels
    assert len(data.source_sha256(npz_path)) == 64


# --- layout -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data_format, shape", [("channels_last", (3, 28, 28, 1)), ("channels_first", (3, 1, 28, 28))]
)
def test_to_model_layout_scales_and_shapes(data_format, shape):
    x = np.array([np.full((28, 28), value, np.uint8) for value in (0, 51, 255)])
    scaled = data.to_model_layout(x, data_format)
    assert scaled.shape == shape and scaled.dtype == np.float32
    assert data.input_shape(data_format) == shape[1:]
    np.testing.assert_allclose(scaled.reshape(3, -1).max(axis=1), [0.0, 0.2, 1.0], rtol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_make_pipeline_matches_to_model_layout(data_format):
    (x_train, y_train), _ = make_arrays()
    pipeline = data.make_pipeline(x_train, y_train, batch_size=16, data_format=data_format)
    images, labels = next(iter(pipeline))
    np.testing.assert_allclose(images.numpy(), data.to_model_layout(x_train[:16], data_format))
    np.testing.assert_array_equal(labels.numpy().argmax(axis=1), y_train[:16])
    assert labels.shape == (16, 10)


def test_make_pipeline_shuffle_is_seeded():
    (x_train, _), _ = make_arrays()

    def first_batch(seed):
        pipeline = data.make_pipeline(x_train, batch_size=60, data_format="channels_last", shuffle=True, seed=seed)
        return next(iter(pipeline)).numpy()

    np.testing.assert_array_equal(first_batch(1), first_batch(1))
    assert not np.array_equal(first_batch(1), first_batch(2))


def test_resolve_data_format_falls_back_on_cpu(monkeypatch, caplog):
    monkeypatch.setattr(data, "_gpu_visible", lambda: False)
    monkeypatch.setattr(data, "_warned_channels_first", False)
    with caplog.at_level("WARNING"):
        assert data.resolve_data_format("channels_first") == "channels_last"
        assert data.resolve_data_format("channels_first") == "channels_last"
    assert sum("channels_first" in record.message for record in caplog.records) == 1
    assert data.resolve_data_format("channels_last") == "channels_last"


def test_resolve_data_format_keeps_channels_first_with_gpu(monkeypatch):
    monkeypatch.setattr(data, "_gpu_visible", lambda: True)
    assert data.resolve_data_format("channels_first") == "channels_first"
    with pytest.raises(KitError, match="Received: 'nchw'"):
        data.resolve_data_format("nchw")


def test_resolve_data_format_reads_keras_setting(monkeypatch):
    import keras

    monkeypatch.setattr(data, "_gpu_visible", lambda: True)
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        assert data.resolve_data_format() == "channels_first"
    finally:
        keras.config.set_image_data_format(previous)


# --- the embedded sample ----------------------------------------------------------------------------


def test_sample_arrays_are_stratified_real_digits():
    (x_train, y_train), (x_test, y_test) = data.sample_arrays()
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and x_train.max() == 255
    assert np.bincount(y_test, minlength=10).tolist() == [100] * 10


def test_prepare_input_writes_sample_once(tmp_path, caplog):
    with caplog.at_level("INFO"):
        written = data.prepare_input(tmp_path)
    assert written == tmp_path / "mnist.npz"
    assert "sample" in caplog.text and "kaggle.json" in caplog.text
    (x_train, _), (x_test, _) = data.load_npz(written)
    assert (len(x_train), len(x_test)) == (4000, 1000)
    modified = written.stat().st_mtime_ns
    assert data.prepare_input(tmp_path) == written
    assert written.stat().st_mtime_ns == modified
