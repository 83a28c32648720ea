"""src.kaggle.metadata: the checks of kernel-metadata.json, the owner filled in, accelerators and fold kernels."""

import json
import re

import pytest

from kaggle_fixtures import KERNEL
from src import paths
from src.errors import KitError
from src.kaggle import metadata

pytest_plugins = ["kaggle_fixtures"]


def test_read_metadata_accepts_every_kernel_in_the_repo():
    folders = sorted(path.parent for path in paths.KERNELS_DIR.glob(f"*/{metadata.METADATA_FILE}"))
    assert folders, "no kernels found"
    for folder in folders:
        read = metadata.read_metadata(folder)
        # Each kernel's id is its folder's name after `digit-kit-`, and its title the same words.
        assert (read["id"], read["title"]) == (f"{{owner}}/digit-kit-{folder.name}", f"digit-kit {folder.name}")
        assert read["competition_sources"] == [paths.COMPETITION]
        # Every kit kernel is private in the repository; `--public` publishes it when it is pushed.
        assert read["is_private"] is True


@pytest.mark.parametrize("title, slug", [
    # Kaggle's rules for a kernel's slug (python-slugify, which the kaggle CLI calls on the title): lower case,
    # accents and other scripts transliterated, every run of other characters one hyphen, none at the ends.
    ("digit-kit mnist-cnn", "digit-kit-mnist-cnn"),
    ("digit-kit mnist-cnn fold 2", "digit-kit-mnist-cnn-fold-2"),
    ("Digit Kit: MNIST CNN (v2)", "digit-kit-mnist-cnn-v2"),
    ("  MNIST -- CNN!!  ", "mnist-cnn"),
    ("a_b c", "a-b-c"),
    ("99.3% accuracy", "99-3-accuracy"),
    ("C'est l'été", "c-est-l-ete"),
    ("Ωmega Straße", "omega-strasse"),
])
def test_slugify_makes_the_slug_kaggle_makes(title, slug):
    assert metadata.slugify(title) == slug


@pytest.mark.parametrize("change, named", [
    ({"title": None}, "'title' is missing"),
    ({"title": "mnis"}, "at least 5 characters"),
    ({"title": "Another Title"}, "slugify"),
    ({"id": "someone/digit-kit-mnist-cnn"}, "{owner}/<slug>"),
    ({"id": "{owner}/abc", "title": "abc"}, "at least 5 characters"),
    ({"code_file": "missing.py"}, "code_file"),
    ({"competition_sources": []}, "digit-recognizer"),
    ({"competition_sources": ["digit-recognizer", "Not A Slug"]}, "competition_sources"),
    ({"dataset_sources": ["no-owner"]}, "owner/dataset-slug"),
    ({"enable_internet": True}, "enable_internet"),
    ({"kernel_type": "notebook"}, "kernel_type"),
    ({"language": "r"}, "language"),
    ({"is_private": "false"}, "'is_private' must be a JSON bool"),
    ({"is_private": None}, "'is_private' is missing"),
    ({"enable_gpu": "true"}, "JSON bool"),
    ({"enable_gpus": False}, "unknown field 'enable_gpus'"),
    ({"enable_gpu": True, "enable_tpu": True}, "cannot both be true"),
    ({"machine_shape": "NvidiaTeslaP100"}, "retired"),
    ({"machine_shape": "Quantum9000"}, "unknown accelerator"),
])
def test_check_metadata_rejects_bad_fields_in_one_line(kernel_copy, change, named):
    read = json.loads((kernel_copy / metadata.METADATA_FILE).read_text())
    for name, value in change.items():
        if value is None:
            del read[name]
        else:
            read[name] = value
    with pytest.raises(KitError) as raised:
        metadata.check_metadata(read, kernel_copy)
    assert named in str(raised.value)
    assert "\n" not in str(raised.value)


def test_check_metadata_leaves_privacy_to_the_kernel(kernel_copy):
    read = json.loads((kernel_copy / metadata.METADATA_FILE).read_text())
    read["is_private"] = False
    assert metadata.check_metadata(read, kernel_copy) == read


@pytest.mark.parametrize("own, public, pushed", [(True, False, True), (True, True, False), (False, False, False)])
def test_finished_metadata_fills_the_owner_and_publishes_only_when_asked(kernel_copy, own, public, pushed):
    read = metadata.read_metadata(kernel_copy)
    read["is_private"] = own
    read["code_file"] = "other.py"

    finished = metadata.finished_metadata(read, "someone", public=public)

    assert finished["id"] == f"someone/digit-kit-{KERNEL}"
    assert finished["code_file"] == metadata.BUNDLE_CODE_FILE
    assert finished["is_private"] is pushed
    assert {key: value for key, value in finished.items() if key not in ("id", "code_file", "is_private")} == \
        {key: value for key, value in read.items() if key not in ("id", "code_file", "is_private")}
    assert read["is_private"] is own and read["id"].startswith(metadata.OWNER_PLACEHOLDER)


@pytest.mark.parametrize("accelerator, expected", [
    ("none", {"enable_gpu": False, "enable_tpu": False}),
    ("gpu", {"enable_gpu": True, "enable_tpu": False, "machine_shape": "NvidiaTeslaT4"}),
    ("tpu", {"enable_gpu": False, "enable_tpu": True, "machine_shape": "TpuV5E8"}),
])
def test_with_accelerator_sets_a_checked_machine(kernel_copy, accelerator, expected):
    read = metadata.read_metadata(kernel_copy)
    read["machine_shape"] = "NvidiaTeslaT4"

    changed = metadata.with_accelerator(read, accelerator)

    assert {key: changed.get(key) for key in ("enable_gpu", "enable_tpu", "machine_shape")} == \
        {"machine_shape": None, **expected}
    assert metadata.check_metadata(changed, kernel_copy) == changed
    assert metadata.with_accelerator(read, None) == read
    with pytest.raises(KitError, match=r"choose one of none, gpu, tpu or a machine shape \(NvidiaTeslaT4, "
                                       r".*TpuV6E8\)\. Received: accelerator='v100'"):
        metadata.with_accelerator(read, "v100")


def test_fold_metadata_names_the_folds_own_kernel(kernel_copy):
    read = metadata.read_metadata(kernel_copy)

    folded = metadata.fold_metadata(read, 2)

    assert folded["id"] == f"{metadata.OWNER_PLACEHOLDER}/digit-kit-{KERNEL}-fold-2"
    assert folded["title"] == f"digit-kit {KERNEL} fold 2"
    assert metadata.check_metadata(folded, kernel_copy) == folded
    assert metadata.fold_ref(f"me/digit-kit-{KERNEL}", 2) == f"me/digit-kit-{KERNEL}-fold-2"


def test_kernel_dir_finds_a_kernel_by_folder_or_name_and_names_the_known_ones(kernel_copy):
    assert metadata.kernel_dir(KERNEL) == paths.KERNELS_DIR / KERNEL
    assert metadata.kernel_dir(f"kernels/{KERNEL}").resolve() == (paths.KERNELS_DIR / KERNEL).resolve()
    assert metadata.kernel_dir(kernel_copy) == kernel_copy
    with pytest.raises(KitError, match=f"No kernel at nothing-here .*Known kernels: .*{KERNEL}"):
        metadata.kernel_dir("nothing-here")


@pytest.mark.parametrize("shape", metadata.MACHINE_SHAPES)
def test_every_documented_machine_shape_is_accepted_as_an_accelerator(kernel_copy, shape):
    changed = metadata.with_accelerator(metadata.read_metadata(kernel_copy), shape)
    gpu = shape in metadata.GPU_MACHINE_SHAPES
    assert (changed["enable_gpu"], changed["enable_tpu"], changed["machine_shape"]) == (gpu, not gpu, shape)
    assert metadata.check_metadata(changed, kernel_copy) == changed


@pytest.mark.parametrize("retired, named", [
    ("NvidiaTeslaP100", "Kaggle retired it; use 'NvidiaTeslaT4'"),
    ("Tpu1VmV38", "Kaggle retired it; use 'TpuV5E8'"),
    ("TpuV232", "runs such kernels with no accelerator; remove machine_shape"),
])
def test_a_retired_machine_names_its_successor_in_the_metadata_and_as_an_accelerator(kernel_copy, retired, named):
    read = metadata.read_metadata(kernel_copy)
    with pytest.raises(KitError, match=named):
        metadata.with_accelerator(read, retired)
    with pytest.raises(KitError, match=named):
        metadata.check_metadata({**read, "enable_gpu": True, "machine_shape": retired}, kernel_copy)


def test_the_machines_cover_what_the_installed_kaggle_cli_documents():
    from kaggle import cli as kaggle_cli
    from kaggle.api import kaggle_api_extended

    named = re.findall(r"'(\w+)'", kaggle_cli.Help.param_kernel_acc)
    assert named and all(shape in metadata.MACHINE_SHAPES or shape in metadata.RETIRED_MACHINE_SHAPES
                         for shape in named), named
    assert metadata.ACCELERATORS["gpu"]["machine_shape"] in named and "TpuV5E8" in named
    # The CLI's own list of retired machines (it warns about them): the kit names a successor for each.
    retired = getattr(kaggle_api_extended, "_RETIRED_ACCELERATORS", {})
    assert {shape.lower() for shape in retired} <= {shape.lower() for shape in metadata.RETIRED_MACHINE_SHAPES}
