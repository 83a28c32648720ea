"""Kaggle: credentials, kernel metadata and bundles, and the kaggle CLI calls the kit makes.

Kaggle runs a kernel as one file, so `bundle()` writes a `kernel.py` that carries the `src` package inside
it. Every call to Kaggle goes through the kaggle CLI (`run_cli()`), whose failures become one line naming
the cause and the fix. Credentials are only ever read to find the user's name and to keep the key out of
what the kit writes and prints.
"""

import ast
import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from src import files, paths
from src.errors import KitError

logger = logging.getLogger(__name__)

METADATA_FILE = "kernel-metadata.json"
OWNER_PLACEHOLDER = "{owner}"
RULES_URL = f"https://www.kaggle.com/c/{paths.COMPETITION}/rules"
LEADERBOARD_URL = f"https://www.kaggle.com/c/{paths.COMPETITION}/leaderboard"
CLI_TIMEOUT_SECONDS = 3600


# --- credentials ----------------------------------------------------------------------------------


def config_dir() -> Path:
    """Returns the folder the kaggle CLI reads `kaggle.json` from.

    As the CLI decides: `$KAGGLE_CONFIG_DIR`, else `~/.kaggle`, else (on Linux, when `~/.kaggle` does not
    exist) `$XDG_CONFIG_HOME/kaggle` or `~/.config/kaggle`.
    """
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home_dir = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not home_dir.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    return home_dir


def credentials_file() -> Path:
    """Returns the path of `kaggle.json`."""
    return config_dir() / "kaggle.json"


def has_credentials() -> bool:
    """Returns whether the kaggle CLI would find credentials (environment or `kaggle.json`)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    return credentials_file().is_file() or (config_dir() / "access_token").is_file()


def _read_credentials_file() -> dict:
    try:
        content = json.loads(credentials_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def kaggle_username() -> str:
    """Returns the user's Kaggle username: `$KAGGLE_USERNAME`, else `username` in `kaggle.json`.

    Raises:
        KitError: neither holds one.
    """
    warn_if_exposed()
    username = os.environ.get("KAGGLE_USERNAME") or _read_credentials_file().get("username")
    if not isinstance(username, str) or not username.strip():
        raise KitError(
            f"Cannot tell your Kaggle username: no KAGGLE_USERNAME and no 'username' in {credentials_file()}; "
            "save your API token there (kaggle.com, Settings, API) or set KAGGLE_USERNAME."
        )
    return username.strip()


def secrets() -> list[str]:
    """Returns the credential values that must never be printed or written (keys and tokens)."""
    values = [os.environ.get("KAGGLE_KEY"), os.environ.get("KAGGLE_API_TOKEN"), _read_credentials_file().get("key")]
    with contextlib.suppress(OSError):
        values.append((config_dir() / "access_token").read_text(encoding="utf-8").strip())
    return sorted({value for value in values if isinstance(value, str) and len(value) >= 4}, key=len, reverse=True)


def redact(text: str) -> str:
    """Returns `text` with every credential value replaced by `***`."""
    for secret in secrets():
        text = text.replace(secret, "***")
    return text


_warned_exposed: set[Path] = set()


def warn_if_exposed() -> bool:
    """Warns (once per file) when `kaggle.json` is readable by other users; returns whether it is."""
    path = credentials_file()
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if os.name == "nt" or not mode & 0o044:
        return False
    if path not in _warned_exposed:
        _warned_exposed.add(path)
        logger.warning("warning: %s is readable by other users; run `chmod 600 %s`.", path, path)
    return True


# --- the kaggle CLI -------------------------------------------------------------------------------


def kaggle_command() -> list[str]:
    """Returns the command that runs the kaggle CLI of this environment."""
    executable = Path(sys.executable).with_name("kaggle")
    return [str(executable)] if executable.is_file() else ["kaggle"]


@dataclass(frozen=True)
class Failure:
    """A kind of failure of a kaggle CLI call, recognised in what the CLI printed.

    Attributes:
        pattern: a regular expression (case-insensitive) matching the CLI's output for this failure.
        cause: what went wrong, for the user.
        code: the HTTP status or kind, e.g. `403 Forbidden`.
        fix: what to do; `{config}` becomes the credentials folder.
        quote: whether to quote Kaggle's message (not when the CLI prints its own long help instead).
    """

    pattern: str
    cause: str
    code: str
    fix: str
    quote: bool = True


# The kaggle CLI exits 1 on every failure and prints the server's message, then (for 403, 404, 429 and
# 5xx) a hint of its own, or its sign-in help for 401; a status code appears only in some messages. So the
# order matters: the most specific signs come first.
UNAUTHORIZED = Failure(r"Authentication required|\b401\b|Unauthori[sz]ed|Unauthenticated",
                       "the credentials were rejected", "401 Unauthorized",
                       "create a new API token at https://www.kaggle.com/settings/api and save it as "
                       "{config}/kaggle.json (chmod 600)", quote=False)
NO_NETWORK = Failure(r"Max retries exceeded|Failed to establish a new connection|Connection refused|"
                     r"Connection reset|Name or service not known|Temporary failure in name resolution|"
                     r"NameResolutionError|ProxyError|ConnectTimeout|Network is unreachable|timed out",
                     "Kaggle is unreachable", "no network",
                     "check the internet connection and any proxy settings, then retry", quote=False)
FORBIDDEN = Failure(r"\b403\b|Forbidden|accept (?:this|the|its) competition|accept its rules|"
                    r"You don't have access|was denied",
                    "access was refused; the competition's rules may not be accepted", "403 Forbidden",
                    f"accept them at {RULES_URL} with the account in {{config}}/kaggle.json, then retry")
NOT_FOUND = Failure(r"\b404\b|NotFound|Not Found|not found|Could not find",
                    "no such competition", "404 Not Found", f"check the competition's name ({paths.COMPETITION})")
CONFLICT = Failure(r"\b409\b|Conflict",
                   "Kaggle is still busy with an earlier request", "409 Conflict",
                   "wait until the kernel's running version finishes (`make status`), then retry")
RATE_LIMITED = Failure(r"\b429\b|rate limit|Too many requests",
                       "too many requests", "429 Too Many Requests", "wait a few minutes and retry")
SERVER_ERROR = Failure(r"\b5\d\d\b|problem on Kaggle's side|Internal server error|Service unavailable|"
                       r"Bad gateway|Gateway time-?out",
                       "Kaggle's servers failed", "5xx", "this is on Kaggle's side: retry in a while")
UPLOAD_FAILED = Failure(r"Could not submit to competition",
                        "the upload of the file failed", "upload", "check the network and retry", quote=False)


def describe_failure(output: str, what: str, forbidden: Failure | None = None,
                     not_found: Failure | None = None) -> str:
    """Returns one line naming why a kaggle CLI call failed and what to do.

    Args:
        output: what the CLI printed (stderr, then stdout).
        what: what the kit asked of Kaggle, e.g. `"submit x.csv"`.
        forbidden: how to explain a 403 for this call (default: the competition's rules).
        not_found: how to explain a 404 for this call (default: the competition's name).

    Returns:
        `Kaggle could not <what>: <cause> (<code>: <Kaggle's message>); <fix>.`, credentials redacted.
    """
    # The CLI's own warning about a readable kaggle.json says nothing about this failure.
    lines = [line.strip() for line in redact(output).splitlines()
             if line.strip() and not line.strip().startswith("Warning:")]
    failures = (UNAUTHORIZED, NO_NETWORK, forbidden or FORBIDDEN, not_found or NOT_FOUND, CONFLICT,
                RATE_LIMITED, SERVER_ERROR, UPLOAD_FAILED)
    failure = next((candidate for candidate in failures if re.search(candidate.pattern, output, re.IGNORECASE)),
                   None)
    first = lines[0] if lines else "no output"
    if failure is None:
        return (f"Kaggle could not {what}: the kaggle CLI said {first[:200]!r}; run the same `kaggle` command "
                "by hand to see all it says.")
    # Kaggle's own words help when they are short; the CLI's long explanations do not.
    detail = f": {first.rstrip('.')}" if failure.quote and len(first) <= 160 else ""
    if re.sub(r"\W", "", detail).lower() in re.sub(r"\W", "", failure.code).lower():
        detail = ""  # Kaggle's message only names the status ("NotFound", "Conflict").
    fix = failure.fix.format(config=config_dir())
    return f"Kaggle could not {what}: {failure.cause} ({failure.code}{detail}); {fix}."


def run_cli(arguments: list[str], what: str, forbidden: Failure | None = None,
            not_found: Failure | None = None) -> str:
    """Runs the kaggle CLI and returns what it printed on stdout.

    Args:
        arguments: the CLI's arguments, e.g. `["kernels", "status", "me/my-kernel"]`.
        what: what is asked of Kaggle, for messages, e.g. `"push kernel me/my-kernel"`.
        forbidden, not_found: how to explain a 403 or a 404 for this call (see `describe_failure`).

    Raises:
        KitError: no credentials, the CLI is missing, or it failed; one line naming the cause and the fix.
    """
    if not has_credentials():
        raise KitError(
            f"Kaggle could not {what}: no Kaggle credentials; save your API token (kaggle.com, Settings, API) "
            f"as {credentials_file()} (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY."
        )
    warn_if_exposed()
    try:
        completed = subprocess.run(kaggle_command() + arguments, capture_output=True, text=True, errors="replace",
                                   timeout=CLI_TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise KitError("The kaggle CLI is not installed; run `make setup`.") from None
    except subprocess.TimeoutExpired:
        raise KitError(f"Kaggle could not {what}: no answer in {CLI_TIMEOUT_SECONDS} s; retry later.") from None
    if completed.returncode != 0:
        raise KitError(describe_failure((completed.stderr or "") + "\n" + (completed.stdout or ""), what,
                                        forbidden, not_found))
    return completed.stdout or ""


# --- kernel metadata ------------------------------------------------------------------------------

# Field -> JSON type; Kaggle's CLI reads these from kernel-metadata.json.
REQUIRED_FIELDS = {
    "id": str, "title": str, "code_file": str, "language": str, "kernel_type": str, "is_private": bool,
    "enable_gpu": bool, "enable_internet": bool, "competition_sources": list,
}
OPTIONAL_FIELDS = {
    "enable_tpu": bool, "dataset_sources": list, "kernel_sources": list, "model_sources": list, "keywords": list,
    "machine_shape": str, "docker_image": str, "docker_image_pinning_type": str, "id_no": int,
}
# What every kit kernel must say: it is a private Python script that reads the competition offline.
REQUIRED_VALUES = {"language": "python", "kernel_type": "script", "is_private": True, "enable_internet": False}
# Accelerators the installed kaggle CLI documents for `--accelerator` / `machine_shape`.
MACHINE_SHAPES = ("NvidiaTeslaT4", "TpuV5E8")
RETIRED_MACHINE_SHAPES = {"NvidiaTeslaP100": "NvidiaTeslaT4", "TpuV38": "TpuV5E8", "Tpu1VmV38": "TpuV5E8"}
# `make push ACCELERATOR=...`: the metadata each accelerator sets. Without a machine shape Kaggle gives
# `enable_gpu` its default GPU; the kit asks for two T4s, which `--strategy auto` mirrors over.
ACCELERATOR_NAMES = ("none", "gpu", "tpu")
ACCELERATORS = {
    "none": {"enable_gpu": False, "enable_tpu": False, "machine_shape": None},
    "gpu": {"enable_gpu": True, "enable_tpu": False, "machine_shape": "NvidiaTeslaT4"},
    "tpu": {"enable_gpu": False, "enable_tpu": True, "machine_shape": "TpuV5E8"},
}
MIN_TITLE_LENGTH = 5
MIN_SLUG_LENGTH = 5
SLUG = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
OWNER_SLUG = rf"[A-Za-z0-9_-]+/{SLUG}"


def kernel_dir(kernel: str | os.PathLike) -> Path:
    """Returns a kernel's folder from `kernels/<name>`, a path, or a bare name.

    Raises:
        KitError: no such kernel.
    """
    path = Path(kernel)
    for candidate in (path, paths.KERNELS_DIR / path):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    known = sorted(folder.name for folder in paths.KERNELS_DIR.glob("*") if (folder / METADATA_FILE).is_file())
    raise KitError(f"No kernel at {kernel} (no {METADATA_FILE} there). Known kernels: {', '.join(known) or 'none'}.")


def slugify(title: str) -> str:
    """Returns the slug Kaggle makes of a title (the kaggle CLI's own `slugify`)."""
    from slugify import slugify as kaggle_slugify

    return kaggle_slugify(title)


def read_metadata(folder: Path) -> dict:
    """Reads and checks a kernel's `kernel-metadata.json` (see `check_metadata`)."""
    path = Path(folder) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KitError(f"{path} not found; every kernel folder needs one.") from None
    except (OSError, ValueError) as error:
        raise KitError(f"{path}: not valid JSON ({error}); fix the file.") from None
    return check_metadata(metadata, folder)


def _check_sources(metadata: dict, name: str, pattern: str, example: str, where: Path) -> None:
    for source in metadata.get(name, []):
        if not isinstance(source, str) or not re.fullmatch(pattern, source):
            raise KitError(f"{where}: each of {name!r} must look like {example!r}. Received: {source!r}.")


def check_metadata(metadata: dict, folder: Path) -> dict:
    """Checks a kernel's metadata as it is kept in the repository, before it is bundled or pushed.

    Args:
        metadata: the parsed `kernel-metadata.json`.
        folder: the kernel's folder (its `code_file` must be there).

    Returns:
        `metadata`, unchanged.

    Raises:
        KitError: naming the first problem: an unknown or missing field, a wrong type or value, a title
            shorter than 5 characters or whose slug differs from the id's, a missing code file, badly
            formed sources, or an unknown accelerator.
    """
    where = Path(folder) / METADATA_FILE
    if not isinstance(metadata, dict):
        raise KitError(f"{where}: must hold one JSON object. Received: {type(metadata).__name__}.")
    unknown = sorted(set(metadata) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise KitError(f"{where}: unknown field {unknown[0]!r}; the known ones are "
                       f"{', '.join(sorted([*REQUIRED_FIELDS, *OPTIONAL_FIELDS]))}.")
    for name, kind in {**REQUIRED_FIELDS, **OPTIONAL_FIELDS}.items():
        if name not in metadata:
            if name in REQUIRED_FIELDS:
                raise KitError(f"{where}: the required field {name!r} is missing.")
            continue
        value = metadata[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise KitError(f"{where}: {name!r} must be a JSON {kind.__name__}. Received: {name}={value!r}.")
    for name, expected in REQUIRED_VALUES.items():
        if metadata[name] != expected:
            raise KitError(f"{where}: {name!r} must be {json.dumps(expected)} for a kit kernel. "
                           f"Received: {name}={json.dumps(metadata[name])}.")

    owner, _, slug = metadata["id"].partition("/")
    if owner != OWNER_PLACEHOLDER or not re.fullmatch(SLUG, slug):
        raise KitError(f"{where}: 'id' must be '{OWNER_PLACEHOLDER}/<slug>' (the owner is filled in from your "
                       f"Kaggle credentials; the slug is lowercase letters, digits and dashes). "
                       f"Received: id={metadata['id']!r}.")
    if len(slug) < MIN_SLUG_LENGTH:
        raise KitError(f"{where}: the id's slug must be at least {MIN_SLUG_LENGTH} characters. Received: {slug!r}.")
    title = metadata["title"]
    if len(title.strip()) < MIN_TITLE_LENGTH:
        raise KitError(f"{where}: 'title' must be at least {MIN_TITLE_LENGTH} characters. Received: title={title!r}.")
    if slugify(title) != slug:
        raise KitError(f"{where}: the title must slugify to the id's slug {slug!r}, or Kaggle makes another kernel. "
                       f"Received: title={title!r} (slug {slugify(title)!r}).")

    code_file = Path(folder) / metadata["code_file"]
    if Path(metadata["code_file"]).suffix != ".py" or not code_file.is_file():
        raise KitError(f"{where}: 'code_file' must name a .py file in {folder}. "
                       f"Received: code_file={metadata['code_file']!r}.")

    if paths.COMPETITION not in metadata["competition_sources"]:
        raise KitError(f"{where}: 'competition_sources' must list {paths.COMPETITION!r}. "
                       f"Received: {metadata['competition_sources']!r}.")
    _check_sources(metadata, "competition_sources", SLUG, paths.COMPETITION, where)
    _check_sources(metadata, "dataset_sources", OWNER_SLUG, "owner/dataset-slug", where)
    _check_sources(metadata, "kernel_sources", OWNER_SLUG, "owner/kernel-slug", where)
    _check_sources(metadata, "model_sources", rf"[A-Za-z0-9_-]+/{SLUG}/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/\d+",
                   "owner/model/framework/variation/version", where)

    if metadata.get("enable_gpu") and metadata.get("enable_tpu"):
        raise KitError(f"{where}: 'enable_gpu' and 'enable_tpu' cannot both be true; choose one accelerator.")
    shape = metadata.get("machine_shape")
    if shape is not None and shape not in MACHINE_SHAPES:
        replacement = RETIRED_MACHINE_SHAPES.get(shape)
        hint = f"Kaggle retired it; use {replacement!r}" if replacement else f"use one of {', '.join(MACHINE_SHAPES)}"
        raise KitError(f"{where}: unknown accelerator; {hint}. Received: machine_shape={shape!r}.")
    return metadata


def finished_metadata(metadata: dict, owner: str) -> dict:
    """Returns the metadata to push: the owner filled in and the code file named `kernel.py`."""
    finished = dict(metadata)
    finished["id"] = metadata["id"].replace(OWNER_PLACEHOLDER, owner, 1)
    finished["code_file"] = BUNDLE_CODE_FILE
    return finished


def with_accelerator(metadata: dict, accelerator: str | None) -> dict:
    """Returns `metadata` set to run on `accelerator` (see `ACCELERATORS`); None leaves it as it is.

    Raises:
        KitError: an unknown accelerator.
    """
    if accelerator is None:
        return dict(metadata)
    if accelerator not in ACCELERATORS:
        raise KitError(f"Unknown accelerator; choose one of {', '.join(ACCELERATOR_NAMES)}. "
                       f"Received: accelerator={accelerator!r}.")
    changed = {**metadata, **ACCELERATORS[accelerator]}
    if changed["machine_shape"] is None:
        del changed["machine_shape"]
    return changed


FOLD_SUFFIX = "-fold-{index}"


def fold_metadata(metadata: dict, fold_index: int) -> dict:
    """Returns the metadata of one fold's own kernel: `<slug>-fold-<i>`, titled `<title> fold <i>`."""
    folded = dict(metadata)
    folded["id"] = metadata["id"] + FOLD_SUFFIX.format(index=fold_index)
    folded["title"] = f"{metadata['title']} fold {fold_index}"
    return folded


def fold_ref(ref: str, fold_index: int) -> str:
    """Returns the `<owner>/<slug>` of the kernel that trains fold `fold_index` of kernel `ref`."""
    return ref + FOLD_SUFFIX.format(index=fold_index)


def kernel_ref(folder: Path) -> str:
    """Returns a kernel's `<owner>/<slug>` on Kaggle, the owner from the user's credentials."""
    return finished_metadata(read_metadata(folder), kaggle_username())["id"]


# --- bundles --------------------------------------------------------------------------------------

BUNDLE_CODE_FILE = "kernel.py"
# A fixed time stamp in every zip entry, so the same files always make the same bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
BASE64_LINE = 96


def package_files() -> list[Path]:
    """Returns the `src` package's Python files, sorted by their path inside the package."""
    package = paths.REPO_ROOT / "src"
    return sorted((path for path in package.rglob("*.py") if "__pycache__" not in path.parts),
                  key=lambda path: path.relative_to(package).as_posix())


def package_archive() -> bytes:
    """Returns the `src` package as zip bytes that depend only on the files' names and contents.

    Entries are sorted, time-stamped `ZIP_DATE_TIME` and stored uncompressed (so no zlib version can
    change the bytes).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in package_files():
            entry = zipfile.ZipInfo(f"src/{path.relative_to(paths.REPO_ROOT / 'src').as_posix()}", ZIP_DATE_TIME)
            entry.create_system = 3
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, path.read_bytes())
    return buffer.getvalue()


def source_commit(kernel_folder: Path) -> str:
    """Returns the repository's commit, with `+ uncommitted changes` when `src/` or the kernel differ from it."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    watched = ["src"]
    with contextlib.suppress(ValueError):
        watched.append(Path(kernel_folder).resolve().relative_to(paths.REPO_ROOT).as_posix())
    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=all", "--", *watched)
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{commit} + uncommitted changes" if changed else commit


_PREAMBLE = '''
# --- digit-kit bundle ---------------------------------------------------------------------------------
# Written by `python -m src bundle {kernel_path}` from commit {commit}.
# Kaggle runs a kernel as one file, so the kit's `src` package travels here as a zip (sha256 below). It is
# unpacked at start into a temporary folder put first on sys.path; the kernel's own code follows unchanged.
DIGIT_KIT_BUNDLE = {{"kernel": {kernel!r}, "commit": {commit!r}, "src_sha256": {sha256!r}, "arguments": {arguments!r}}}
_DIGIT_KIT_SRC_ZIP = (
{payload}
)


def _digit_kit_unpack():
    import atexit
    import base64
    import hashlib
    import io
    import shutil
    import sys
    import tempfile
    import zipfile

    archive = base64.b64decode(_DIGIT_KIT_SRC_ZIP)
    if hashlib.sha256(archive).hexdigest() != DIGIT_KIT_BUNDLE["src_sha256"]:
        raise SystemExit("digit-kit bundle: the embedded src package is damaged (sha256 differs); bundle again.")
    folder = tempfile.mkdtemp(prefix="digit-kit-src-")
    atexit.register(shutil.rmtree, folder, True)
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        opened.extractall(folder)
    for name in [name for name in sys.modules if name == "src" or name.startswith("src.")]:
        del sys.modules[name]
    sys.path.insert(0, folder)
    # The flags this bundle was made with (one fold of `make push-folds`) go first: flags given by hand win.
    sys.argv[1:1] = DIGIT_KIT_BUNDLE["arguments"]
    flags = f" with {{' '.join(DIGIT_KIT_BUNDLE['arguments'])}}" if DIGIT_KIT_BUNDLE["arguments"] else ""
    print(f"digit-kit bundle of {{DIGIT_KIT_BUNDLE['kernel']}} from commit {{DIGIT_KIT_BUNDLE['commit']}}{{flags}}: "
          f"src unpacked to {{folder}}", flush=True)


_digit_kit_unpack()
# --- {kernel_path}/{code_file} ---------------------------------------------------------------------
'''


def _insertion_line(source: str, path: Path) -> int:
    """Returns the line after which the bundle's preamble goes: after the docstring and `__future__` imports."""
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


def bundle_text(kernel_source: str, archive: bytes, *, kernel: str, kernel_path: str, code_file: str,
                commit: str, source_path: Path | None = None, arguments: tuple[str, ...] = ()) -> str:
    """Returns the text of a self-contained kernel: the kernel's source with the `src` package inside it.

    Args:
        kernel_source: the kernel's `kernel.py`.
        archive: the `src` package as zip bytes (`package_archive()`).
        kernel: the kernel's name.
        kernel_path: the kernel's folder as the user names it, e.g. `kernels/mnist-cnn`.
        code_file: the kernel's file name in that folder.
        commit: the commit the files come from.
        source_path: the kernel's file, for messages.
        arguments: flags the bundle passes to the kernel ahead of any on its command line, e.g.
            `("--folds", "5", "--fold-index", "2")`.

    Returns:
        The kernel's docstring (and `__future__` imports), the unpacking preamble, then the rest of the
        kernel's source, byte for byte.
    """
    encoded = base64.b64encode(archive).decode("ascii")
    payload = "\n".join(f'    "{encoded[start:start + BASE64_LINE]}"' for start in range(0, len(encoded), BASE64_LINE))
    preamble = _PREAMBLE.format(kernel_path=kernel_path, commit=commit, kernel=kernel, code_file=code_file,
                                sha256=hashlib.sha256(archive).hexdigest(), payload=payload,
                                arguments=list(arguments))
    line = _insertion_line(kernel_source, source_path or Path(code_file))
    lines = kernel_source.splitlines(keepends=True)
    head = "".join(lines[:line])
    if head and not head.endswith("\n"):
        head += "\n"
    return head + preamble + "".join(lines[line:])


def bundle(kernel: str | os.PathLike, build_dir: Path | None = None, *, accelerator: str | None = None,
           fold: tuple[int, int] | None = None) -> Path:
    """Writes `build/kernels/<name>/`: one self-contained `kernel.py` and its finished `kernel-metadata.json`.

    The folder appears only when both files are complete. Built twice from the same files, it is byte-identical.

    Args:
        kernel: the kernel's folder (`kernels/<name>`) or name.
        build_dir: where bundles go; default `paths.KERNEL_BUNDLES_DIR`.
        accelerator: `none`, `gpu` or `tpu` to set the metadata's accelerator (`with_accelerator`); None
            keeps the kernel's own.
        fold: `(fold_index, num_folds)` to bundle the kernel of one fold: `build/kernels/<name>-fold-<i>/`, its
            own Kaggle kernel (`fold_metadata`), running `--folds K --fold-index i`.

    Returns:
        The bundle's folder.

    Raises:
        KitError: bad metadata, no Kaggle username, a credential found in the bundle, or a failed write.
    """
    folder = kernel_dir(kernel)
    metadata = with_accelerator(read_metadata(folder), accelerator)
    name = folder.resolve().name
    arguments: tuple[str, ...] = ()
    if fold is not None:
        fold_index, num_folds = fold
        metadata = fold_metadata(metadata, fold_index)
        name += FOLD_SUFFIX.format(index=fold_index)
        arguments = ("--folds", str(num_folds), "--fold-index", str(fold_index))
    finished = finished_metadata(metadata, kaggle_username())
    commit = source_commit(folder)
    if commit.endswith("uncommitted changes"):
        logger.warning("warning: bundling files that differ from commit %s; commit them to make it reproducible.",
                       commit.split()[0])
    source_path = folder / metadata["code_file"]
    try:
        kernel_source = source_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise KitError(f"Cannot read {source_path} ({error}); check the kernel.") from None
    shown_path = folder.as_posix()
    with contextlib.suppress(ValueError):
        shown_path = folder.resolve().relative_to(paths.REPO_ROOT).as_posix()
    archive = package_archive()
    text = bundle_text(kernel_source, archive, kernel=name, kernel_path=shown_path,
                       code_file=metadata["code_file"], commit=commit, source_path=source_path, arguments=arguments)
    metadata_text = json.dumps(finished, indent=2) + "\n"
    for secret in secrets():
        if secret in text or secret in metadata_text:
            raise KitError(f"Refusing to bundle {shown_path}: a Kaggle credential appears in its files; "
                           "remove it from the kernel or src/ and rotate the key on kaggle.com.")

    target = Path(build_dir or paths.KERNEL_BUNDLES_DIR) / name
    with files.folder_in_place(target, prefix=f".{name}-") as scratch:
        files.write_text(scratch / BUNDLE_CODE_FILE, text)
        files.write_text(scratch / METADATA_FILE, metadata_text)
    logger.info("bundle: %s (%s, %d bytes, src sha256 %s, commit %s)", target / BUNDLE_CODE_FILE, finished["id"],
                len(text.encode("utf-8")), hashlib.sha256(archive).hexdigest()[:12], commit)
    return target


# --- push, status, output -------------------------------------------------------------------------


def _kernel_failures(ref: str, name: str, pushing: bool = False,
                     push_command: str | None = None) -> tuple[Failure, Failure]:
    """Returns how to explain a 403 and a 404 for a call about kernel `ref` (a push, or a call after one).

    `push_command` is what pushes the kernel, for a 404; default `make push KERNEL=<name>`.
    """
    owner = ref.split("/")[0]
    # `kaggle kernels status` and `output` report a 401 and a 403 alike, with a long text of their own.
    forbidden = Failure(FORBIDDEN.pattern, f"access to kernel {ref} was refused", "401/403",
                        f"check that the credentials in {{config}} are {owner}'s and that the competition's rules "
                        f"are accepted at {RULES_URL}", quote=pushing)
    if pushing:
        not_found = Failure(NOT_FOUND.pattern, "Kaggle found no such kernel or source", "404 Not Found",
                            "check that the id's owner is your username and the sources in kernel-metadata.json")
    else:
        not_found = Failure(NOT_FOUND.pattern, f"Kaggle has no kernel {ref}", "404 Not Found",
                            f"push it first with `{push_command or f'make push KERNEL={name}'}`")
    return forbidden, not_found


@dataclass(frozen=True)
class PushResult:
    """What Kaggle answered to a push.

    Attributes:
        ref: the kernel's `<owner>/<slug>`.
        version: the new version's number, when Kaggle said it.
        url: the kernel's page.
        bundle: the folder that was pushed.
    """

    ref: str
    version: int | None
    url: str
    bundle: Path


def push(kernel: str | os.PathLike, build_dir: Path | None = None, accelerator: str | None = None) -> PushResult:
    """Checks the kernel's metadata, bundles it, and pushes the bundle with `kaggle kernels push`.

    Args:
        kernel: the kernel's folder or name.
        build_dir: where bundles go; default `paths.KERNEL_BUNDLES_DIR`.
        accelerator: `none`, `gpu` (two T4s) or `tpu` (a TPU v5e-8); None keeps the kernel's metadata.

    Raises:
        KitError: bad metadata, no credentials, or Kaggle refused the kernel or some of its sources.
    """
    return push_bundle(bundle(kernel_dir(kernel), build_dir, accelerator=accelerator))


def push_folds(kernel: str | os.PathLike, num_folds: int, build_dir: Path | None = None,
               accelerator: str | None = None) -> list[PushResult]:
    """Pushes one Kaggle kernel per fold, `<slug>-fold-<i>`, each training fold i of `num_folds` alone.

    Kaggle runs them side by side; `collect()` blends their outputs as a local k-fold run blends its folds.

    Args:
        kernel: the kernel's folder or name.
        num_folds: K, from 2 to `config.MAX_FOLDS`.
        build_dir, accelerator: as for `push`.

    Returns:
        One `PushResult` per fold, in fold order.

    Raises:
        KitError: a bad fold count, or a push failed (the line names the folds pushed before it).
    """
    from src import config

    config.check_range("folds", num_folds, 2, config.MAX_FOLDS)
    folder = kernel_dir(kernel)
    results: list[PushResult] = []
    for fold_index in range(num_folds):
        target = bundle(folder, build_dir, accelerator=accelerator, fold=(fold_index, num_folds))
        try:
            results.append(push_bundle(target))
        except KitError as error:
            if not results:
                raise
            raise KitError(f"{error} (Folds 0-{fold_index - 1} were pushed; push them all again.)") from None
        logger.info("pushed fold %d/%d: %s", fold_index + 1, num_folds, results[-1].url)
    return results


def push_bundle(target: Path) -> PushResult:
    """Pushes a bundle folder (`bundle()`) with `kaggle kernels push`.

    Raises:
        KitError: no credentials, or Kaggle refused the kernel or some of its sources.
    """
    ref = json.loads((target / METADATA_FILE).read_text(encoding="utf-8"))["id"]
    forbidden, not_found = _kernel_failures(ref, target.name, pushing=True)
    output = run_cli(["kernels", "push", "-p", str(target)], f"push kernel {ref}", forbidden, not_found)
    refused = re.search(r"Kernel push error:\s*(.+)", output)
    if refused:
        raise KitError(f"Kaggle refused kernel {ref}: {refused.group(1).strip()}; fix what it names and push again.")
    pushed = re.search(r"Kernel version (\d+)? ?successfully pushed\.\s+Please check progress at (\S+)", output)
    if not pushed:
        lines = [line for line in output.splitlines() if line.strip()]
        raise KitError(f"Kaggle's answer to the push of {ref} names no version: "
                       f"{redact(lines[-1]) if lines else 'no output'!r}; check the kernel on kaggle.com.")
    rejected = re.search(r"The following are not valid (\w+) sources.*?: (.+)", output)
    version = int(pushed.group(1)) if pushed.group(1) else None
    if rejected:
        raise KitError(f"Kaggle saved version {version} of {ref} without its {rejected.group(1)} sources "
                       f"{rejected.group(2).strip()}; the run will not find its data: accept the rules at "
                       f"{RULES_URL}, check the sources, and push again.")
    return PushResult(ref=ref, version=version, url=pushed.group(2), bundle=target)


@dataclass(frozen=True)
class KernelStatus:
    """A kernel's latest run on Kaggle.

    Attributes:
        ref: the kernel's `<owner>/<slug>`.
        status: `queued`, `running`, `complete`, `error`, `cancel_requested`, ...
        failure_message: Kaggle's message when the run failed.
    """

    ref: str
    status: str
    failure_message: str | None = None


def kernel_status(kernel: str | os.PathLike) -> KernelStatus:
    """Returns the status of the kernel's latest run (`kaggle kernels status`)."""
    folder = kernel_dir(kernel)
    return status_of(kernel_ref(folder), folder.resolve().name)


def status_of(ref: str, name: str, push_command: str | None = None) -> KernelStatus:
    """Returns the status of the latest run of kernel `ref` on Kaggle.

    `name` (the kernel's folder) and `push_command` (what pushes `ref`) are for messages.
    """
    forbidden, not_found = _kernel_failures(ref, name, push_command=push_command)
    output = run_cli(["kernels", "status", ref], f"get the status of kernel {ref}", forbidden, not_found)
    found = re.search(r'has status "(?:\w+\.)?(\w+)"', output)
    if not found:
        raise KitError(f"Unexpected answer from `kaggle kernels status {ref}`: {redact(output.strip())[:200]!r}; "
                       "check the kernel on kaggle.com.")
    failure = re.search(r'Failure message: "(.*)"', output)
    return KernelStatus(ref=ref, status=found.group(1).lower(), failure_message=failure.group(1) if failure else None)


def download_output(kernel: str | os.PathLike, out_dir: Path | None = None) -> Path:
    """Downloads the output of the kernel's latest run into `submissions/kaggle/<name>/`.

    The files go to a temporary folder first; the folder takes its final name (replacing the previous
    download) only when every file has arrived.

    Args:
        kernel: the kernel's folder or name.
        out_dir: the parent folder; default `paths.KERNEL_OUTPUTS_DIR`.

    Returns:
        The folder holding the output files and the run's log.
    """
    folder = kernel_dir(kernel)
    name = folder.resolve().name
    return download_output_of(kernel_ref(folder), Path(out_dir or paths.KERNEL_OUTPUTS_DIR) / name, name)


def download_output_of(ref: str, target: Path, name: str, push_command: str | None = None) -> Path:
    """Downloads the output of the latest run of kernel `ref` into `target` (see `download_output`).

    Args:
        ref: the kernel's `<owner>/<slug>`.
        target: the folder to fill; it is replaced only once every file has arrived.
        name: the kernel's folder name, for messages.
        push_command: what pushes `ref`, for a 404; default `make push KERNEL=<name>`.

    Returns:
        `target`.
    """
    forbidden, not_found = _kernel_failures(ref, name, push_command=push_command)
    with files.folder_in_place(target, prefix=f".{name}-download-") as scratch:
        run_cli(["kernels", "output", ref, "-p", str(scratch)], f"download the output of kernel {ref}",
                forbidden, not_found)
        # The CLI leaves this marker beside a file whose download it could not finish.
        partial = next(scratch.rglob("*.kaggle-partial"), None)
        if partial is not None:
            raise KitError(f"Kaggle could not download the output of kernel {ref}: "
                           f"{partial.name.removesuffix('.kaggle-partial')} arrived incomplete; retry.")
    return target


# --- folds run as separate Kaggle kernels ----------------------------------------------------------

# Settings that say where a fold kernel read and wrote, not what it computed: they may differ between folds.
_NOT_COMPARED = ("fold_index", "data", "out", "quiet", "plots", "restart")


@dataclass(frozen=True)
class FetchedFold:
    """One fold kernel's downloaded output.

    Attributes:
        fold_index: 0-based.
        ref: the fold kernel's `<owner>/<slug>`.
        folder: where its output was downloaded.
        record: its run record (`<kernel>-<time>.json`).
        fold_file: its saved fold, `<run>/fold-<i>.npz`, as `training.cross_validate` saves it.
    """

    fold_index: int
    ref: str
    folder: Path
    record: dict
    fold_file: Path


def _fetch_fold(ref: str, fold_index: int, target: Path, name: str) -> FetchedFold:
    """Downloads one fold kernel's output and finds its run record and saved fold in it."""
    from src import records

    download_output_of(ref, target, name, push_command=f"make push-folds KERNEL={name}")
    found = [(path, record) for path, record in records.find_records(target)
             if record["config"].get("fold_index") == fold_index]
    if not found:
        raise KitError(f"The output of {ref} holds no run record of fold {fold_index} (a JSON record whose config has "
                       f"fold_index {fold_index}); push the folds again with `make push-folds KERNEL={name}`.")
    path, record = max(found, key=lambda item: item[1]["run"])
    fold_file = target / record["run"] / f"fold-{fold_index}.npz"
    if not fold_file.is_file():
        raise KitError(f"The output of {ref} lacks {record['run']}/fold-{fold_index}.npz beside {path.name}; "
                       f"push the folds again with `make push-folds KERNEL={name}`.")
    return FetchedFold(fold_index=fold_index, ref=ref, folder=target, record=record, fold_file=fold_file)


def _check_folds_agree(fetched: list[FetchedFold]) -> None:
    """Raises the kit's error unless every fold kernel ran the same settings on the same data."""
    first = fetched[0]
    settings = {key: value for key, value in first.record["config"].items() if key not in _NOT_COMPARED}
    for fold in fetched[1:]:
        other = {key: value for key, value in fold.record["config"].items() if key not in _NOT_COMPARED}
        differing = sorted(key for key in settings.keys() | other.keys() if settings.get(key) != other.get(key))
        if differing:
            key = differing[0]
            raise KitError(f"Fold {fold.fold_index} ({fold.ref}) ran with {key}={other.get(key)!r} but fold 0 with "
                           f"{key}={settings.get(key)!r}; blend only folds of one push: `make push-folds` again.")
        if fold.record["data"]["sha256"] != first.record["data"]["sha256"]:
            raise KitError(f"Fold {fold.fold_index} ({fold.ref}) trained on other data than fold 0 (sha256 "
                           f"{fold.record['data']['sha256'][:12]} vs {first.record['data']['sha256'][:12]}); push "
                           "the folds again.")


def collect(kernel: str | os.PathLike, data_path: str | None = None, out_dir: Path | None = None,
            downloads_dir: Path | None = None) -> dict:
    """Downloads the outputs of a kernel's fold kernels and blends them as a local k-fold run blends its folds.

    Fold 0's record says how many folds there are; every fold kernel must have finished (`kaggle kernels
    status`), with the same settings and data. The saved folds go through `training.ensemble`, as in
    `training.cross_validate`: the test probabilities are the mean of the folds', and the out-of-fold
    probabilities put each fold's held-out rows together. The submission, the probabilities and the run
    record are written by the kit's writers, as a kernel writes them.

    Args:
        kernel: the kernel's folder or name (whose folds `push_folds` pushed).
        data_path: the data the folds trained on (the competition's, on Kaggle), for the labels of the
            out-of-fold accuracy; None for the default place (`input/`). Its sha256 must match.
        out_dir: where the blend's run goes; default `submissions/` (or `/kaggle/working` on Kaggle).
        downloads_dir: where the folds' outputs go, each in `<name>-folds/fold-<i>/`; default
            `paths.KERNEL_OUTPUTS_DIR`.

    Returns:
        The blend's run record, with the paths of what was written under `"outputs"`.

    Raises:
        KitError: a fold kernel is missing, unfinished or failed, the folds disagree, or the data differs.
    """
    from src import config as run_config
    from src import data, records, submission, training

    folder = kernel_dir(kernel)
    name = folder.resolve().name
    ref = kernel_ref(folder)
    downloads = Path(downloads_dir or paths.KERNEL_OUTPUTS_DIR) / f"{name}-folds"

    def unfinished(indices) -> list[str]:
        states = [(index, status_of(fold_ref(ref, index), name, push_command=f"make push-folds KERNEL={name}"))
                  for index in indices]
        return [f"fold {index} {state.status}" + (f" ({state.failure_message})" if state.failure_message else "")
                for index, state in states if state.status != "complete"]

    waiting = unfinished([0])
    if waiting:
        raise KitError(f"Kaggle has not finished the folds of {name}: {', '.join(waiting)}; wait for them "
                       f"(`kaggle kernels status {fold_ref(ref, 0)}`), or push them with `make push-folds "
                       f"KERNEL={name}`.")
    fetched = [_fetch_fold(fold_ref(ref, 0), 0, downloads / "fold-0", name)]
    num_folds = fetched[0].record["config"]["folds"]
    waiting = unfinished(range(1, num_folds))
    if waiting:
        raise KitError(f"Kaggle has not finished every fold of {name}: {', '.join(waiting)}; wait for them, or push "
                       f"the folds again with `make push-folds KERNEL={name} FOLDS={num_folds}`.")
    fetched += [_fetch_fold(fold_ref(ref, index), index, downloads / f"fold-{index}", name)
                for index in range(1, num_folds)]
    _check_folds_agree(fetched)

    dataset = data.load_dataset(data_path)
    data_sha256 = data.source_sha256(dataset.source)
    expected = fetched[0].record["data"]["sha256"]
    if data_sha256 != expected:
        raise KitError(f"The folds trained on data with sha256 {expected[:12]}..., but {dataset.source} has "
                       f"{data_sha256[:12]}...; collect needs the same data for the out-of-fold accuracy: fill "
                       "input/ with the competition's files (`make data` with Kaggle credentials) or pass --data.")
    folds = []
    for fold in fetched:
        loaded = training._load_fold(fold.fold_file)
        if loaded.fold_index != fold.fold_index or loaded.validation_indices is None:
            raise KitError(f"{fold.fold_file} does not hold fold {fold.fold_index} of a k-fold run; push the folds "
                           "again.")
        folds.append(loaded)
    result = training.ensemble(folds, dataset)

    known = {item.name for item in dataclasses.fields(run_config.RunConfig)}
    settings = {key: value for key, value in fetched[0].record["config"].items() if key in known}
    settings.update(fold_index=None, data=str(dataset.source), out=str(out_dir) if out_dir is not None else None)
    config = run_config.RunConfig(**settings)
    run = records.start_run(name, config.output_dir)
    probabilities = records.write_probabilities(run, result)
    submission_path = submission.write_submission(result.test_labels, run.path(".csv"),
                                                  expected_rows=len(dataset.x_test))
    record = records.build_record(run, config, dataset, result, data_sha256=data_sha256,
                                  seconds=sum(fold.seconds for fold in folds), submission=submission_path)
    record["collected_from"] = [{"fold": fold.fold_index, "kernel": fold.ref, "run": fold.record["run"],
                                 "distribution": fold.record.get("distribution")} for fold in fetched]
    record_path = records.write_record(run, record)
    records.finish_run(run)
    record["outputs"] = {"submission": str(submission_path), "record": str(record_path),
                         "probabilities": str(probabilities), "pictures": []}
    return record


# --- submissions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitResult:
    """A submission Kaggle accepted.

    Attributes:
        file: the submitted CSV.
        rows: its rows.
        message: the submission's description.
        submitted_at: UTC ISO time of the submission.
        answer: Kaggle's answer, e.g. `Successfully submitted to Digit Recognizer`.
        ref: the submission's number on Kaggle, when it said it.
        log: the `kaggle-submissions.jsonl` the submission was added to.
    """

    file: Path
    rows: int
    message: str
    submitted_at: str
    answer: str
    ref: int | None
    log: Path


def append_submission_log(file: Path, message: str, submitted_at: str) -> Path:
    """Adds a submission to `<folder of file>/kaggle-submissions.jsonl`, rewriting the file atomically.

    Each line is `{"file": <csv name>, "message": ..., "submitted_at": <UTC ISO>, "public_score": null}`;
    the score is null until someone copies it from the leaderboard.

    Returns:
        The log's path.
    """
    log = Path(file).parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME
    try:
        existing = log.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ""
    except (OSError, UnicodeDecodeError) as error:
        raise KitError(f"Cannot read {log} ({error}); move it away and submit again.") from None
    if existing and not existing.endswith("\n"):
        existing += "\n"
    line = json.dumps({"file": Path(file).name, "message": message, "submitted_at": submitted_at,
                       "public_score": None})
    return files.write_text(log, existing + line + "\n")


def submit(file: str | os.PathLike, message: str) -> SubmitResult:
    """Validates a submission, submits it with `kaggle competitions submit`, and logs it beside the file.

    Args:
        file: the submission CSV; it must have the competition's 28,000 rows.
        message: the submission's description on Kaggle.

    Raises:
        KitError: no file or message, an invalid submission, or Kaggle refused it.
    """
    from src import submission

    if not str(file).strip():
        raise KitError("No submission file given; run `make submit FILE=<csv> MESSAGE=\"...\"`.")
    if not message or not message.strip():
        raise KitError("No submission message given; describe the submission with MESSAGE=\"...\" (or --message).")
    path = Path(file)
    rows = submission.validate_submission(path)
    if rows != submission.COMPETITION_TEST_ROWS:
        raise KitError(f"{path}: has {rows} rows but the competition scores {submission.COMPETITION_TEST_ROWS:,}; "
                       "train on the competition's data (`make data` with Kaggle credentials) and submit that run.")
    output = run_cli(["competitions", "submit", "-c", paths.COMPETITION, "-f", str(path), "-m", message.strip()],
                     f"submit {path}")
    submitted_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    ref = re.search(r"Submission ref: (\d+)", output)
    answer = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    log = append_submission_log(path, message.strip(), submitted_at)
    return SubmitResult(file=path, rows=rows, message=message.strip(), submitted_at=submitted_at,
                        answer=redact(answer), ref=int(ref.group(1)) if ref else None, log=log)


# --- competition data -----------------------------------------------------------------------------


def download_competition(target: Path) -> Path:
    """Downloads and unzips the competition's files into `target`, which appears only when complete.

    Returns:
        `target`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as scratch:
        scratch = Path(scratch)
        run_cli(["competitions", "download", "-c", paths.COMPETITION, "-p", str(scratch)],
                f"download the {paths.COMPETITION} competition")
        unpacked = scratch / "unpacked"
        unpacked.mkdir()
        for archive in scratch.glob("*.zip"):
            try:
                with zipfile.ZipFile(archive) as opened:
                    opened.extractall(unpacked)
            except zipfile.BadZipFile:
                raise KitError(f"Kaggle's {archive.name} is not a valid zip; run `make data` again.") from None
        for loose in scratch.glob("*.csv"):
            shutil.move(str(loose), unpacked / loose.name)
        os.replace(unpacked, target)
    return target
