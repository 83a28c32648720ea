"""Property-based tests of src.loaders (and src.npz under it): damaged `.npz` and CSV files are refused, each for
its own reason, within bounded time and memory.

The `.npz` cases are structured damage: lying `.npy` headers (shapes, dtypes, fortran order, format versions,
header syntax) and damaged zip fields (the central directory's sizes, CRC-32, method, flags, offsets and name
lengths, the local headers, the end record), besides truncations and bit flips. Each case is loaded in a worker
process that runs under a memory limit (`resource.setrlimit(RLIMIT_AS)`) with the array cap lowered to
`CAP_BYTES`, and each load has a deadline: a loader that allocated what a header claims, or hung, fails the
test instead of taking the machine down. The expected reason is worked out here from the damage done, not
from the loader's code.

`DIGIT_KIT_FUZZ_EXAMPLES` sets the examples per property (default `DEFAULT_EXAMPLES`), for a long run by hand.
"""

import io
import json
import os
import re
import select
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import make_arrays, write_competition
from src import loaders, mnist, paths
from src.errors import KitError

DEFAULT_EXAMPLES = 60
EXAMPLES = int(os.environ.get("DIGIT_KIT_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])
# The worker's array cap and its memory budget above what it holds once its imports are done: a load that
# allocated what a lying header or zip entry claims would need far more than the budget.
CAP_BYTES = 8 << 20
MEMORY_BUDGET_BYTES = 192 << 20
# Seconds one load may take (the files are a few kilobytes; a load takes milliseconds).
LOAD_DEADLINE_SECONDS = 30

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the memory limit is RLIMIT_AS, which only Linux enforces")

WORKER = r"""
import json, resource, sys, time, traceback

from src import loaders, npz
from src.errors import KitError

npz.MAX_ARRAY_BYTES = int(sys.argv[1])
exec(sys.argv[3])  # a test's change to the loader, if any


def mapped_bytes():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))


limit = mapped_bytes() + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    started = time.perf_counter()
    try:
        (x_train, y_train), (x_test, y_test) = loaders.load_npz(line.rstrip("\n"))
        answer = {"outcome": "loaded", "arrays": {name: [array.dtype.str, list(array.shape), array.tobytes().hex()]
                                                  for name, array in zip(("x_train", "y_train", "x_test", "y_test"),
                                                                         (x_train, y_train, x_test, y_test))}}
    except KitError as error:
        answer = {"outcome": "refused", "message": str(error)}
    except MemoryError:
        answer = {"outcome": "memory", "message": traceback.format_exc()[-1500:]}
    except BaseException as error:
        answer = {"outcome": "other", "message": traceback.format_exc()[-3000:]}
    answer["seconds"] = time.perf_counter() - started
    print(json.dumps(answer), flush=True)
"""


class LimitedLoader:
    """A worker process that loads `.npz` files under a memory limit, each within a deadline."""

    def __init__(self, patch: str = ""):
        self.patch = patch
        self.process = None

    def _start(self):
        environment = {**os.environ, "PYTHONPATH": str(paths.REPO_ROOT), "OPENBLAS_NUM_THREADS": "1",
                       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-c", WORKER, str(CAP_BYTES), str(MEMORY_BUDGET_BYTES),
                                         self.patch],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment,
                                        cwd=paths.REPO_ROOT)
        assert self._answer(120) == {"ready": True}

    def _answer(self, timeout: float) -> dict | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def load(self, path) -> dict:
        """Returns the worker's answer: `outcome` (loaded, refused, memory, other, or hung) and details."""
        if self.process is None or self.process.poll() is not None:
            self._start()
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        answer = self._answer(LOAD_DEADLINE_SECONDS)
        if answer is None:
            self.stop()
            return {"outcome": "hung", "message": f"no answer in {LOAD_DEADLINE_SECONDS} s"}
        return answer

    def stop(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def limited():
    worker = LimitedLoader()
    yield worker
    worker.stop()


ARRAYS = dict(zip(mnist.NPZ_KEYS, (array for pair in make_arrays(train_per_class=2, test_rows=4) for array in pair)))


def npz_bytes(members: dict[str, bytes], compressed: bool) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, content in members.items():
            archive.writestr(f"{name}.npy", content)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


VALID = {compressed: npz_bytes({name: npy_bytes(array) for name, array in ARRAYS.items()}, compressed)
         for compressed in (False, True)}

# What each kind of refusal says (the loader's one line), and what validation says of arrays that did load.
REASONS = {
    "version": r"has \.npy format version",
    "header": r"is not a valid \.npy array",
    "objects": r"holds Python objects",
    "dtype": r"has dtype",
    "negative": r"with a negative dimension",
    "huge dimension": r"with a dimension of more than the 8,388,608 elements an array may have",
    "over cap": r"claims shape .* bytes\), more than the 8,388,608 an array may have",
    "entry over cap": r"zip entry claims [\d,]+ bytes uncompressed, more than the 8,388,608",
    "short": r"but its zip entry holds",
    "trailing": r"holds more bytes than its header declares",
    "truncated": r"is truncated",
    "crc": r"Bad CRC-32",
    "encrypted": r"is encrypted",
    "method": r"uses zip compression method",
    "feature": r"uses a zip feature np\.savez never writes",
    "damaged": r"is damaged|or is damaged",
    "missing": r"lacks ",
    "not zip": r"is not an \.npz file \(not a zip archive\)",
}
VALIDATION = r"must hold 28x28 images|is empty|must hold numbers 0-255|pixels outside 0-255|NaN or infinite|" \
             r"fractional pixels|one label per image|integer labels|labels but|labels outside 0-9"
# Damage that leaves a zip unreadable in ways zipfile itself words (a CRC, a header, a stream that ends).
CORRUPT = ("crc", "damaged", "truncated", "header", "short", "trailing")


def check_outcome(answer: dict, allowed: set[str], *, identical_allowed: bool = False,
                  validation_allowed: bool = False) -> None:
    """Asserts the load was bounded and refused for one of the `allowed` reasons (or loaded, where allowed)."""
    assert answer["outcome"] in ("loaded", "refused"), answer["message"]
    assert answer["seconds"] < LOAD_DEADLINE_SECONDS
    if answer["outcome"] == "loaded":
        assert identical_allowed or validation_allowed, "the damaged file loaded"
        if identical_allowed and not validation_allowed:
            # Damage the zip format tolerates (a field zipfile does not use): every array is the original.
            for name, (dtype, shape, content) in answer["arrays"].items():
                original = ARRAYS[name]
                assert (np.dtype(dtype), tuple(shape), bytes.fromhex(content)) == \
                    (original.dtype, original.shape, original.tobytes()), name
        return
    message = answer["message"]
    assert "\n" not in message and len(message) < 1000
    patterns = [REASONS[reason] for reason in sorted(allowed)] + ([VALIDATION] if validation_allowed else [])
    assert any(re.search(pattern, message) for pattern in patterns), (sorted(allowed), message)


# --- lying .npy headers -------------------------------------------------------------------------------------


def header_text(descr: str, fortran: str, shape: str, form: str) -> str:
    """Returns an .npy header dict as text: well formed, or broken in the way `form` names."""
    entries = {"descr": descr, "fortran_order": fortran, "shape": shape}
    if form == "missing key":
        entries.pop("fortran_order")
    if form == "extra key":
        entries["pickle"] = "True"
    text = "{" + "".join(f"'{key}': {value}, " for key, value in entries.items()) + "}"
    return {"list": "[" + text[1:-1] + "]", "syntax": text[:-3] + "(}"}.get(form, text)


def padded_header(version: tuple[int, int], header: str) -> bytes:
    """Returns the header as np.save pads it: spaces and a newline, to a multiple of 64 bytes with the preamble."""
    encoded = header.encode("latin1")
    preamble = len(np.lib.format.MAGIC_PREFIX) + 2 + (2 if version[0] < 2 else 4)
    return encoded + b" " * ((-(preamble + len(encoded) + 1)) % 64) + b"\n"


def npy_with_header(version: tuple[int, int], header: str, payload: bytes) -> bytes:
    padded = padded_header(version, header)
    length = struct.pack("<H" if version[0] < 2 else "<I", len(padded))
    return np.lib.format.MAGIC_PREFIX + bytes(version) + length + padded + payload


def dimension_text(dimension: int) -> str:
    # Python refuses to parse decimal integers of more than 4,300 digits; hexadecimal has no such limit.
    return hex(dimension) if dimension.bit_length() > 4000 else str(dimension)


DESCRS = {  # descr text -> (dtype or None when numpy refuses it)
    "'|u1'": np.dtype("u1"), "'<i8'": np.dtype("<i8"), "'>f8'": np.dtype(">f8"), "'<f4'": np.dtype("<f4"),
    "'|b1'": np.dtype("?"), "'<c8'": np.dtype("<c8"), "'<U3'": np.dtype("<U3"), "'|S2'": np.dtype("S2"),
    "'|O'": np.dtype("O"), "[('a', '|O')]": np.dtype([("a", "O")]), "[('a', '<u1')]": np.dtype([("a", "u1")]),
    "'<M8[ns]'": np.dtype("<M8[ns]"), "'|V8'": np.dtype("V8"), "'<U0'": np.dtype("<U0"), "'|V0'": np.dtype("V0"),
    "'not a dtype'": None, "42": None,
}
FORTRANS = {"False": False, "True": True, "0": None, "1": None, "'yes'": None, "None": None}
dimensions = st.one_of(st.integers(0, 64), st.integers(-3, -1), st.integers(0, 2**64),
                       st.integers(2**62, 2**14000))  # repr() refuses more than 4,300 digits


@FUZZ
@given(
    key=st.sampled_from(mnist.NPZ_KEYS),
    version=st.sampled_from([(1, 0), (2, 0), (1, 0), (2, 0), (3, 0), (0, 0), (1, 1), (255, 255)]),
    descr=st.sampled_from(sorted(DESCRS)),
    fortran=st.sampled_from(sorted(FORTRANS)),
    shape=st.one_of(st.lists(dimensions, max_size=4).map(tuple), st.just("original")),
    shape_form=st.sampled_from(["tuple", "tuple", "tuple", "list", "float"]),
    form=st.sampled_from(["dict"] * 6 + ["missing key", "extra key", "list", "syntax"]),
    payload=st.sampled_from(["fit", "original", "fit"]),
    compressed=st.booleans(),
)
@example(key="x_train", version=(1, 0), descr="'|u1'", fortran="False", shape=(-1,), shape_form="tuple",
         form="dict", payload="original", compressed=False)
@example(key="y_test", version=(1, 0), descr="'<f4'", fortran="False", shape=(2**40, 2**40), shape_form="tuple",
         form="dict", payload="original", compressed=True)
def test_load_npz_refuses_each_lying_header_for_its_own_reason(limited, tmp_path, key, version, descr, fortran,
                                                               shape, shape_form, form, payload, compressed):
    original = ARRAYS[key]
    if shape == "original":
        shape = original.shape
    dtype, fortran_order = DESCRS[descr], FORTRANS[fortran]
    shape_text = "(" + "".join(f"{dimension_text(dimension)}, " for dimension in shape) + ")"
    if shape_form == "list":
        shape_text = "[" + shape_text[1:-1] + "]"
    elif shape_form == "float":
        shape_text = "(" + "".join(f"{dimension_text(dimension)}.0, " for dimension in shape) + "1.5,)"
    size = None
    if dtype is not None:
        size = int(np.prod(shape, dtype=object) if shape else 1) * dtype.itemsize
    content = original.tobytes()
    if payload == "fit" and size is not None and 0 <= size <= 1 << 16:
        content = (content * (size // max(len(content), 1) + 1))[:size]
    header = header_text(descr, fortran, shape_text, form)
    member = npy_with_header(version, header, content)
    path = tmp_path / "header.npz"
    path.write_bytes(npz_bytes({**{name: npy_bytes(array) for name, array in ARRAYS.items()}, key: member},
                               compressed))

    answer = limited.load(path)

    # The reason the loader must give, from the damage done: the first broken thing in reading order.
    if version not in ((1, 0), (2, 0)):
        expected = "version"
    elif form != "dict" or shape_form != "tuple" or fortran_order is None or dtype is None or \
            len(padded_header(version, header)) > 10_000:  # numpy refuses headers longer than that
        expected = "header"
    elif dtype.hasobject:
        expected = "objects"
    elif dtype.kind not in "biufcUS" or dtype.fields is not None or dtype.itemsize == 0:
        expected = "dtype"
    elif any(dimension < 0 for dimension in shape):
        expected = "negative"
    elif any(dimension > CAP_BYTES for dimension in shape):
        expected = "huge dimension"
    elif size > CAP_BYTES:
        expected = "over cap"
    elif size > len(content):
        expected = "short"
    elif size < len(content):
        expected = "trailing"
    else:  # an honest header: the arrays load, and validation judges them
        check_outcome(answer, set(), identical_allowed=True, validation_allowed=True)
        return
    check_outcome(answer, {expected})


# --- damaged zip fields ---------------------------------------------------------------------------------------

# record -> its layout; field -> (record, index in the record's layout)
LAYOUTS = {
    "central": struct.Struct("<4s6H3I5H2I"),  # a central directory file header, 46 bytes
    "local": struct.Struct("<4s5H3I2H"),  # a local file header, 30 bytes
    "end": struct.Struct("<4s4H2IH"),  # the end of central directory record, 22 bytes
}
FIELDS = {
    "central flags": 3, "central method": 4, "central crc": 7, "central compressed size": 8, "central size": 9,
    "central name length": 10, "central extra length": 11, "central offset": 16,
    "local flags": 2, "local name length": 9, "local extra length": 10, "local name": None,
    "end entries": 4, "end directory size": 5, "end directory offset": 6,
}


def field_bits(field: str) -> int:
    record, index = field.split()[0], FIELDS[field]
    codes = [code for count, code in re.findall(r"(\d*)([sHI])", LAYOUTS[record].format)
             for _ in range(1 if code == "s" else int(count or 1))]
    return 8 if index is None else {"H": 16, "I": 32}[codes[index]]


def damage_zip(content: bytes, member: int, field: str, value: int) -> tuple[bytes, int]:
    """Returns `content` with one field of member `member`'s zip records (or of the end record) set to `value`
    (for `local name`, one byte of the name changed), and the field's original value."""
    data = bytearray(content)
    record, index = field.split()[0], FIELDS[field]
    end_at = data.rindex(b"PK\x05\x06")
    at, layout = end_at, LAYOUTS["end"]
    if record != "end":
        central_at = LAYOUTS["end"].unpack_from(data, end_at)[6]
        for _ in range(member):
            header = LAYOUTS["central"].unpack_from(data, central_at)
            central_at += LAYOUTS["central"].size + header[10] + header[11] + header[12]
        at, layout = central_at, LAYOUTS["central"]
        if record == "local":
            at, layout = LAYOUTS["central"].unpack_from(data, central_at)[16], LAYOUTS["local"]
    values = list(layout.unpack_from(data, at))
    if index is None:  # one byte of the local header's name
        name_at = at + layout.size + value % values[9]
        original = data[name_at]
        data[name_at] = (original + 1 + value % 254) % 256
        return bytes(data), original
    original, values[index] = values[index], value
    layout.pack_into(data, at, *values)
    return bytes(data), original


def expected_for_field(field: str, value: int, original: int, last: bool) -> tuple[set[str], bool]:
    """Returns the reasons a damaged field may be refused for, and whether the file may load unchanged: what the
    zip format does with the field, worked out from the format (zipfile reads the central directory, checks each
    local header's name, skips the local extra field, and stops a member at its uncompressed size). `last`: the
    member's record is the directory's last."""
    if value == original and field != "local name":
        return set(), True
    if field == "central flags":  # encryption (bit 0), patched data (5), strong encryption (6); others are unused
        return ({"encrypted"}, False) if value & 0x1 else ({"feature"}, False) if value & 0x60 else (set(), True)
    if field == "central method":
        return ({"method"}, False) if value not in COMPRESSIONS else (set(CORRUPT), False)
    if field == "central crc":
        return {"crc"}, False
    if field == "central compressed size":  # a member ends early; a larger one stops at its uncompressed size
        return (set(CORRUPT), False) if value < original else (set(), True)
    if field == "central size":
        if value > CAP_BYTES + 10_012:
            return {"entry over cap"}, False
        return ({"short", "crc", "header"}, False) if value < original else (set(), True)
    if field in ("central name length", "central extra length"):
        # zipfile reads the directory as a block of the size the end record gives: the last record's name or
        # extra field may run past the block's end unnoticed (it reads what is there).
        return {"damaged", "missing"}, last and value > original
    if field == "central offset":
        return {"damaged"}, False
    if field == "local flags":  # zipfile reads only the UTF-8 bit here, and the names are ASCII
        return set(), True
    if field in ("local name length", "local name"):
        return {"damaged"}, False
    if field == "local extra length":
        return set(CORRUPT), False
    if field == "end entries":  # zipfile reads the directory by its size, not its count
        return set(), True
    return {"damaged", "missing", "not zip"}, False  # the directory's size or offset


COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


@st.composite
def zip_damage(draw):
    field = draw(st.sampled_from(sorted(FIELDS)))
    top = (1 << field_bits(field)) - 1
    value = draw(st.one_of(st.integers(0, top), st.sampled_from([0, 1, 8, 12, 14, 99, 0x20, 0x40, 0x800, top])))
    return field, value


@FUZZ
@given(compressed=st.booleans(), member=st.integers(0, 3), damage=zip_damage())
@example(compressed=False, member=0, damage=("central size", 2**32 - 1))
@example(compressed=True, member=2, damage=("central flags", 0x1))
def test_load_npz_refuses_each_damaged_zip_field_for_its_own_reason(limited, tmp_path, compressed, member, damage):
    field, value = damage
    content, original = damage_zip(VALID[compressed], member, field, value)
    path = tmp_path / "zip.npz"
    path.write_bytes(content)

    allowed, may_load = expected_for_field(field, value, original, last=member == len(ARRAYS) - 1)
    check_outcome(limited.load(path), allowed, identical_allowed=may_load)


# --- truncations and bit flips --------------------------------------------------------------------------------


@FUZZ
@given(compressed=st.booleans(), data_strategy=st.data())
@example(compressed=False, data_strategy=None)
def test_load_npz_refuses_a_truncated_file(limited, tmp_path, compressed, data_strategy):
    content = VALID[compressed]
    cut = len(content) // 3 if data_strategy is None else data_strategy.draw(st.integers(0, len(content) - 1))
    path = tmp_path / "cut.npz"
    path.write_bytes(content[:cut])
    # The end record is at the end: a truncated file is no longer a zip.
    check_outcome(limited.load(path), {"not zip"})


@FUZZ
@given(compressed=st.booleans(), flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1,
                                                max_size=8))
def test_load_npz_survives_bit_flips(limited, tmp_path, compressed, flips):
    content = bytearray(VALID[compressed])
    for position, bit in flips:
        content[position % len(content)] ^= 1 << bit
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(content))
    # Random flips land anywhere (mostly in data, where the CRC-32 catches them): any of the loader's refusals,
    # or arrays that pass validation (a flip in a field zipfile ignores, or in a pixel, 0-255 either way).
    check_outcome(limited.load(path), set(REASONS), validation_allowed=True)


def test_load_npz_rejects_member_that_is_not_npy(tmp_path):
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key in mnist.NPZ_KEYS:
            archive.writestr(f"{key}.npy", b"hello, not an array")
    with pytest.raises(KitError, match="not a valid .npy"):
        loaders.load_npz(path)


def test_the_memory_limit_catches_a_loader_that_allocates_what_a_header_claims(tmp_path):
    # The harness itself can fail: np.load, which allocates the shape a header declares before reading, runs out
    # of memory in the worker on a header that claims four times its budget.
    member = npy_with_header((1, 0), header_text("'|u1'", "False", f"({4 * MEMORY_BUDGET_BYTES},)", "dict"), b"")
    path = tmp_path / "claims.npz"
    path.write_bytes(npz_bytes({**{name: npy_bytes(array) for name, array in ARRAYS.items()}, "x_train": member},
                               False))
    trusting = LimitedLoader("import numpy\nnpz.read_npz = lambda path, required, **_: dict(numpy.load(path))")
    try:
        answer = trusting.load(path)
    finally:
        trusting.stop()
    assert answer["outcome"] == "memory", answer


# --- CSV edits ------------------------------------------------------------------------------------------------

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


def load_or_kit_error(folder):
    """Loads a competition folder; a one-line `KitError` is an acceptable answer, any other exception fails."""
    try:
        (x_train, y_train), (x_test, _) = loaders.load_competition(folder)
    except KitError as error:
        assert "\n" not in str(error)
        return None
    assert x_train.dtype == np.uint8 and x_train.shape[1:] == (28, 28)
    assert y_train.max() <= 9 and len(y_train) == len(x_train)
    return x_test


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
