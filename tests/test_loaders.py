"""Tests of src.loaders: an `mnist.npz` in the Keras layout and the competition's CSVs, and what they refuse."""

import io
import zipfile

import numpy as np
import pytest

from conftest import make_arrays, write_competition
from src import loaders
from src.errors import KitError


def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def valid_arrays():
    (x_train, y_train), (x_test, y_test) = make_arrays()
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


# --- load_npz -------------------------------------------------------------------------------------


def test_load_npz_returns_keras_layout(npz_path):
    (x_train, y_train), (x_test, y_test) = loaders.load_npz(npz_path)
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
    (x_train, _), (_, y_test) = loaders.load_npz(save_npz(tmp_path / "flat.npz", **arrays))
    assert x_train.shape == (60, 28, 28) and x_train.dtype == np.uint8
    assert y_test.dtype == np.uint8


def test_load_npz_reads_compressed_and_fortran_arrays(tmp_path):
    arrays = valid_arrays()
    arrays["x_test"] = np.asfortranarray(arrays["x_test"])
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **arrays)
    (_, _), (x_test, _) = loaders.load_npz(path)
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
        loaders.load_npz(path)


def test_load_npz_refuses_pickled_objects(tmp_path):
    arrays = valid_arrays()
    arrays["y_train"] = np.array([object()] * 60, dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays)
    with pytest.raises(KitError, match="pickle"):
        loaders.load_npz(path)


def test_load_npz_rejects_missing_file_and_non_zip(tmp_path):
    with pytest.raises(KitError, match="not a file"):
        loaders.load_npz(tmp_path / "absent.npz")
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(KitError, match="not an .npz"):
        loaders.load_npz(text)


def test_load_npz_rejects_truncated_file(npz_path):
    content = npz_path.read_bytes()
    npz_path.write_bytes(content[: len(content) // 2])
    with pytest.raises(KitError):
        loaders.load_npz(npz_path)


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
        loaders.load_npz(path)


# --- load_competition ------------------------------------------------------------------------------


def test_load_competition_returns_images_and_no_test_labels(competition_dir):
    (x_train, y_train), (x_test, y_test) = loaders.load_competition(competition_dir)
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
        (lambda text: text.replace("\n", "\n1.5,", 2).replace("1.5,", "", 1), r"row 2 \(line 3\) has 786 fields"),
        (lambda text: text.replace("\n", "\n0.5", 1), "not a whole number"),  # a label 0.53, 0.57, ...
        (lambda text: text + "3," + ",".join(["0"] * 783) + "\n", r"row 61 \(line 62\) has 784 fields"),
        (lambda text: text.split("\n")[0] + "\n", "no rows"),
    ],
)
def test_load_competition_rejects_bad_train_csv(competition_dir, edit, message):
    train = competition_dir / "train.csv"
    train.write_text(edit(train.read_text()))
    with pytest.raises(KitError, match=message):
        loaders.load_competition(competition_dir)


@pytest.mark.parametrize("rows", ["every", "first", "last"])
def test_load_competition_refuses_a_row_with_one_more_field_naming_it(tmp_path, rows):
    # Real MNIST's corner pixel is 0: with a column too many, pandas took the first field as an index, the labels
    # became pixel0 (all 0, valid digits) and the shifted pixels passed too.
    (x_train, y_train), (x_test, _) = make_arrays()
    x_train[:, 0, 0] = 0
    folder = write_competition(tmp_path / "competition", x_train, y_train, x_test)
    lines = (folder / "train.csv").read_text().splitlines()
    chosen = {"every": range(1, len(lines)), "first": [1], "last": [len(lines) - 1]}[rows]
    for index in chosen:
        lines[index] += ",0"  # a value too many at the end: a trailing comma, a column that was not cut
    (folder / "train.csv").write_text("\n".join(lines) + "\n")

    row = 1 if rows != "last" else len(lines) - 1
    with pytest.raises(KitError, match=rf"train.csv: row {row} \(line {row + 1}\) has 786 fields but the header has "
                                       "785") as raised:
        loaders.load_competition(folder)
    assert "\n" not in str(raised.value)


def test_load_competition_rejects_bad_values(tmp_path):
    (x_train, y_train), (x_test, _) = make_arrays()
    y_bad = y_train.astype(int)
    y_bad[3] = 11
    write_competition(tmp_path / "labels", x_train, y_bad, x_test)
    with pytest.raises(KitError, match="outside 0-9"):
        loaders.load_competition(tmp_path / "labels")
    x_bad = x_test.astype(int)
    x_bad[0, 0, 0] = 256
    write_competition(tmp_path / "pixels", x_train, y_train, x_bad)
    with pytest.raises(KitError, match="outside 0-255"):
        loaders.load_competition(tmp_path / "pixels")


def test_load_competition_rejects_missing_value(competition_dir):
    test = competition_dir / "test.csv"
    lines = test.read_text().splitlines()
    lines[1] = "," + lines[1].split(",", 1)[1]
    test.write_text("\n".join(lines) + "\n")
    with pytest.raises(KitError, match="test.csv"):
        loaders.load_competition(competition_dir)


def test_load_competition_rejects_missing_test_csv(competition_dir):
    (competition_dir / "test.csv").unlink()
    with pytest.raises(KitError, match="test.csv is missing"):
        loaders.load_competition(competition_dir)
