"""Running the kaggle CLI: every call the kit makes to Kaggle, and its failures as one line naming the cause and
the fix (the CLI exits 1 on every failure and prints the server's message, which is matched here).
"""

import contextlib
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from src import paths
from src.errors import KitError
from src.kaggle.credentials import config_dir, credentials_file, has_credentials, redact, warn_if_exposed

CLI_TIMEOUT_SECONDS = 3600
RULES_URL = f"https://www.kaggle.com/c/{paths.COMPETITION}/rules"
LEADERBOARD_URL = f"https://www.kaggle.com/c/{paths.COMPETITION}/leaderboard"


def kaggle_command() -> list[str]:
    """Returns the command that runs the kaggle CLI of this environment."""
    executable = Path(sys.executable).with_name("kaggle")
    return [str(executable)] if executable.is_file() else ["kaggle"]


def cli_version() -> tuple[int, ...] | None:
    """Returns the version of the kaggle CLI that `kaggle_command()` runs, e.g. `(2, 2, 5)`; None if unknown."""
    command = kaggle_command()
    text = None
    if command != ["kaggle"]:  # the CLI beside this Python: its package's metadata says
        with contextlib.suppress(metadata.PackageNotFoundError):
            text = metadata.version("kaggle")
    if text is None:
        try:
            completed = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        text = completed.stdout + completed.stderr
    found = re.search(r"\b(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in found.groups() if part is not None) if found else None


@dataclass(frozen=True)
class Failure:
    """A kind of failure of a kaggle CLI call, recognised in what the CLI printed.

    Attributes:
        pattern: a regular expression (case-insensitive) matching the CLI's output for this failure.
        cause: what went wrong, for the user.
        code: the HTTP status or kind, e.g. `403 Forbidden`.
        fix: what to do; `{config}` becomes the credentials folder.
        quote: whether to quote Kaggle's message (not when the CLI prints its own long help instead).
        name: a regular expression whose first group, when it matches, is quoted instead (e.g. a file's name).
    """

    pattern: str
    cause: str
    code: str
    fix: str
    quote: bool = True
    name: str | None = None


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
# The kaggle CLI 2.2.5 and later refuse an output file whose name points outside the download folder.
OUTSIDE_FOLDER = Failure(r"Refusing to download", "the kernel's output names a file outside the download folder",
                         "refused", "nothing was kept; check the names of the files the kernel writes", quote=False,
                         name=r"Refusing to download '(.*?)':")
UPLOAD_FAILED = Failure(r"Could not submit to competition",
                        "the upload of the file failed", "upload", "check the network and retry", quote=False)
TRANSIENT = (NO_NETWORK, CONFLICT, RATE_LIMITED, SERVER_ERROR)


class KaggleError(KitError):
    """A kaggle CLI call that failed, as one line (see `describe_failure`).

    Attributes:
        transient: whether the same call may well succeed a little later (no network, 409, 429, 5xx), which is
            what a long wait (`src.kaggle.watch`) retries.
    """

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


def _failure_of(output: str, forbidden: Failure | None, not_found: Failure | None) -> Failure | None:
    failures = (OUTSIDE_FOLDER, UNAUTHORIZED, NO_NETWORK, forbidden or FORBIDDEN, not_found or NOT_FOUND, CONFLICT,
                RATE_LIMITED, SERVER_ERROR, UPLOAD_FAILED)
    return next((candidate for candidate in failures if re.search(candidate.pattern, output, re.IGNORECASE)), None)


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
    # Nor do its progress bars (`  0%|          | 0.00/1.00 [00:00<?, ?B/s]`).
    lines = [line.strip() for line in redact(output).splitlines()
             if line.strip() and not line.strip().startswith("Warning:") and not re.match(r"\s*\d+%\|", line)]
    failure = _failure_of(output, forbidden, not_found)
    first = lines[0] if lines else "no output"
    named = re.search(failure.name, redact(output)) if failure is not None and failure.name else None
    if named:
        shown = repr(named.group(1))
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        return f"Kaggle could not {what}: {failure.cause} ({failure.code}: {shown}); {failure.fix}."
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

    Returns:
        Its standard output, every credential value replaced by `***` (`credentials.redact`).

    Raises:
        KitError: no credentials, or the CLI is missing.
        KaggleError: the CLI failed; one line naming the cause and the fix.
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
        raise KaggleError(f"Kaggle could not {what}: no answer in {CLI_TIMEOUT_SECONDS} s; retry later.",
                          transient=True) from None
    if completed.returncode != 0:
        output = (completed.stderr or "") + "\n" + (completed.stdout or "")
        raise KaggleError(describe_failure(output, what, forbidden, not_found),
                          transient=_failure_of(output, forbidden, not_found) in TRANSIENT)
    # Whatever the CLI printed may end up in a message or on the screen: no key leaves here.
    return redact(completed.stdout or "")
