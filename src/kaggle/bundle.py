"""The pushed kernel (`make bundle`): the kernel's own code first, exactly as in the repository, and the kit's
`src` package carried at the end of the same file.

Kaggle runs a kernel as one file, with no pip and no internet, and competitors read and fork what it shows first.
So `build/kernels/<name>/kernel.py` is the kernel's source with two lines added after its docstring, and the
package at its end:

    \"\"\"<the kernel's docstring>\"\"\"
    # digit-kit bundle of kernels/<name> (commit ...): the kit's src package travels at the end of this file.
    import sys; exec(next(...))            # the stub: unpacks the package before the kernel's imports run
    <the kernel's code, byte for byte>
    # --- digit-kit: the kit's src package ---
    _DIGIT_KIT_SRC = r\"\"\"...\"\"\"          # the unpacker, and a zip of src/ in base64 with its sha256

The stub needs no file name: Python compiles the whole file before running its first line, so the payload string
at the end is already among the module's constants (`sys._getframe().f_code.co_consts`) when the stub runs,
whether Kaggle runs the file as a script or as one notebook cell. The zip has sorted entries, fixed time stamps
and no compression, so the same files always make the same bytes.
"""

import ast
import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path

from src import files, paths, provenance
from src.errors import KitError
from src.kaggle import credentials, metadata
from src.kaggle.notebook import notebook_text

logger = logging.getLogger(__name__)

# A fixed time stamp in every zip entry, so the same files always make the same bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
BASE64_LINE = 96
# The payload's first line; the stub finds the payload by it (and by its length: the stub holds the marker too).
PAYLOAD_MARKER = "# digit-kit src package"

_STUB = (
    "# digit-kit bundle of {kernel_path} (commit {commit}): the kit's src package travels at the end of this file.\n"
    "import sys; exec(next(text for text in sys._getframe().f_code.co_consts if isinstance(text, str) and "
    "text.startswith({marker!r}) and len(text) > 99))  # noqa: E401, E702\n"
)

# The code that unpacks the package: the end of a script bundle (in a string the stub runs), a notebook's hidden
# first code cell.
_UNPACKER = """{marker}
DIGIT_KIT_BUNDLE = {{"kernel": {kernel!r}, "commit": {commit!r}, "src_sha256": {sha256!r}, "arguments": {arguments!r},
                    "notebook": {notebook!r}}}


def _digit_kit_unpack(archive_text):
    import atexit
    import base64
    import hashlib
    import io
    import shutil
    import signal
    import sys
    import tempfile
    import zipfile

    archive = base64.b64decode(archive_text)
    if hashlib.sha256(archive).hexdigest() != DIGIT_KIT_BUNDLE["src_sha256"]:
        raise SystemExit("digit-kit bundle: the embedded src package is damaged (sha256 differs); bundle again.")
    folder = tempfile.mkdtemp(prefix="digit-kit-src-")
    atexit.register(shutil.rmtree, folder, True)

    def terminated(signum, frame):
        raise SystemExit(128 + signum)

    # SIGTERM (Kaggle's time limit) would end the process without atexit; as an exit, it removes the folder too.
    # The kernel's flags put the kit's own handler in its place (the same line and exit path as Ctrl-C).
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread: only it may set a handler
        pass
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        opened.extractall(folder)
    for name in [name for name in sys.modules if name == "src" or name.startswith("src.")]:
        del sys.modules[name]
    sys.path.insert(0, folder)
    if DIGIT_KIT_BUNDLE["notebook"] and "ipykernel" in sys.argv[0]:  # Jupyter's own flags, not the kernel's
        sys.argv[:] = [DIGIT_KIT_BUNDLE["kernel"]]
    sys.argv[1:1] = DIGIT_KIT_BUNDLE["arguments"]
    flags = " with " + " ".join(DIGIT_KIT_BUNDLE["arguments"]) if DIGIT_KIT_BUNDLE["arguments"] else ""
    print(f"digit-kit bundle of {{DIGIT_KIT_BUNDLE['kernel']}} from commit {{DIGIT_KIT_BUNDLE['commit']}}{{flags}}: "
          f"src unpacked to {{folder}}", flush=True)


_digit_kit_unpack(
{payload}
)
del _digit_kit_unpack
"""

_PAYLOAD = '''

# --- digit-kit: the kit's src package, carried for Kaggle (no pip, no internet) -----------------------------------
# Written by `python -m src bundle {kernel_path}` from commit {commit}. The two lines after the docstring run this
# string before anything else: it unpacks the zip below (sha256 {sha256}) into a temporary folder, put first on
# sys.path, and adds the bundle's own flags ({arguments}) ahead of any given by hand.
_DIGIT_KIT_SRC = r"""{code}"""
'''


def package_files() -> list[Path]:
    """Returns the `src` package's Python files, sorted by their path inside the package.

    In a git checkout, a bundle carries only what git tracks: a `.py` file under `src/` that git does not track
    (new, or ignored like a `local_settings.py`) may hold what was never meant to leave the machine.

    Raises:
        KitError: a `.py` file under `src/` is untracked or ignored (outside a git checkout, every file goes).
    """
    package = paths.REPO_ROOT / "src"
    found = sorted((path for path in package.rglob("*.py") if "__pycache__" not in path.parts),
                   key=lambda path: path.relative_to(package).as_posix())
    tracked = provenance.tracked_files("src")
    untracked = [path for path in found if tracked is not None and path not in tracked]
    if untracked:
        others = f" (and {len(untracked) - 1} more)" if len(untracked) > 1 else ""
        raise KitError(f"Refusing to bundle src/: {untracked[0].relative_to(paths.REPO_ROOT).as_posix()}{others} is "
                       "not tracked by git, and a bundle carries only what git tracks (a local file may hold a key); "
                       "commit it with `git add`, or move it out of src/.")
    return found


def package_archive(package: list[Path] | None = None) -> bytes:
    """Returns the `src` package as zip bytes that depend only on the files' names and contents.

    Entries are sorted, time-stamped `ZIP_DATE_TIME` and stored uncompressed (so no zlib version can change
    the bytes).

    Args:
        package: the files to pack; None for `package_files()`.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in package if package is not None else package_files():
            entry = zipfile.ZipInfo(f"src/{path.relative_to(paths.REPO_ROOT / 'src').as_posix()}", ZIP_DATE_TIME)
            entry.create_system = 3
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, path.read_bytes())
    return buffer.getvalue()


def source_commit(kernel_folder: Path) -> str:
    """Returns the repository's commit, with `+ uncommitted changes` when `src/` or the kernel differ from it."""
    watched = ["src"]
    with contextlib.suppress(ValueError):
        watched.append(Path(kernel_folder).resolve().relative_to(paths.REPO_ROOT).as_posix())
    commit, dirty = provenance.git_state(watched, untracked=True)
    if commit is None:
        return "unknown (not a git checkout)"
    return f"{commit} + uncommitted changes" if dirty else commit


def _docstring_end(source: str, path: Path) -> int:
    """Returns the line after which the stub goes: after the docstring and `__future__` imports."""
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise KitError(f"{path}: line {error.lineno}: {error.msg}; fix the kernel before bundling it.") from None
    line = 0
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        line = body.pop(0).end_lineno
    while body and isinstance(body[0], ast.ImportFrom) and body[0].module == "__future__":
        line = body.pop(0).end_lineno
    return line


def bundle_text(kernel_source: str, archive: bytes, *, kernel: str, kernel_path: str, commit: str,
                source_path: Path | None = None, arguments: tuple[str, ...] = ()) -> str:
    """Returns the text of a self-contained kernel: the kernel's source, the stub, and the `src` package at the end.

    Args:
        kernel_source: the kernel's `kernel.py`.
        archive: the `src` package as zip bytes (`package_archive()`).
        kernel: the kernel's name.
        kernel_path: the kernel's folder as the user names it, e.g. `kernels/mnist-cnn`.
        commit: the commit the files come from.
        source_path: the kernel's file, for messages.
        arguments: flags the bundle passes to the kernel ahead of any on its command line, e.g.
            `("--folds", "5", "--fold-index", "2")`.

    Returns:
        The kernel's docstring (and `__future__` imports), the two-line stub, the rest of the kernel's source
        byte for byte, then the payload.
    """
    line = _docstring_end(kernel_source, source_path or Path("kernel.py"))
    lines = kernel_source.splitlines(keepends=True)
    head, rest = "".join(lines[:line]), "".join(lines[line:])
    if head and not head.endswith("\n"):
        head += "\n"
    if not rest.endswith("\n"):
        rest += "\n"
    stub = _STUB.format(kernel_path=kernel_path, commit=commit, marker=PAYLOAD_MARKER)
    tail = _PAYLOAD.format(kernel_path=kernel_path, commit=commit, sha256=hashlib.sha256(archive).hexdigest(),
                           arguments=list(arguments), code=unpacker_code(archive, kernel=kernel, commit=commit,
                                                                         arguments=arguments))
    return head + stub + rest + tail


def unpacker_code(archive: bytes, *, kernel: str, commit: str, arguments: tuple[str, ...] = (),
                  notebook: bool = False) -> str:
    """Returns the Python code that unpacks the `src` package and hands the kernel its flags.

    It checks the zip's sha256, extracts it into a temporary folder put first on `sys.path` (removed at exit),
    forgets any `src` imported before, and puts `arguments` ahead of the command line's flags; in a notebook run
    by a Jupyter kernel (`ipykernel_launcher -f <connection file>`), instead of the Jupyter kernel's flags.

    Args:
        archive: the `src` package as zip bytes (`package_archive()`).
        kernel: the kernel's name, printed when it runs.
        commit: the commit the files come from.
        arguments: the bundle's own flags, e.g. `("--folds", "5", "--fold-index", "2")`.
        notebook: the code is a notebook's cell, not the end of a script.
    """
    encoded = base64.b64encode(archive).decode("ascii")
    payload = "\n".join(f'    "{encoded[start:start + BASE64_LINE]}"' for start in range(0, len(encoded), BASE64_LINE))
    return _UNPACKER.format(marker=PAYLOAD_MARKER, kernel=kernel, commit=commit, arguments=list(arguments),
                            sha256=hashlib.sha256(archive).hexdigest(), notebook=notebook, payload=payload)


def _refuse_credentials(shown_path: str, contents: dict[str, bytes]) -> None:
    """Raises the kit's error when a credential appears in any file that goes into the bundle."""
    secrets = [secret.encode("utf-8") for secret in credentials.secrets()]
    for name, content in contents.items():
        if any(secret in content for secret in secrets):
            raise KitError(f"Refusing to bundle {shown_path}: a Kaggle credential appears in {name}; remove it and "
                           "rotate the key on kaggle.com.")


def bundle(kernel: str | os.PathLike, build_dir: Path | None = None, *, accelerator: str | None = None,
           fold: tuple[int, int] | None = None, public: bool = False, notebook: bool = False) -> Path:
    """Writes `build/kernels/<name>/`: one self-contained `kernel.py` (or `kernel.ipynb`) and its finished
    `kernel-metadata.json`.

    The folder appears only when both files are complete. Built twice from the same files, it is byte-identical.

    Args:
        kernel: the kernel's folder (`kernels/<name>`) or name.
        build_dir: where bundles go; default `paths.KERNEL_BUNDLES_DIR`.
        accelerator: `none`, `gpu`, `tpu` or a machine shape to set the metadata's accelerator
            (`metadata.with_accelerator`); None keeps the kernel's own.
        fold: `(fold_index, num_folds)` to bundle the kernel of one fold: `build/kernels/<name>-fold-<i>/`, its
            own Kaggle kernel (`metadata.fold_metadata`), running `--folds K --fold-index i`.
        public: push it as a public kernel (`metadata.finished_metadata`).
        notebook: write a Kaggle notebook, `kernel.ipynb` (`src.kaggle.notebook`), instead of a script.

    Returns:
        The bundle's folder.

    Raises:
        KitError: bad metadata, no Kaggle username, a credential in any bundled file, or a failed write.
    """
    folder = metadata.kernel_dir(kernel)
    kernel_metadata = metadata.with_accelerator(metadata.read_metadata(folder), accelerator)
    name = folder.resolve().name
    arguments: tuple[str, ...] = ()
    if fold is not None:
        fold_index, num_folds = fold
        kernel_metadata = metadata.fold_metadata(kernel_metadata, fold_index)
        name += metadata.FOLD_SUFFIX.format(index=fold_index)
        arguments = ("--folds", str(num_folds), "--fold-index", str(fold_index))
    finished = metadata.finished_metadata(kernel_metadata, credentials.kaggle_username(), public=public,
                                          notebook=notebook)
    commit = source_commit(folder)
    if commit.endswith("uncommitted changes"):
        logger.warning("warning: bundling files that differ from commit %s; commit them to make it reproducible.",
                       commit.split()[0])
    source_path = folder / kernel_metadata["code_file"]
    try:
        kernel_source = source_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise KitError(f"Cannot read {source_path} ({error}); check the kernel.") from None
    shown_path = folder.as_posix()
    with contextlib.suppress(ValueError):
        shown_path = folder.resolve().relative_to(paths.REPO_ROOT).as_posix()
    package = package_files()
    metadata_text = json.dumps(finished, indent=2) + "\n"
    _refuse_credentials(shown_path, {
        **{path.relative_to(paths.REPO_ROOT).as_posix(): path.read_bytes() for path in package},
        f"{shown_path}/{kernel_metadata['code_file']}": kernel_source.encode("utf-8"),
        metadata.METADATA_FILE: metadata_text.encode("utf-8"),
    })
    archive = package_archive(package)
    if notebook:
        text = notebook_text(kernel_source, unpacker_code(archive, kernel=name, commit=commit, arguments=arguments,
                                                          notebook=True),
                             accelerator=finished.get("machine_shape"), enable_gpu=finished["enable_gpu"])
    else:
        text = bundle_text(kernel_source, archive, kernel=name, kernel_path=shown_path, commit=commit,
                           source_path=source_path, arguments=arguments)
    target = Path(build_dir or paths.KERNEL_BUNDLES_DIR) / name
    files.sweep_stale(target.parent, folders=True)  # what an interrupted bundle left: half-built and old folders
    with files.folder_in_place(target, prefix=f".{name}-") as scratch:
        files.write_text(scratch / finished["code_file"], text)
        files.write_text(scratch / metadata.METADATA_FILE, metadata_text)
    logger.info("bundle: %s (%s, %d bytes, src sha256 %s, commit %s)", target / finished["code_file"],
                finished["id"], len(text.encode("utf-8")), hashlib.sha256(archive).hexdigest()[:12], commit)
    return target
