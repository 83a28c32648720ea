"""Kaggle credentials: where the kaggle CLI finds them, the user's name, and keeping the key out of everything.

Credentials are only ever read to find the user's name and to keep the key out of what the kit writes and prints.
"""

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from src.errors import KitError

logger = logging.getLogger(__name__)


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


def access_token_file() -> Path:
    """Returns the path of `access_token`, where the kaggle CLI 2.x also reads a token from."""
    return config_dir() / "access_token"


def has_credentials() -> bool:
    """Returns whether the kaggle CLI would find credentials (environment or `kaggle.json`)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    return credentials_file().is_file() or access_token_file().is_file()


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
        values.append(access_token_file().read_text(encoding="utf-8").strip())
    return sorted({value for value in values if isinstance(value, str) and len(value) >= 4}, key=len, reverse=True)


def redact(text: str) -> str:
    """Returns `text` with every credential value replaced by `***`."""
    for secret in secrets():
        text = text.replace(secret, "***")
    return text


_warned_exposed: set[Path] = set()


def warn_if_exposed() -> bool:
    """Warns (once per file) when `kaggle.json` or `access_token` is open to other users; returns whether one is.

    Either file holds a key: any permission for the group or others (`chmod 600` clears them) is a warning.
    """
    exposed = False
    for path in (credentials_file(), access_token_file()):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if os.name == "nt" or not mode & 0o077:
            continue
        exposed = True
        if path not in _warned_exposed:
            _warned_exposed.add(path)
            logger.warning("warning: %s is open to other users (mode %s); run `chmod 600 %s`.", path,
                           oct(mode & 0o777)[2:], path)
    return exposed
