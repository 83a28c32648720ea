"""src.kaggle.notebook: a kernel pushed as a Kaggle notebook, its cells cut at the kernel's `# %%` lines, and a
pushed notebook's code cells running alone, in order, as Kaggle runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from conftest import KERNELS, kernel_script
from kaggle_fixtures import FAKE_KEY, KERNEL, REF, head_commit, kaggle_machine
from src import cli, paths, submission
from src.kaggle import bundle, metadata, notebook

pytest_plugins = ["kaggle_fixtures"]


def read_notebook(folder: Path):
    return nbformat.read(folder / metadata.NOTEBOOK_CODE_FILE, as_version=4)


@pytest.mark.parametrize("kernel", KERNELS)
def test_notebook_is_the_docstring_the_package_then_the_kernels_own_cells(credentials, tmp_path, kernel):
    folder = bundle.bundle(kernel, build_dir=tmp_path, notebook=True)
    read = read_notebook(folder)

    nbformat.validate(read)
    assert read.metadata.kernelspec == {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = kernel_script(kernel).read_text()
    title = source.split('"""')[1].splitlines()[0]
    markdown, package, *story = read.cells
    assert markdown.cell_type == "markdown" and markdown.source.startswith(f"# {title}\n")
    assert package.cell_type == "code" and package.metadata == notebook.HIDDEN_CELL
    assert package.source.startswith(bundle.PAYLOAD_MARKER)
    # The kernel's cells, as jupytext cuts them at its `# %%` lines, byte for byte (the docstring went above).
    cells = [cell.source for cell in jupytext.reads(source, fmt="py:percent").cells]
    assert [cell.source for cell in story] == [cells[0][cells[0].index('"""\n', 3) + 4:].strip("\n"), *cells[1:]]
    assert all(cell.source in source for cell in story)  # each a slice of the kernel's own text
    assert len(story) >= 4 and all(cell.cell_type == "code" for cell in story)
    assert any("parse_flags(" in cell.source for cell in story[:1])
    assert any("training.start_run(" in cell.source for cell in story)


def test_notebook_bundle_is_a_notebook_kernel_and_byte_identical_when_built_twice(credentials, tmp_path):
    first = bundle.bundle(KERNEL, build_dir=tmp_path / "first", notebook=True, accelerator="gpu")
    second = bundle.bundle(KERNEL, build_dir=tmp_path / "second", notebook=True, accelerator="gpu")

    assert sorted(path.name for path in first.iterdir()) == [metadata.METADATA_FILE, metadata.NOTEBOOK_CODE_FILE]
    for name in (metadata.METADATA_FILE, metadata.NOTEBOOK_CODE_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    pushed = json.loads((first / metadata.METADATA_FILE).read_text())
    assert (pushed["kernel_type"], pushed["code_file"], pushed["machine_shape"]) == \
        ("notebook", metadata.NOTEBOOK_CODE_FILE, "NvidiaTeslaT4")
    assert read_notebook(first).metadata.kaggle["accelerator"] == "NvidiaTeslaT4"
    assert FAKE_KEY.encode() not in (first / metadata.NOTEBOOK_CODE_FILE).read_bytes()


# What Kaggle's runner does to the package cell: a Jupyter kernel's argv, then the cell.
RUN_PACKAGE_CELL = """
import json, sys
sys.argv = ["/opt/conda/lib/python3.11/site-packages/ipykernel_launcher.py", "-f", "/tmp/kernel-1.json"]
exec(compile(json.load(open("cells.json"))[0], "<cell>", "exec"), {"__name__": "__main__"})
import src
print(json.dumps({"argv": sys.argv, "src": src.__file__}))
"""


def test_notebooks_package_cell_replaces_a_jupyter_kernels_flags_with_the_kernels_own(credentials, tmp_path):
    folder = bundle.bundle(KERNEL, build_dir=tmp_path, notebook=True, fold=(1, 3))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "cells.json").write_text(json.dumps(notebook.code_cells(
        (folder / metadata.NOTEBOOK_CODE_FILE).read_text())))
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    completed = subprocess.run([sys.executable, "-c", RUN_PACKAGE_CELL], cwd=run_dir, env=environment,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout.splitlines()[-1])
    assert answer["argv"] == [f"{KERNEL}-fold-1", "--folds", "3", "--fold-index", "1"]
    assert not Path(answer["src"]).resolve().is_relative_to(paths.REPO_ROOT)


# Kaggle runs the notebook's code cells in order, in one namespace; the flags (through sys.argv, as for the
# script bundle) only keep the test short: the registry's small MLP, one epoch, no pictures.
RUN_CELLS = """
import json, sys
sys.argv = ["kernel.ipynb", "--folds", "2", "--epochs", "1", "--model", "mlp", "--no-plots", "--quiet"]
cells = [cell["source"] for cell in json.load(open("kernel.ipynb"))["cells"] if cell["cell_type"] == "code"]
namespace = {"__name__": "__main__"}
for source in cells:
    exec(compile(source if isinstance(source, str) else "".join(source), "<cell>", "exec"), namespace)
print("SRC=" + json.dumps({"file": sys.modules["src"].__file__, "doc": namespace["__doc__"][:10]}))
"""


@pytest.mark.slow
def test_pushed_notebook_is_valid_and_its_cells_run_alone_to_a_valid_submission(fake_kaggle, tmp_path, capsys):
    assert cli.main(["push", KERNEL, "--format", "notebook"]) == 0
    assert f"pushed {REF} version 1" in capsys.readouterr().out
    pushed = fake_kaggle.received("SaveKernel")[0]
    assert (pushed["kernelType"], pushed["language"]) == ("notebook", "python")
    nbformat.validate(nbformat.reads(pushed["text"], as_version=4))

    run_dir = tmp_path / "kaggle-run"
    run_dir.mkdir()
    (run_dir / "kernel.ipynb").write_text(pushed["text"])
    machine = kaggle_machine(tmp_path)
    competition, working, scratch = machine.competition, machine.working, machine.scratch

    completed = subprocess.run([sys.executable, "-c", RUN_CELLS], cwd=run_dir, env=machine.environment,
                               capture_output=True, text=True, timeout=600)

    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = json.loads(completed.stdout.split("SRC=")[-1])
    assert Path(loaded["file"]).is_relative_to(scratch) and loaded["doc"] == f"{KERNEL}:"
    assert f"digit-kit bundle of {KERNEL} from commit {head_commit()}" in completed.stdout
    result = working / paths.KAGGLE_SUBMISSION_NAME
    assert submission.validate_submission(result, sample=competition / "sample_submission.csv") == 20
    assert FAKE_KEY not in completed.stdout + completed.stderr
