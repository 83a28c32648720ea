"""Property-based tests of src.loaders: damaged `.npz` and CSV files only ever raise the kit's own error.

Truncations, bit flips, byte edits and absurd header sizes must give `KitError` (one clear line at the
command line), never another exception, a hang or a huge allocation.
"""

import io
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import make_arrays, write_competition
from src import loaders, mnist
from src.errors import KitError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def valid_npz_bytes(compressed: bool) -> bytes:
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class=2, test_rows=4)
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return buffer.getvalue()


NPZ = {False: valid_npz_bytes(False), True: valid_npz_bytes(True)}


def load_or_kit_error(path):
    """Loads `path`; a `KitError` is an acceptable answer, any other exception fails the test."""
    try:
        (x_train, y_train), (x_test, y_test) = loaders.load_npz(path) if path.suffix == ".npz" else \
            loaders.load_competition(path)
    except KitError as error:
        assert "\n" not in str(error)
        return None
    # Whatever loads must be valid data.
    assert x_train.dtype == np.uint8 and x_train.shape[1:] == (28, 28)
    assert y_train.max() <= 9 and len(y_train) == len(x_train)
    return x_test, y_test


@FUZZ
@given(compressed=st.booleans(), data_strategy=st.data())
@example(compressed=False, data_strategy=None)
def test_load_npz_survives_truncation(tmp_path, compressed, data_strategy):
    content = NPZ[compressed]
    cut = len(content) // 3 if data_strategy is None else data_strategy.draw(st.integers(0, len(content) - 1))
    path = tmp_path / "cut.npz"
    path.write_bytes(content[:cut])
    assert load_or_kit_error(path) is None


@FUZZ
@given(compressed=st.booleans(), flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1,
                                                max_size=8))
def test_load_npz_survives_bit_flips(tmp_path, compressed, flips):
    content = bytearray(NPZ[compressed])
    for position, bit in flips:
        content[position % len(content)] ^= 1 << bit
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(content))
    load_or_kit_error(path)


@FUZZ
@given(
    key=st.sampled_from(["x_train", "y_train", "x_test", "y_test"]),
    shape=st.lists(st.integers(0, 2**40), min_size=0, max_size=4).map(tuple),
    descr=st.sampled_from(["|u1", "<i8", "<f4", "|O", "<U3", "|b1", "<c8"]),
)
def test_load_npz_checks_headers_before_allocating(tmp_path, key, shape, descr):
    (x_train, y_train), (x_test, y_test) = make_arrays(train_per_class=2, test_rows=4)
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    path = tmp_path / "header.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array)
            content = buffer.getvalue()
            if name == key:
                header = {"descr": descr, "fortran_order": False, "shape": shape}
                lying = io.BytesIO()
                np.lib.format.write_array_header_1_0(lying, header)
                content = lying.getvalue() + content[len(content) - array.nbytes:]
            archive.writestr(f"{name}.npy", content)
    load_or_kit_error(path)


CSV_DIR_CACHE = {}


def competition_bytes():
    if not CSV_DIR_CACHE:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as folder:
            (x_train, y_train), (x_test, _) = make_arrays(train_per_class=1, test_rows=3)
            written = write_competition(Path(folder), x_train, y_train, x_test)
            CSV_DIR_CACHE.update({name: (written / name).read_bytes() for name in ("train.csv", "test.csv")})
    return CSV_DIR_CACHE


@FUZZ
@given(
    which=st.sampled_from(["train.csv", "test.csv"]),
    edits=st.lists(
        st.tuples(st.integers(0, 10**9), st.sampled_from([b"", b",", b"\n", b"-", b".", b"x", b"9999", b"\x00", b"\xff",
                                                          b"\"", b"NaN", b" "])),
        min_size=1, max_size=6,
    ),
    truncate=st.booleans(),
)
def test_load_competition_survives_edits(tmp_path, which, edits, truncate):
    originals = competition_bytes()
    content = bytearray(originals[which])
    for position, replacement in edits:
        position %= len(content)
        content[position:position + 1] = replacement
    if truncate:
        content = content[: edits[0][0] % len(content)]
    folder = tmp_path / "competition"
    folder.mkdir(exist_ok=True)
    for name, original in originals.items():
        (folder / name).write_bytes(bytes(content) if name == which else original)
    load_or_kit_error(folder)


def test_load_npz_rejects_member_that_is_not_npy(tmp_path):
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key in mnist.NPZ_KEYS:
            archive.writestr(f"{key}.npy", b"hello, not an array")
    with pytest.raises(KitError, match="not a valid .npy"):
        loaders.load_npz(path)
