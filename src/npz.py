"""Reading `.npz` files the kit did not just write, without trusting them.

An `.npz` is a zip of `.npy` members. Every `.npz` the kit reads back goes through `read_npz`: an `mnist.npz`
(`src.loaders`), a run's probabilities (`src.records`, for blends), a saved fold (`src.results`, for resumes and the
fold kernels' downloads that `make collect` blends). Before a byte of an array is allocated, its zip entry and its
`.npy` header are checked: no pickled objects, no negative dimensions, sizes computed with Python's integers (no
overflow), the declared size and the entry's uncompressed size both capped and consistent. So a header that claims
terabytes is one line naming the file, never a MemoryError.
"""

import math
import tokenize
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src.errors import KitError

# MNIST's largest array is 47 MB (60,000 images as uint8; 376 MB saved as int64). A member that claims more than
# this is corrupt or not the kit's, not large.
MAX_ARRAY_BYTES = 1 << 30
# np.save's header: a 10-byte preamble and a padded dict; numpy refuses headers longer than 10,000 bytes.
MAX_HEADER_BYTES = 10_000 + 12
NPY_VERSIONS = ((1, 0), (2, 0))
# What np.savez writes (np.savez_compressed deflates); anything else was not written by numpy.
COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# Plain arrays: booleans, integers, floats, complex numbers, and strings (a saved fold's JSON summary).
DTYPE_KINDS = "biufcUS"


def _number_text(value: int) -> str:
    """Returns `value` with thousands separators, or its order of magnitude when it is absurdly large."""
    if abs(value) < 10**18:
        return f"{value:,}"
    return f"{'-' if value < 0 else ''}at least 2**{abs(value).bit_length() - 1}"


def _reason(error: BaseException) -> str:
    """Returns the first line of an exception's message, at most 160 characters (zipfile quotes raw names)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(_number_text(dimension) if isinstance(dimension, int) else repr(dimension)
                           for dimension in shape) + ("," if len(shape) == 1 else "") + ")"


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, source: Path, fix: str) -> np.ndarray:
    """Reads one `.npy` member, checking its zip entry and its header before allocating anything."""
    if info.flag_bits & 0x1:
        raise KitError(f"{source}: {key} is encrypted; np.savez never encrypts, so the file is not an .npz the kit "
                       f"can read. {fix}")
    if info.compress_type not in COMPRESSIONS:
        raise KitError(f"{source}: {key} uses zip compression method {info.compress_type}; np.savez writes stored "
                       f"(0) or deflated (8) members, so the file is corrupt. {fix}")
    if info.file_size > MAX_ARRAY_BYTES + MAX_HEADER_BYTES:
        raise KitError(f"{source}: {key}'s zip entry claims {_number_text(info.file_size)} bytes uncompressed, more "
                       f"than the {_number_text(MAX_ARRAY_BYTES)} an array may have; the file is corrupt. {fix}")
    with archive.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version not in NPY_VERSIONS:
                raise KitError(f"{source}: {key} has .npy format version {version[0]}.{version[1]}; the kit reads "
                               f"versions 1.0 and 2.0, which np.save writes. {fix}")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(stream)
        except KitError:
            raise
        # numpy's own checks of the magic string and the header; its fallback parser for headers written by
        # Python 2 lets tokenize's error of an unclosed bracket through.
        except (ValueError, tokenize.TokenError) as error:
            raise KitError(f"{source}: {key} is not a valid .npy array ({_reason(error)}). {fix}") from None
        if dtype.hasobject:
            raise KitError(f"{source}: {key} holds Python objects, which need pickle to load; the kit never "
                           "unpickles data. Save plain numeric arrays (np.savez with uint8 arrays).")
        if dtype.kind not in DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None \
                or dtype.itemsize == 0:
            raise KitError(f"{source}: {key} has dtype {dtype}; the kit reads plain arrays of numbers (or text). "
                           f"{fix}")
        if any(dimension < 0 for dimension in shape):
            raise KitError(f"{source}: {key} claims shape {_shape_text(shape)}, with a negative dimension; the "
                           f"file is corrupt. {fix}")
        if any(dimension > MAX_ARRAY_BYTES for dimension in shape):  # even in an empty array, numpy refuses it
            raise KitError(f"{source}: {key} claims shape {_shape_text(shape)}, with a dimension of more than the "
                           f"{_number_text(MAX_ARRAY_BYTES)} elements an array may have; the file is corrupt. {fix}")
        size = math.prod(shape) * dtype.itemsize  # Python's integers: a product of huge dimensions never wraps
        if size > MAX_ARRAY_BYTES:
            raise KitError(f"{source}: {key} claims shape {_shape_text(shape)} ({_number_text(size)} bytes), more "
                           f"than the {_number_text(MAX_ARRAY_BYTES)} an array may have; the file is corrupt. {fix}")
        available = info.file_size - stream.tell()
        if size > available:
            raise KitError(f"{source}: {key} claims shape {_shape_text(shape)} ({_number_text(size)} bytes) but "
                           f"its zip entry holds {_number_text(max(available, 0))} after the header; the file is "
                           f"corrupt. {fix}")
        buffer = stream.read(size)
        if len(buffer) != size:
            raise KitError(f"{source}: {key} is truncated ({len(buffer):,} of {size:,} bytes). {fix}")
        # Reading on to the entry's end makes zipfile check its CRC-32; nothing may follow the array.
        if stream.read(1):
            raise KitError(f"{source}: {key} holds more bytes than its header declares; the file is corrupt. {fix}")
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order="F" if fortran_order else "C")


def read_npz(path: str | Path, required: Sequence[str], optional: Sequence[str] = (), *, what: str,
             fix: str) -> dict[str, np.ndarray]:
    """Reads named arrays of an `.npz`, never unpickling and checking every header before allocating.

    Args:
        path: the `.npz`.
        required: the arrays it must hold, e.g. `("test_probabilities",)`.
        optional: arrays read when present.
        what: what the file is, for messages, e.g. `"an mnist.npz"`.
        fix: what to do when it is broken, one sentence, e.g. `"Re-create or re-download it."`.

    Returns:
        The arrays read, by name (read-only views of the bytes read).

    Raises:
        KitError: the file is missing, not a zip, damaged, lacks a required array, or an array's entry or header
            is unsafe or inconsistent; one line naming the file and the problem.
    """
    source = Path(path)
    try:
        with zipfile.ZipFile(source) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            missing = [key for key in required if f"{key}.npy" not in infos]
            if missing:
                present = sorted(name.removesuffix(".npy") for name in infos)[:20]
                raise KitError(f"{source} lacks {', '.join(missing)}; {what} needs {', '.join(required)}. "
                               f"Received keys: {present}.")
            wanted = [key for key in (*required, *optional) if f"{key}.npy" in infos]
            size = source.stat().st_size
            for key in wanted:
                if not 0 <= infos[f"{key}.npy"].header_offset < size:
                    raise KitError(f"{source} is damaged: its zip directory places {key} outside the file. {fix}")
            return {key: _read_member(archive, infos[f"{key}.npy"], key, source, fix) for key in wanted}
    except FileNotFoundError:
        raise KitError(f"{source} is missing; {what} is needed there. {fix}") from None
    except zipfile.BadZipFile as error:  # a damaged directory, header, name or CRC-32
        raise KitError(f"{source} is not {what} or is damaged ({_reason(error)}). {fix}") from None
    except (EOFError, zlib.error) as error:  # a member that ends early, or whose deflated data is damaged
        raise KitError(f"{source} is damaged ({type(error).__name__}: {_reason(error)}). {fix}") from None
    except NotImplementedError as error:  # zipfile meets a feature numpy never writes (patched data, ...)
        raise KitError(f"{source} uses a zip feature np.savez never writes ({_reason(error)}); it is damaged. "
                       f"{fix}") from None
    except UnicodeDecodeError:  # a member name flagged UTF-8 that is not
        raise KitError(f"{source} is damaged (a member name is not valid UTF-8). {fix}") from None
    except OSError as error:
        raise KitError(f"Cannot read {source} ({error.strerror or _reason(error)}). {fix}") from None
