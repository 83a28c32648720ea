"""Tests of the shape of src: its layers (import-linter), no module reaching into another's underscore names,
modules of one concept and a readable size, and imports inside functions only where they say why."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from src import paths

SOURCES = sorted(path for path in (paths.REPO_ROOT / "src").rglob("*.py") if "__pycache__" not in path.parts)
# What else imports the kit and must keep to its public names: the kernels and the benchmarks.
CLIENTS = sorted([*paths.KERNELS_DIR.glob("*/kernel.py"), *(paths.REPO_ROOT / "benchmarks").glob("*.py")])
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(paths.REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_layers_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def foreign_private_names(path: Path) -> list[str]:
    """Returns `module._name` uses (and `from module import _name`) in `path` of src modules other than its own."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = module_name(path) if path.is_relative_to(paths.REPO_ROOT / "src") else None
    aliases: dict[str, str] = {}  # local name -> the src module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "src":
            for alias in node.names:
                if alias.name.startswith("_") and node.module != own:
                    found.append(f"from {node.module} import {alias.name}")
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "src":
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            name = node.attr
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                found.append(f"{node.value.id}.{name} (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", [*SOURCES, *CLIENTS], ids=lambda path: str(path.relative_to(paths.REPO_ROOT)))
def test_no_module_uses_another_modules_underscore_names(path):
    assert foreign_private_names(path) == []


def test_the_check_of_underscore_names_catches_one(tmp_path):
    sample = tmp_path / "kernel.py"
    sample.write_text("from src import training\nfrom src.runs import _try_lock\ntraining._duration(3)\n")
    assert foreign_private_names(sample) == ["from src.runs import _try_lock", "training._duration (line 3)"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(paths.REPO_ROOT)))
def test_modules_stay_within_about_400_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(paths.REPO_ROOT)))
def test_imports_inside_functions_say_why(path):
    # The kit imports at the top of a module; inside a function only to keep TensorFlow (or a module that loads
    # it) away from a command that does not need it, which a comment on the import says.
    lines = path.read_text(encoding="utf-8").splitlines()
    silent = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for statement in ast.walk(node):
                if isinstance(statement, (ast.Import, ast.ImportFrom)) and "here" not in lines[statement.lineno - 1]:
                    silent.append(f"line {statement.lineno}: {lines[statement.lineno - 1].strip()}")
    assert silent == []


def test_every_module_says_what_it_holds():
    for path in SOURCES:
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert docstring and len(docstring) > 20, path
