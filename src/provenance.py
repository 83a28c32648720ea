"""Where a result came from: the git commit of the kit's files, whether they differ from it, and library versions."""

import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from src import paths

# The libraries whose versions decide a run's numbers.
LIBRARIES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "pandas", "scikit-learn")


def git_state(watched: Sequence[str | Path] = (), *, untracked: bool = False) -> tuple[str | None, bool | None]:
    """Returns the checkout's commit and whether files differ from it.

    Args:
        watched: the paths whose changes count (relative to the repository, or absolute inside it); empty for
            every tracked file.
        untracked: count files git does not track yet (under `watched`) as changes too.

    Returns:
        `(commit, dirty)`; `(None, None)` outside a git checkout or without git.
    """
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", f"--untracked-files={'all' if untracked else 'no'}", "--",
                     *(str(path) for path in watched))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status)


def tracked_files(folder: str | Path) -> set[Path] | None:
    """Returns the files git tracks under `folder` (relative to the repository), as absolute paths.

    Returns:
        The tracked files (those in git's index); None outside a git checkout or without git.
    """
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", str(folder)], cwd=paths.REPO_ROOT,
                                capture_output=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {paths.REPO_ROOT / name for name in listed.decode("utf-8", "surrogateescape").split("\0") if name}


def library_versions() -> dict[str, str]:
    """Returns the versions of Python and of the libraries that decide a run's numbers (those installed)."""
    versions = {"python": platform.python_version()}
    for package in LIBRARIES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
