"""Kaggle: metadata checks, bundles, and the real kaggle CLI against a fake Kaggle API on a loopback port."""

import ast
import base64
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import make_arrays, write_competition
from fake_kaggle import FakeKaggle
from src import cli, kaggle, paths, submission
from src.errors import KitError

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
    labels = np.random.default_rng(0).integers(0, 10, size=submission.COMPETITION_TEST_ROWS)
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


def bundle_values(text: str) -> tuple[dict, bytes]:
    """Returns the bundle's `DIGIT_KIT_BUNDLE` and its zip bytes, read without running it."""
    values = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("DIGIT_KIT_BUNDLE", "_DIGIT_KIT_SRC_ZIP"):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    return values["DIGIT_KIT_BUNDLE"], base64.b64decode(values["_DIGIT_KIT_SRC_ZIP"])


# --- metadata -------------------------------------------------------------------------------------


def test_read_metadata_accepts_every_kernel_in_the_repo():
    folders = sorted(path.parent for path in paths.KERNELS_DIR.glob(f"*/{kaggle.METADATA_FILE}"))
    assert folders, "no kernels found"
    for folder in folders:
        metadata = kaggle.read_metadata(folder)
        assert metadata["id"] == f"{kaggle.OWNER_PLACEHOLDER}/{kaggle.slugify(metadata['title'])}"
        assert metadata["competition_sources"] == [paths.COMPETITION]


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
    ({"is_private": False}, "is_private"),
    ({"enable_gpu": "true"}, "JSON bool"),
    ({"enable_gpus": False}, "unknown field 'enable_gpus'"),
    ({"enable_gpu": True, "enable_tpu": True}, "cannot both be true"),
    ({"machine_shape": "NvidiaTeslaP100"}, "retired"),
    ({"machine_shape": "Quantum9000"}, "unknown accelerator"),
])
def test_check_metadata_rejects_bad_fields_in_one_line(kernel_copy, change, named):
    metadata = json.loads((kernel_copy / kaggle.METADATA_FILE).read_text())
    for name, value in change.items():
        if value is None:
            del metadata[name]
        else:
            metadata[name] = value
    with pytest.raises(KitError) as raised:
        kaggle.check_metadata(metadata, kernel_copy)
    assert named in str(raised.value)
    assert "\n" not in str(raised.value)


def test_push_rejects_bad_metadata_before_calling_kaggle(fake_kaggle, kernel_copy):
    metadata = json.loads((kernel_copy / kaggle.METADATA_FILE).read_text())
    metadata["enable_internet"] = True
    (kernel_copy / kaggle.METADATA_FILE).write_text(json.dumps(metadata))

    assert cli.main(["push", str(kernel_copy)]) == cli.EXIT_USAGE
    assert fake_kaggle.requests == []


# --- bundles --------------------------------------------------------------------------------------


def test_bundle_is_byte_identical_and_names_its_commit(credentials, tmp_path):
    first = kaggle.bundle(f"kernels/{KERNEL}", build_dir=tmp_path / "first")
    second = kaggle.bundle(KERNEL, build_dir=tmp_path / "second")

    for name in (kaggle.BUNDLE_CODE_FILE, kaggle.METADATA_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    text = (first / kaggle.BUNDLE_CODE_FILE).read_text()
    bundle_info, _ = bundle_values(text)
    assert bundle_info["commit"].startswith(head_commit())
    assert f"from commit {head_commit()}" in text
    metadata = json.loads((first / kaggle.METADATA_FILE).read_text())
    assert metadata["id"] == REF
    assert metadata["code_file"] == kaggle.BUNDLE_CODE_FILE
    assert leftovers(tmp_path / "first") == []


def test_bundle_carries_src_and_keeps_the_kernel_code(credentials, tmp_path):
    target = kaggle.bundle(KERNEL, build_dir=tmp_path)
    text = (target / kaggle.BUNDLE_CODE_FILE).read_text()
    bundle_info, archive = bundle_values(text)

    assert hashlib.sha256(archive).hexdigest() == bundle_info["src_sha256"]
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = opened.namelist()
        package = paths.REPO_ROOT / "src"
        expected = sorted(f"src/{path.relative_to(package).as_posix()}" for path in package.glob("*.py"))
        assert names == expected
        for name in names:
            assert opened.read(name) == (paths.REPO_ROOT / name).read_bytes()
            assert opened.getinfo(name).date_time == kaggle.ZIP_DATE_TIME
    # The kernel's docstring stays the module's docstring, and its code follows unchanged.
    source = (paths.KERNELS_DIR / KERNEL / "kernel.py").read_text()
    assert ast.get_docstring(ast.parse(text)) == ast.get_docstring(ast.parse(source))
    code = source.split('"""', 2)[2]
    assert text.endswith(code)


def test_bundle_never_holds_the_key(credentials, tmp_path):
    target = kaggle.bundle(KERNEL, build_dir=tmp_path)
    for path in target.iterdir():
        assert FAKE_KEY.encode() not in path.read_bytes()


def test_bundle_refuses_a_kernel_that_holds_the_key(credentials, kernel_copy, tmp_path):
    with open(kernel_copy / "kernel.py", "a") as stream:
        stream.write(f'\nKAGGLE_KEY = "{FAKE_KEY}"\n')

    with pytest.raises(KitError, match="credential") as raised:
        kaggle.bundle(kernel_copy, build_dir=tmp_path / "build")
    assert FAKE_KEY not in str(raised.value)
    assert not (tmp_path / "build" / KERNEL).exists()
    assert leftovers(tmp_path / "build") == []


def test_bundle_owner_comes_from_the_environment_first(credentials, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone-else")
    target = kaggle.bundle(KERNEL, build_dir=tmp_path)
    assert json.loads((target / kaggle.METADATA_FILE).read_text())["id"] == "someone-else/digit-kit-mnist-cnn"


def test_bundle_without_a_username_says_where_to_put_it(tmp_path):
    with pytest.raises(KitError, match="KAGGLE_USERNAME"):
        kaggle.bundle(KERNEL, build_dir=tmp_path)
    assert not tmp_path.joinpath(KERNEL).exists()


def test_warn_if_exposed_warns_once_on_a_readable_kaggle_json(credentials, caplog, tmp_path):
    assert not kaggle.warn_if_exposed()
    (credentials / "kaggle.json").chmod(0o644)

    kaggle.bundle(KERNEL, build_dir=tmp_path / "build")
    assert kaggle.warn_if_exposed()
    warnings = [record.getMessage() for record in caplog.records if "readable by other users" in record.getMessage()]
    assert len(warnings) == 1 and f"chmod 600 {credentials / 'kaggle.json'}" in warnings[0]
    assert FAKE_KEY not in caplog.text


# --- errors ---------------------------------------------------------------------------------------


def test_describe_failure_redacts_credentials_in_unknown_output(credentials):
    line = kaggle.describe_failure(f"Something odd happened with {FAKE_KEY}\nmore", "do a thing")
    assert FAKE_KEY not in line
    assert "***" in line
    assert "\n" not in line


def test_run_cli_without_credentials_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KitError, match="no Kaggle credentials.*kaggle.json"):
        kaggle.run_cli(["kernels", "status", REF], "get a status")


def test_run_cli_without_network_says_so(credentials, kit_dirs, monkeypatch, competition_csv):
    with socket.socket() as probe:  # a free port that nothing listens on: every connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    route_cli_to(monkeypatch, port)

    with pytest.raises(KitError, match="unreachable") as raised:
        kaggle.submit(competition_csv, "no network")
    assert "\n" not in str(raised.value)
    assert not (competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).exists()


def test_run_cli_with_a_wrong_key_names_the_credentials(fake_kaggle, credentials):
    write_credentials(credentials, key="wrong0key0wrong0key")
    with pytest.raises(KitError, match="401.*kaggle.json"):
        kaggle.push(KERNEL)
    assert [request.authorized for request in fake_kaggle.requests] == [False]


COMMANDS = {
    "push": lambda csv: kaggle.push(KERNEL),
    "status": lambda csv: kaggle.kernel_status(KERNEL),
    "output": lambda csv: kaggle.download_output(KERNEL),
    "submit": lambda csv: kaggle.submit(csv, "a failing submission"),
}
EXPECTED = {401: "401", 403: "403", 404: "404", 409: "409", 429: "429", 500: "5xx", 503: "5xx"}
# Every command meets the failures whose explanation depends on the command; the generic ones rotate.
FAILURE_CASES = [(status, list(COMMANDS)) for status in (401, 403, 404, 503)] + [
    (409, ["push", "status"]), (429, ["output", "submit"]), (500, ["push", "submit"]),
]


@pytest.mark.parametrize("status, names", FAILURE_CASES)
def test_kaggle_failures_are_one_line_and_write_nothing(fake_kaggle, kit_dirs, competition_csv, status, names):
    fake_kaggle.fail("*", status)
    for name in names:
        command = COMMANDS[name]
        with pytest.raises(KitError) as raised:
            command(competition_csv)
        message = str(raised.value)
        assert EXPECTED[status] in message, (name, message)
        assert "\n" not in message and FAKE_KEY not in message
    bundles, outputs = kit_dirs
    assert not (outputs / KERNEL).exists()
    assert leftovers(outputs) == [] and leftovers(bundles) == []
    assert not (competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).exists()


def test_submit_without_accepted_rules_points_at_them(fake_kaggle, competition_csv, capsys):
    fake_kaggle.fail("StartSubmissionUpload", 403)

    assert cli.main(["submit", str(competition_csv), "-m", "rules"]) == cli.EXIT_USAGE
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.count("\n") == 1 and printed.err.startswith("error: Kaggle could not submit")
    assert "403 Forbidden" in printed.err and f"accept them at {kaggle.RULES_URL}" in printed.err


def test_submit_with_a_failed_upload_logs_nothing(fake_kaggle, competition_csv):
    fake_kaggle.fail("PUT", 503)
    with pytest.raises(KitError, match="upload"):
        kaggle.submit(competition_csv, "upload fails")
    assert fake_kaggle.received("CreateSubmission") == []
    assert not (competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).exists()


def test_push_refused_by_kaggle_names_its_reason(fake_kaggle):
    fake_kaggle.push_error = "Maximum batch GPU session count of 4 reached"
    with pytest.raises(KitError, match="Maximum batch GPU session count"):
        kaggle.push(KERNEL)


def test_output_keeps_the_previous_download_when_a_file_fails(fake_kaggle, kit_dirs):
    fake_kaggle.kernel_outputs = {"submission.csv": b"ImageId,Label\n1,7\n"}
    first = kaggle.download_output(KERNEL)
    fake_kaggle.kernel_outputs = {"submission.csv": b"ImageId,Label\n1,1\n", "other.csv": b"x\n"}
    fake_kaggle.fail("GET", 503)

    with pytest.raises(KitError, match="5xx"):
        kaggle.download_output(KERNEL)
    assert sorted(path.name for path in first.iterdir()) == ["digit-kit-mnist-cnn.log", "submission.csv"]
    assert (first / "submission.csv").read_bytes() == b"ImageId,Label\n1,7\n"
    assert leftovers(kit_dirs[1]) == []


# --- the workflow against the fake server ---------------------------------------------------------


def test_push_sends_the_checked_bundle_and_prints_url_and_version(fake_kaggle, kit_dirs, capsys):
    assert cli.main(["push", f"kernels/{KERNEL}"]) == 0
    assert cli.main(["push", KERNEL]) == 0

    printed = capsys.readouterr().out
    assert f"pushed {REF} version 1: https://www.kaggle.com/code/{REF}" in printed
    assert f"pushed {REF} version 2:" in printed
    received = fake_kaggle.received("SaveKernel")[0]
    assert received["slug"] == REF
    assert received["newTitle"] == "digit-kit mnist-cnn"
    assert (received["language"], received["kernelType"]) == ("python", "script")
    assert received["isPrivate"] is True and received["enableInternet"] is False
    assert received["competitionDataSources"] == [paths.COMPETITION]
    assert received["text"] == (kit_dirs[0] / KERNEL / kaggle.BUNDLE_CODE_FILE).read_text()
    assert all(request.authorized for request in fake_kaggle.requests)
    assert FAKE_KEY not in received["text"]


def test_status_prints_the_state_and_failure(fake_kaggle, capsys):
    fake_kaggle.kernel_status = "ERROR"
    fake_kaggle.kernel_failure_message = "Your notebook tried to allocate more memory than is available."

    assert cli.main(["status", KERNEL]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{REF}: error (Your notebook tried to allocate more memory than is available.)"
    )
    assert fake_kaggle.received("GetKernelSessionStatus") == [
        {"userName": FAKE_USERNAME, "kernelSlug": f"digit-kit-{KERNEL}"}
    ]


def test_output_downloads_into_submissions_kaggle(fake_kaggle, kit_dirs, capsys):
    csv_text = submission.submission_text(np.arange(12) % 10)
    fake_kaggle.kernel_outputs = {"submission.csv": csv_text.encode(), "old.csv": b"stale\n"}
    kaggle.download_output(KERNEL)
    fake_kaggle.kernel_outputs = {"submission.csv": csv_text.encode()}

    assert cli.main(["output", KERNEL]) == 0
    folder = kit_dirs[1] / KERNEL
    assert sorted(path.name for path in folder.iterdir()) == ["digit-kit-mnist-cnn.log", "submission.csv"]
    assert (folder / "submission.csv").read_text() == csv_text
    assert "valid submission, 12 rows" in capsys.readouterr().out
    assert leftovers(kit_dirs[1]) == []


def test_submit_uploads_the_file_and_logs_each_submission(fake_kaggle, competition_csv, capsys):
    assert cli.main(["submit", str(competition_csv), "--message", "first try"]) == 0
    assert cli.main(["submit", str(competition_csv), "-m", "second try"]) == 0

    assert fake_kaggle.uploads["blob-1"] == competition_csv.read_bytes()
    started = fake_kaggle.received("StartSubmissionUpload")[0]
    assert started["competitionName"] == paths.COMPETITION
    assert started["fileName"] == competition_csv.name
    assert started["contentLength"] == competition_csv.stat().st_size
    created = fake_kaggle.received("CreateSubmission")
    assert [body["submissionDescription"] for body in created] == ["first try", "second try"]
    assert created[0]["blobFileTokens"] == "blob-1"
    assert "(ref 31337): Successfully submitted to Digit Recognizer" in capsys.readouterr().out

    lines = (competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [list(entry) for entry in entries] == [["file", "message", "submitted_at", "public_score"]] * 2
    assert [entry["message"] for entry in entries] == ["first try", "second try"]
    assert all(entry["file"] == competition_csv.name and entry["public_score"] is None for entry in entries)
    stamp = dt.datetime.fromisoformat(entries[0]["submitted_at"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - stamp) < dt.timedelta(minutes=5)


@pytest.mark.parametrize("text, named", [
    ("ImageId,Digit\n1,3\n", "header"),
    (submission.submission_text(np.zeros(100, dtype=int)), "28,000"),
])
def test_submit_validates_the_file_before_calling_kaggle(fake_kaggle, tmp_path, text, named):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(KitError, match=named):
        kaggle.submit(path, "bad")
    assert fake_kaggle.requests == []


def test_submit_needs_a_file_and_a_message(fake_kaggle, competition_csv):
    with pytest.raises(KitError, match="FILE="):
        kaggle.submit("", "message")
    with pytest.raises(KitError, match="MESSAGE="):
        kaggle.submit(competition_csv, "  ")
    assert fake_kaggle.requests == []


def test_download_competition_unzips_into_target(fake_kaggle, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("train.csv", "test.csv", "sample_submission.csv"):
            archive.writestr(name, f"{name}\n")
    fake_kaggle.downloads[f"{paths.COMPETITION}.zip"] = buffer.getvalue()
    target = tmp_path / "input" / paths.COMPETITION

    assert kaggle.download_competition(target) == target
    assert sorted(path.name for path in target.iterdir()) == ["sample_submission.csv", "test.csv", "train.csv"]
    assert fake_kaggle.received("DownloadDataFiles") == [{"competitionName": paths.COMPETITION}]

    fake_kaggle.fail("DownloadDataFiles", 403)
    other = tmp_path / "other" / paths.COMPETITION
    with pytest.raises(KitError, match="rules"):
        kaggle.download_competition(other)
    assert list(other.parent.iterdir()) == []


@pytest.mark.skipif(Path(sys.prefix).resolve() != (paths.REPO_ROOT / ".venv").resolve(),
                    reason="make uses the repository's .venv; run the suite from it (make test)")
def test_make_push_and_make_submit_work_against_the_fake_server(fake_kaggle, competition_csv):
    def make(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", "--no-print-directory", "-s", *arguments], cwd=paths.REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    pushed = make("push", f"KERNEL={KERNEL}")
    assert pushed.returncode == 0, pushed.stderr
    assert f"pushed {REF} version 1: https://www.kaggle.com/code/{REF}" in pushed.stdout
    submitted = make("submit", f"FILE={competition_csv}", "MESSAGE=from make")
    assert submitted.returncode == 0, submitted.stderr
    assert fake_kaggle.received("CreateSubmission")[0]["submissionDescription"] == "from make"
    refused = make("submit", "FILE=", "MESSAGE=x")
    assert refused.returncode != 0 and refused.stderr.startswith("error: No submission file given")


# --- a pushed bundle runs alone, as on Kaggle ------------------------------------------------------

# Kaggle runs the script by itself; the flags (the same path through sys.argv) only keep the test short.
RUN_AS_KAGGLE = """
import json, runpy, sys
sys.argv = ["kernel.py", "--folds", "2", "--epochs", "2", "--quiet"]
try:
    runpy.run_path("kernel.py", run_name="__main__")
    code = 0
except SystemExit as stop:
    code = stop.code
print("SRC=" + json.dumps({"file": sys.modules["src"].__file__, "path": sys.path}))
sys.exit(code)
"""


def test_pushed_bundle_runs_alone_to_a_valid_submission(fake_kaggle, tmp_path):
    kaggle.push(KERNEL)
    script = fake_kaggle.received("SaveKernel")[0]["text"]
    run_dir = tmp_path / "kaggle-run"
    run_dir.mkdir()
    (run_dir / "kernel.py").write_text(script)
    (x_train, y_train), (x_test, _) = make_arrays(train_per_class=10, test_rows=20)
    competition = write_competition(tmp_path / "kaggle-input" / "mounted" / "deep" / paths.COMPETITION,
                                    x_train, y_train, x_test)
    working = tmp_path / "kaggle-working"
    working.mkdir()
    scratch = tmp_path / "kaggle-tmp"
    scratch.mkdir()
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("PYTHONPATH", "PYTHONHOME") and not name.startswith("KAGGLE_")}
    environment.update({paths.KAGGLE_INPUT_ENV: str(tmp_path / "kaggle-input"),
                        paths.KAGGLE_WORKING_ENV: str(working), "TMPDIR": str(scratch)})

    completed = subprocess.run([sys.executable, "-c", RUN_AS_KAGGLE], cwd=run_dir, env=environment,
                               capture_output=True, text=True, timeout=600)

    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = json.loads(completed.stdout.split("SRC=")[-1])
    assert Path(loaded["file"]).is_relative_to(scratch), loaded["file"]
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
