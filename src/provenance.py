"""Where a result came from: the git commit of the kit's files, whether they differ from it, the sha256 of the code
that ran, and library versions."""

import hashlib
import platform
import subprocess
import sys
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


def files_sha256(folder: Path, pattern: str = "*.py") -> str:
    """Returns the sha256 of the files under `folder` matching `pattern`: their relative paths and contents."""
    digest = hashlib.sha256()
    found = sorted((path for path in Path(folder).rglob(pattern) if "__pycache__" not in path.parts),
                   key=lambda path: path.relative_to(folder).as_posix())
    for path in found:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
                      .encode("utf-8"))
    return digest.hexdigest()


def script_sha256() -> str | None:
    """Returns the sha256 of the script running as `__main__` (a kernel), or None without one (a notebook)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def code_identity() -> dict:
    """Returns what of the code decides a run's numbers: the kit's `src` files, the running script, the libraries.

    A run resumes only under the same code (`src.runs.run_identity`): after an edit of `src/` or of the kernel, or
    an upgrade of TensorFlow or Keras, its checkpoints would be restored into other code.
    """
    return {"src_sha256": files_sha256(paths.REPO_ROOT / "src"), "script_sha256": script_sha256(),
            "versions": library_versions()}
