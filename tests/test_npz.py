"""Tests of src.npz: an `.npz` the kit did not just write is read without trusting it.

Every header is checked before a byte of its array is allocated: no pickled objects, no negative dimensions,
sizes in Python's integers, the declared size and the zip entry's uncompressed size both capped. (The
property-based damage of headers and zip fields is in test_loaders_fuzz.py.)
"""

import struct
import zipfile

import numpy as np
import pytest

from conftest import npz_with_lying_header
from src import npz
from src.errors import KitError

ARRAYS = {"a": np.arange(12, dtype=np.float32), "b": np.zeros((3, 4), dtype=np.uint8)}


def read(path):
    return npz.read_npz(path, ("a", "b"), what="a test file", fix="Make it again.")


def count_bytes_read(monkeypatch) -> list[int]:
    """Counts the bytes read from zip members from now on."""
    counted = []
    original = zipfile.ZipExtFile.read

    def read_and_count(self, n=-1):
        data = original(self, n)
        counted.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read_and_count)
    return counted


def test_read_npz_reads_what_np_savez_wrote(tmp_path):
    for save in (np.savez, np.savez_compressed):
        save(tmp_path / "ok.npz", **ARRAYS)
        arrays = read(tmp_path / "ok.npz")
        for name, array in ARRAYS.items():
            np.testing.assert_array_equal(arrays[name], array)
            assert arrays[name].dtype == array.dtype


def test_read_npz_refuses_a_negative_dimension_before_reading_the_member(tmp_path, monkeypatch):
    # (-1,) made the size -1, which passed the size check, and read(-1) read the whole member into memory.
    path = npz_with_lying_header(tmp_path / "negative.npz", ARRAYS, "a", (-1,))
    counted = count_bytes_read(monkeypatch)
    with pytest.raises(KitError, match=r"a claims shape \(-1,\), with a negative dimension; the file is corrupt"):
        read(path)
    assert sum(counted) <= 128  # the header, not the array's 48 bytes after it read as one block


def test_read_npz_computes_sizes_with_python_integers(tmp_path):
    # 2**22 x 2**21 x 2**21 bytes is 2**64: a product in int64 wraps to 0, which passed for an empty array.
    shape = (2**22, 2**21, 2**21)
    path = npz_with_lying_header(tmp_path / "wraps.npz", ARRAYS, "a", shape, descr="|u1")
    with pytest.raises(KitError, match=r"a claims shape \(4,194,304, 2,097,152, 2,097,152\) \(at least 2\*\*64 "
                                       r"bytes\), more than the 1,073,741,824 an array may have"):
        read(path)


@pytest.mark.parametrize("shape", [(2**37, 10), (2**40,), (10**30, 10**30)])
def test_read_npz_refuses_a_header_that_claims_terabytes_in_one_line(tmp_path, shape):
    path = npz_with_lying_header(tmp_path / "huge.npz", ARRAYS, "a", shape, compressed=True)
    with pytest.raises(KitError, match="more than the 1,073,741,824") as raised:
        read(path)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


def test_read_npz_refuses_a_header_that_claims_more_than_the_entry_holds(tmp_path):
    path = npz_with_lying_header(tmp_path / "short.npz", ARRAYS, "a", (1000,))
    with pytest.raises(KitError, match=r"a claims shape \(1,000,\) \(4,000 bytes\) but its zip entry holds 48 after "
                                       "the header"):
        read(path)


def test_read_npz_caps_a_zip_entry_s_uncompressed_size(tmp_path):
    np.savez(tmp_path / "entry.npz", **ARRAYS)
    content = bytearray((tmp_path / "entry.npz").read_bytes())
    central = content.index(b"PK\x01\x02")  # the first member's record in the central directory
    struct.pack_into("<I", content, central + 24, 2**32 - 1)  # its uncompressed size
    (tmp_path / "entry.npz").write_bytes(bytes(content))
    with pytest.raises(KitError, match=r"a's zip entry claims 4,294,967,295 bytes uncompressed, more than the "
                                       "1,073,741,824 an array may have"):
        read(tmp_path / "entry.npz")


def test_read_npz_never_unpickles_and_names_what_is_missing(tmp_path):
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object), b=ARRAYS["b"])
    with pytest.raises(KitError, match="a holds Python objects, which need pickle to load"):
        read(tmp_path / "objects.npz")
    np.savez(tmp_path / "partial.npz", a=ARRAYS["a"])
    with pytest.raises(KitError, match=r"lacks b; a test file needs a, b. Received keys: \['a'\]"):
        read(tmp_path / "partial.npz")
    with pytest.raises(KitError, match="missing.npz is missing"):
        read(tmp_path / "missing.npz")
