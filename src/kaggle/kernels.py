"""Kernels on Kaggle: push (one kernel, or one per fold), the status of the latest run, its log, and downloading
its output.

Each call goes through the kaggle CLI (`command.run_cli`); a 403 or 404 is explained for the kernel at hand. After
a push that asks for a machine, the kernel's metadata is pulled back (`kaggle kernels pull -m`): Kaggle has been
known to keep a kernel on another machine than the one asked for (kaggle-cli issues #821 and #1197), and the
push says so in one line.
"""

import json
import logging
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from src import config, files, paths
from src.errors import KitError
from src.kaggle import bundle, command, credentials, metadata
from src.kaggle.command import FORBIDDEN, NOT_FOUND, RULES_URL, Failure, run_cli

# The first kaggle CLI whose `kernels output` refuses a file name that points outside its folder (Kaggle/kaggle-cli
# #1189); older ones write such a file wherever its name points.
SAFE_OUTPUT_CLI = (2, 2, 5)

logger = logging.getLogger(__name__)


def kernel_ref(folder: Path) -> str:
    """Returns a kernel's `<owner>/<slug>` on Kaggle, the owner from the user's credentials."""
    return metadata.finished_metadata(metadata.read_metadata(folder), credentials.kaggle_username())["id"]


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
        machine_shape: the machine the push asked for (None: no accelerator).
        kept_machine_shape: the one Kaggle's metadata of the kernel names after the push, when it was read back.
    """

    ref: str
    version: int | None
    url: str
    bundle: Path
    machine_shape: str | None = None
    kept_machine_shape: str | None = None


def push(kernel: str | os.PathLike, build_dir: Path | None = None, accelerator: str | None = None,
         public: bool = False, notebook: bool = False) -> PushResult:
    """Checks the kernel's metadata, bundles it, and pushes the bundle with `kaggle kernels push`.

    Args:
        kernel: the kernel's folder or name.
        build_dir: where bundles go; default `paths.KERNEL_BUNDLES_DIR`.
        accelerator: `none`, `gpu` (two T4s), `tpu` (a TPU v5e-8) or a machine shape (`metadata.MACHINE_SHAPES`);
            None keeps the kernel's metadata.
        public: push a public kernel, which anyone on Kaggle can read and fork; private otherwise.
        notebook: push a Kaggle notebook (`src.kaggle.notebook`) instead of a script.

    Raises:
        KitError: bad metadata, no credentials, or Kaggle refused the kernel or some of its sources.
    """
    return push_bundle(bundle.bundle(metadata.kernel_dir(kernel), build_dir, accelerator=accelerator, public=public,
                                     notebook=notebook))


def push_folds(kernel: str | os.PathLike, num_folds: int, build_dir: Path | None = None,
               accelerator: str | None = None, public: bool = False) -> list[PushResult]:
    """Pushes one Kaggle kernel per fold, `<slug>-fold-<i>`, each training fold i of `num_folds` alone.

    Kaggle runs them side by side; `collect()` blends their outputs as a local k-fold run blends its folds.

    Args:
        kernel: the kernel's folder or name.
        num_folds: K, from 2 to `config.MAX_FOLDS`.
        build_dir, accelerator, public: as for `push`.

    Returns:
        One `PushResult` per fold, in fold order.

    Raises:
        KitError: a bad fold count, or a push failed (the line names the folds pushed before it).
    """
    config.check_range("folds", num_folds, 2, config.MAX_FOLDS)
    folder = metadata.kernel_dir(kernel)
    results: list[PushResult] = []
    for fold_index in range(num_folds):
        target = bundle.bundle(folder, build_dir, accelerator=accelerator, fold=(fold_index, num_folds), public=public)
        try:
            # The folds ask for the same machine: Kaggle's answer for the first one tells for all.
            results.append(push_bundle(target, read_back=fold_index == 0))
        except KitError as error:
            if not results:
                raise
            raise KitError(f"{error} (Folds 0-{fold_index - 1} were pushed; push them all again.)") from None
        logger.info("pushed fold %d/%d: %s", fold_index + 1, num_folds, results[-1].url)
    return results


def push_bundle(target: Path, read_back: bool = True) -> PushResult:
    """Pushes a bundle folder (`bundle.bundle()`) with `kaggle kernels push`.

    When the bundle asks for a machine (`machine_shape`) and `read_back`, the kernel's metadata is pulled back
    (`kept_machine_shape`) and a one-line warning says when Kaggle kept another machine.

    Raises:
        KitError: no credentials, or Kaggle refused the kernel or some of its sources.
    """
    pushed_metadata = json.loads((target / metadata.METADATA_FILE).read_text(encoding="utf-8"))
    ref, shape = pushed_metadata["id"], pushed_metadata.get("machine_shape")
    forbidden, not_found = _kernel_failures(ref, target.name, pushing=True)
    output = run_cli(["kernels", "push", "-p", str(target)], f"push kernel {ref}", forbidden, not_found)
    refused = re.search(r"Kernel push error:\s*(.+)", output)
    if refused:
        raise KitError(f"Kaggle refused kernel {ref}: {refused.group(1).strip()}; fix what it names and push again.")
    pushed = re.search(r"Kernel version (\d+)? ?successfully pushed\.\s+Please check progress at (\S+)", output)
    if not pushed:
        lines = [line for line in output.splitlines() if line.strip()]
        raise KitError(f"Kaggle's answer to the push of {ref} names no version: "
                       f"{credentials.redact(lines[-1]) if lines else 'no output'!r}; check the kernel on kaggle.com.")
    rejected = re.search(r"The following are not valid (\w+) sources.*?: (.+)", output)
    version = int(pushed.group(1)) if pushed.group(1) else None
    if rejected:
        raise KitError(f"Kaggle saved version {version} of {ref} without its {rejected.group(1)} sources "
                       f"{rejected.group(2).strip()}; the run will not find its data: accept the rules at "
                       f"{RULES_URL}, check the sources, and push again.")
    kept = kept_machine_shape(ref, target.name) if shape and read_back else None
    if kept is not None and kept != shape:
        logger.warning("warning: Kaggle keeps %s on %s, not on %s as pushed (a known Kaggle issue: kaggle-cli#821); "
                       "choose the accelerator in the kernel's settings on kaggle.com, or push again.", ref,
                       kept or "its default machine", shape)
    return PushResult(ref=ref, version=version, url=pushed.group(2), bundle=target, machine_shape=shape,
                      kept_machine_shape=kept)


def kept_machine_shape(ref: str, name: str) -> str:
    """Returns the machine shape Kaggle's metadata of kernel `ref` names (`kaggle kernels pull -m`); "" for none."""
    forbidden, not_found = _kernel_failures(ref, name)
    with tempfile.TemporaryDirectory(prefix=f"digit-kit-{name}-pull-") as scratch:
        run_cli(["kernels", "pull", ref, "-p", scratch, "-m"], f"read back the metadata of kernel {ref}",
                forbidden, not_found)
        try:
            pulled = json.loads((Path(scratch) / metadata.METADATA_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise KitError(f"Kaggle's metadata of kernel {ref} is unreadable ({error}); check the kernel on "
                           "kaggle.com.") from None
    return pulled.get("machine_shape") or ""


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
    folder = metadata.kernel_dir(kernel)
    return status_of(kernel_ref(folder), folder.resolve().name)


def status_of(ref: str, name: str, push_command: str | None = None) -> KernelStatus:
    """Returns the status of the latest run of kernel `ref` on Kaggle.

    `name` (the kernel's folder) and `push_command` (what pushes `ref`) are for messages.
    """
    forbidden, not_found = _kernel_failures(ref, name, push_command=push_command)
    output = run_cli(["kernels", "status", ref], f"get the status of kernel {ref}", forbidden, not_found)
    found = re.search(r'has status "(?:\w+\.)?(\w+)"', output)
    if not found:
        raise KitError(f"Unexpected answer from `kaggle kernels status {ref}`: "
                       f"{credentials.redact(output.strip())[:200]!r}; check the kernel on kaggle.com.")
    failure = re.search(r'Failure message: "(.*)"', output)
    return KernelStatus(ref=ref, status=found.group(1).lower(), failure_message=failure.group(1) if failure else None)


def log_tail(ref: str, name: str, lines: int = 12) -> list[str]:
    """Returns the last `lines` lines of the latest run's log (`kaggle kernels logs`), stdout and stderr together."""
    forbidden, not_found = _kernel_failures(ref, name)
    output = run_cli(["kernels", "logs", ref], f"read the log of kernel {ref}", forbidden, not_found)
    try:
        entries = json.loads(output)
        text = "".join(str(entry.get("data", "")) for entry in entries if isinstance(entry, dict))
    except (ValueError, AttributeError, TypeError):
        text = output  # not Kaggle's JSON log: the text as it came
    return [credentials.redact(line.rstrip()) for line in text.splitlines() if line.strip()][-lines:]


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
    folder = metadata.kernel_dir(kernel)
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
    version = command.cli_version()
    if version is not None and version < SAFE_OUTPUT_CLI:
        raise KitError(f"The kaggle CLI here is version {'.'.join(map(str, version))}, whose `kernels output` writes "
                       f"a file wherever the kernel's output names it, outside {target} too; upgrade it to "
                       f"{'.'.join(map(str, SAFE_OUTPUT_CLI))} or later (`make setup`) and download again.")
    forbidden, not_found = _kernel_failures(ref, name, push_command=push_command)
    with files.folder_in_place(target, prefix=f".{name}-download-") as scratch:
        run_cli(["kernels", "output", ref, "-p", str(scratch)], f"download the output of kernel {ref}",
                forbidden, not_found)
        _check_downloaded(scratch, ref)
        # The CLI leaves this marker beside a file whose download it could not finish.
        partial = next(scratch.rglob("*.kaggle-partial"), None)
        if partial is not None:
            raise KitError(f"Kaggle could not download the output of kernel {ref}: "
                           f"{partial.name.removesuffix('.kaggle-partial')} arrived incomplete; retry.")
    return target


def _check_downloaded(scratch: Path, ref: str) -> None:
    """Raises the kit's error unless the download holds only regular files and folders, with printable names,
    inside `scratch`: whatever the CLI does, no link or device from a kernel's output is kept or followed."""
    root = scratch.resolve()
    for folder, folders, names in os.walk(scratch):  # os.walk follows no symbolic link
        for name in [*folders, *names]:
            path = Path(folder) / name
            shown = repr(path.relative_to(scratch).as_posix())
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise KitError(f"Refusing the output of kernel {ref}: {shown} is {kind}; nothing was kept. Kernel "
                               "outputs are files; check what the kernel writes.")
            if not name.isprintable() or not path.resolve().is_relative_to(root):
                raise KitError(f"Refusing the output of kernel {ref}: the name {shown} has control characters or "
                               "points outside the download folder; nothing was kept.")
