"""Kernel metadata (`kernel-metadata.json`): its checks, the owner and accelerators filled in, and fold kernels.

A kernel's metadata is kept in the repository with `{owner}` for the owner; the bundle's copy has the user's name
from their credentials, so the repository holds no username.
"""

import json
import os
import re
from pathlib import Path

from slugify import slugify as kaggle_slugify

from src import paths
from src.errors import KitError

METADATA_FILE = "kernel-metadata.json"
OWNER_PLACEHOLDER = "{owner}"
# The pushed kernel's file name, whatever the kernel's own `code_file` is: a script, or a notebook.
BUNDLE_CODE_FILE = "kernel.py"
NOTEBOOK_CODE_FILE = "kernel.ipynb"

REQUIRED_FIELDS = {
    "id": str, "title": str, "code_file": str, "language": str, "kernel_type": str, "is_private": bool,
    "enable_gpu": bool, "enable_internet": bool, "competition_sources": list,
}
OPTIONAL_FIELDS = {
    "enable_tpu": bool, "dataset_sources": list, "kernel_sources": list, "model_sources": list, "keywords": list,
    "machine_shape": str, "docker_image": str, "docker_image_pinning_type": str, "id_no": int,
}
# What every kit kernel must say: it is a Python script that reads the competition offline. Whether it is private
# is the metadata's (`true` in the kit's kernels); `make push PUBLIC=1` publishes it (`finished_metadata`).
REQUIRED_VALUES = {"language": "python", "kernel_type": "script", "enable_internet": False}
# The machines (`machine_shape`, `kaggle kernels push --accelerator`) the kaggle CLI documents (2.2.5: its push
# help and docs/kernels.md). Kaggle lends the first GPU and the first TPU to every account (GPU T4 x2, TPU
# v5e-8); the others go to some competitions' participants or to Kaggle's admins only.
GPU_MACHINE_SHAPES = ("NvidiaTeslaT4", "NvidiaL4", "NvidiaL4X1", "NvidiaTeslaA100", "NvidiaH100", "NvidiaRtxPro6000",
                      "NvidiaTeslaT4Highmem")
TPU_MACHINE_SHAPES = ("TpuV5E8", "TpuV6E8")
MACHINE_SHAPES = GPU_MACHINE_SHAPES + TPU_MACHINE_SHAPES
# Retired machines and what Kaggle runs instead (the CLI's own warning says the same); "" is no accelerator.
RETIRED_MACHINE_SHAPES = {"NvidiaTeslaP100": "NvidiaTeslaT4", "TpuV38": "TpuV5E8", "Tpu1VmV38": "TpuV5E8",
                          "TpuV232": "", "TpuV2256": ""}
# `make push ACCELERATOR=...`: the metadata each accelerator sets. Without a machine shape Kaggle gives
# `enable_gpu` its default GPU; the kit asks for two T4s, which `--strategy auto` mirrors over.
ACCELERATOR_NAMES = ("none", "gpu", "tpu")
ACCELERATORS = {
    "none": {"enable_gpu": False, "enable_tpu": False, "machine_shape": None},
    "gpu": {"enable_gpu": True, "enable_tpu": False, "machine_shape": "NvidiaTeslaT4"},
    "tpu": {"enable_gpu": False, "enable_tpu": True, "machine_shape": "TpuV5E8"},
    **{shape: {"enable_gpu": True, "enable_tpu": False, "machine_shape": shape} for shape in GPU_MACHINE_SHAPES},
    **{shape: {"enable_gpu": False, "enable_tpu": True, "machine_shape": shape} for shape in TPU_MACHINE_SHAPES},
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
        raise KitError(f"{where}: {machine_shape_hint(shape)}. Received: machine_shape={shape!r}.")
    return metadata


def machine_shape_hint(shape: str) -> str:
    """Says what to ask for instead of an unknown or retired machine shape."""
    if shape in RETIRED_MACHINE_SHAPES:
        replacement = RETIRED_MACHINE_SHAPES[shape]
        if not replacement:
            return "Kaggle retired it and runs such kernels with no accelerator; remove machine_shape"
        return f"Kaggle retired it; use {replacement!r}"
    return f"unknown accelerator; use one of {', '.join(MACHINE_SHAPES)}"


def finished_metadata(metadata: dict, owner: str, public: bool = False, notebook: bool = False) -> dict:
    """Returns the metadata to push: the owner filled in and the code file named `kernel.py`.

    Args:
        metadata: the checked metadata (`read_metadata`).
        owner: the Kaggle username.
        public: publish the kernel (`is_private: false`), so that anyone on Kaggle can read and fork it; False
            keeps the metadata's own setting.
        notebook: push a notebook: `kernel_type` `notebook`, the code file `kernel.ipynb`.
    """
    finished = dict(metadata)
    finished["id"] = metadata["id"].replace(OWNER_PLACEHOLDER, owner, 1)
    finished["code_file"] = NOTEBOOK_CODE_FILE if notebook else BUNDLE_CODE_FILE
    if notebook:
        finished["kernel_type"] = "notebook"
    if public:
        finished["is_private"] = False
    return finished


def with_accelerator(metadata: dict, accelerator: str | None) -> dict:
    """Returns `metadata` set to run on `accelerator` (`none`, `gpu`, `tpu` or a machine shape, see
    `ACCELERATORS`); None leaves it as it is.

    Raises:
        KitError: an unknown accelerator.
    """
    if accelerator is None:
        return dict(metadata)
    if accelerator not in ACCELERATORS:
        hint = machine_shape_hint(accelerator) if accelerator in RETIRED_MACHINE_SHAPES else \
            f"Unknown accelerator; choose one of {', '.join(ACCELERATOR_NAMES)} or a machine shape " \
            f"({', '.join(MACHINE_SHAPES)})"
        raise KitError(f"{hint[0].upper()}{hint[1:]}. Received: accelerator={accelerator!r}.")
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
