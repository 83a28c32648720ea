"""What the Kaggle tests share: throwaway credentials, the fake Kaggle API with the real kaggle CLI routed to it,
temporary kit folders, and reading a bundle without running it.

A test file registers the fixtures with `pytest_plugins = ["kaggle_fixtures"]` and imports the constants and
helpers it uses by name. Those imports come before pytest loads the plugin, too late for pytest to rewrite this
module's asserts, so it has none and says so: PYTEST_DONT_REWRITE.
"""

import ast
import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import make_arrays, write_competition
from fake_kaggle import FakeKaggle
from src import mnist, paths, submission
from src.kaggle import bundle

# Throwaway credentials: the fake server accepts exactly these, and no file the kit writes may hold the key.
FAKE_USERNAME = "kit-tester"
FAKE_KEY = "fake0key0c0ffee0123456789abcdef"
KERNEL = "mnist-cnn"
REF = f"{FAKE_USERNAME}/digit-kit-{KERNEL}"


def write_credentials(folder: Path, username: str = FAKE_USERNAME, key: str = FAKE_KEY, mode: int = 0o600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kaggle.json"
    path.write_text(json.dumps({"username": username, "key": key}))
    path.chmod(mode)
    return path


@pytest.fixture
def credentials(tmp_path, monkeypatch):
    """A temporary KAGGLE_CONFIG_DIR with throwaway credentials; HOME moved so no real token is found."""
    config = tmp_path / "kaggle-config"
    write_credentials(config)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    return config


@pytest.fixture
def kit_dirs(tmp_path, monkeypatch):
    """Sends bundles and downloaded outputs to temporary folders instead of the repository's."""
    bundles = tmp_path / "build" / "kernels"
    outputs = tmp_path / "submissions" / "kaggle"
    monkeypatch.setattr(paths, "KERNEL_BUNDLES_DIR", bundles)
    monkeypatch.setattr(paths, "KERNEL_OUTPUTS_DIR", outputs)
    return bundles, outputs


@dataclass
class KaggleMachine:
    """A Kaggle machine's folders in a test's tmp_path, and the environment a kernel pushed there runs in."""

    competition: Path  # the mounted competition: train.csv, test.csv (20 rows), sample_submission.csv
    working: Path  # /kaggle/working
    scratch: Path  # TMPDIR
    environment: dict


def kaggle_machine(tmp_path: Path, mount: str = "") -> KaggleMachine:
    """Returns a Kaggle machine under `tmp_path`: a small competition in `kaggle-input/<mount>/`, the working and
    temporary folders, and an environment with no PYTHONPATH and no KAGGLE_ variables but Kaggle's folders."""
    (x_train, y_train), (x_test, _) = make_arrays(train_per_class=10, test_rows=20)
    competition = write_competition(tmp_path / "kaggle-input" / mount / paths.COMPETITION, x_train, y_train, x_test)
    working = tmp_path / "kaggle-working"
    working.mkdir()
    scratch = tmp_path / "kaggle-tmp"
    scratch.mkdir()
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("PYTHONPATH", "PYTHONHOME") and not name.startswith("KAGGLE_")}
    environment.update({paths.KAGGLE_INPUT_ENV: str(tmp_path / "kaggle-input"),
                        paths.KAGGLE_WORKING_ENV: str(working), "TMPDIR": str(scratch)})
    return KaggleMachine(competition, working, scratch, environment)


def route_cli_to(monkeypatch, port: int) -> None:
    """Points the kaggle CLI at http://localhost through a proxy on `port` (the fake server, or nothing)."""
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")


@pytest.fixture
def fake_kaggle(credentials, kit_dirs, monkeypatch):
    """The fake Kaggle API, with the kaggle CLI routed to it."""
    fake = FakeKaggle(FAKE_USERNAME, FAKE_KEY).start()
    route_cli_to(monkeypatch, fake.port)
    yield fake
    fake.stop()


@pytest.fixture
def competition_csv(tmp_path):
    """A valid submission with the competition's 28,000 rows."""
    labels = np.random.default_rng(0).integers(0, 10, size=mnist.COMPETITION_TEST_ROWS)
    folder = tmp_path / "runs"
    folder.mkdir()
    path = folder / "mnist-cnn-20250101T000000Z.csv"
    path.write_text(submission.submission_text(labels))
    return path


@pytest.fixture
def kernel_copy(tmp_path):
    """A copy of kernels/mnist-cnn to break."""
    return Path(shutil.copytree(paths.KERNELS_DIR / KERNEL, tmp_path / "kernels" / KERNEL))


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def leftovers(folder: Path) -> list[str]:
    """Returns the hidden (temporary) entries in `folder`."""
    return sorted(entry.name for entry in folder.iterdir() if entry.name.startswith(".")) if folder.exists() else []


def _assigned(tree: ast.Module, name: str) -> ast.expr:
    """Returns the value of the module-level assignment `name = ...` in `tree`."""
    values = [node.value for node in tree.body if isinstance(node, ast.Assign)
              and any(isinstance(target, ast.Name) and target.id == name for target in node.targets)]
    if len(values) != 1:
        raise ValueError(f"{name} is assigned {len(values)} times at the top level, not once")
    return values[0]


def bundle_payload(text: str) -> str:
    """Returns the bundle's `_DIGIT_KIT_SRC` string (the unpacker and the zip), read without running anything."""
    payload = ast.literal_eval(_assigned(ast.parse(text), "_DIGIT_KIT_SRC"))
    if not isinstance(payload, str) or not payload.startswith(bundle.PAYLOAD_MARKER):
        raise ValueError(f"_DIGIT_KIT_SRC does not start with {bundle.PAYLOAD_MARKER!r}")
    return payload


def bundle_values(text: str) -> tuple[dict, bytes]:
    """Returns the bundle's `DIGIT_KIT_BUNDLE` and its zip bytes, read without running it.

    Both are in the `_DIGIT_KIT_SRC` string at the bundle's end: the dict as a literal, the zip as the base64
    string literal passed to the unpacker (`_digit_kit_unpack("...")`).
    """
    payload = ast.parse(bundle_payload(text))
    values = ast.literal_eval(_assigned(payload, "DIGIT_KIT_BUNDLE"))
    calls = [node.value for node in payload.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
             and isinstance(node.value.func, ast.Name) and node.value.func.id == "_digit_kit_unpack"]
    if len(calls) != 1 or len(calls[0].args) != 1:
        raise ValueError("the payload does not call _digit_kit_unpack once, with the zip alone")
    return values, base64.b64decode(ast.literal_eval(calls[0].args[0]), validate=True)
