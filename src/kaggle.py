"""Kaggle: credentials, and the kaggle CLI calls the kit makes."""

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from src import paths
from src.errors import KitError

logger = logging.getLogger(__name__)


def config_dir() -> Path:
    """Returns the folder the kaggle CLI reads `kaggle.json` from."""
    if "KAGGLE_CONFIG_DIR" in os.environ:
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    return Path.home() / ".kaggle"


def has_credentials() -> bool:
    """Returns whether the kaggle CLI would find credentials (environment or `kaggle.json`)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    return (config_dir() / "kaggle.json").is_file() or (config_dir() / "access_token").is_file()


def kaggle_command() -> list[str]:
    """Returns the command that runs the kaggle CLI of this environment."""
    executable = Path(sys.executable).with_name("kaggle")
    return [str(executable)] if executable.is_file() else ["kaggle"]


def run_cli(arguments: list[str], what: str) -> str:
    """Runs the kaggle CLI and returns its output.

    Raises:
        KitError: the CLI is missing or failed; the message names the cause and the fix.
    """
    try:
        completed = subprocess.run(kaggle_command() + arguments, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise KitError("The kaggle CLI is not installed; run `make setup`.") from None
    output = (completed.stdout or "") + (completed.stderr or "")
    if completed.returncode != 0 or "403" in output or "401" in output:
        last = next((line for line in reversed(output.strip().splitlines()) if line.strip()), "no output")
        raise KitError(f"Kaggle could not {what}: {last.strip()}")
    return completed.stdout


def download_competition(target: Path) -> Path:
    """Downloads and unzips the competition's files into `target`, which appears only when complete.

    Returns:
        `target`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as scratch:
        scratch = Path(scratch)
        run_cli(["competitions", "download", "-c", paths.COMPETITION, "-p", str(scratch)],
                f"download the {paths.COMPETITION} competition (accept its rules on kaggle.com first)")
        unpacked = scratch / "unpacked"
        unpacked.mkdir()
        for archive in scratch.glob("*.zip"):
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(unpacked)
        for loose in scratch.glob("*.csv"):
            shutil.move(str(loose), unpacked / loose.name)
        os.replace(unpacked, target)
    return target
