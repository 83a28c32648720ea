"""src.kaggle.kernels: push (one kernel, or one per fold), status and output, through the real kaggle CLI talking
to a fake Kaggle API on a loopback port."""

import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kaggle_fixtures import FAKE_KEY, FAKE_USERNAME, KERNEL, REF, bundle_values, leftovers
from src import cli, console, paths, submission
from src.errors import KitError
from src.kaggle import command, kernels, metadata

pytest_plugins = ["kaggle_fixtures"]

IN_REPO_VENV = Path(sys.prefix).resolve() == (paths.REPO_ROOT / ".venv").resolve()


def fold_slug(fold_index: int) -> str:
    return f"digit-kit-{KERNEL}-fold-{fold_index}"


def make(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs make in the repository, leaving .venv as it is (`-o`: a stale install stamp never reinstalls)."""
    return subprocess.run(["make", "--no-print-directory", "-s", "-o", ".venv/.installed", *arguments],
                          cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=timeout)


# --- push -----------------------------------------------------------------------------------------


def test_push_rejects_bad_metadata_before_calling_kaggle(fake_kaggle, kernel_copy):
    read = json.loads((kernel_copy / metadata.METADATA_FILE).read_text())
    read["enable_internet"] = True
    (kernel_copy / metadata.METADATA_FILE).write_text(json.dumps(read))

    assert cli.main(["push", str(kernel_copy)]) == console.EXIT_USAGE
    assert fake_kaggle.requests == []


@pytest.mark.slow
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
    assert received["text"] == (kit_dirs[0] / KERNEL / metadata.BUNDLE_CODE_FILE).read_text()
    assert all(request.authorized for request in fake_kaggle.requests)
    assert FAKE_KEY not in received["text"]


@pytest.mark.slow
def test_push_public_publishes_the_kernel_and_only_then(fake_kaggle, kit_dirs):
    assert cli.main(["push", f"kernels/{KERNEL}", "--public"]) == 0
    assert cli.main(["push", f"kernels/{KERNEL}"]) == 0
    assert cli.main(["push-folds", KERNEL, "--folds", "2", "--public"]) == 0

    sent = [(body["slug"], body["isPrivate"]) for body in fake_kaggle.received("SaveKernel")]
    assert sent == [(REF, False), (REF, True), (f"{REF}-fold-0", False), (f"{REF}-fold-1", False)]
    # The repository's metadata stays private: only the pushed copy says otherwise.
    assert metadata.read_metadata(paths.KERNELS_DIR / KERNEL)["is_private"] is True


@pytest.mark.slow
def test_push_with_an_accelerator_asks_kaggle_for_its_machine_and_reads_it_back(fake_kaggle, capsys):
    for accelerator in ("gpu", "tpu", "none"):
        assert cli.main(["push", KERNEL, "--accelerator", accelerator]) == 0
    sent = [(body["enableGpu"], body["enableTpu"], body.get("machineShape"))
            for body in fake_kaggle.received("SaveKernel")]
    assert sent == [(True, False, "NvidiaTeslaT4"), (False, True, "TpuV5E8"), (False, False, None)]
    out = capsys.readouterr().out
    assert f"pushed {REF} version 3" in out and "Kaggle keeps" not in out
    # `kaggle kernels pull -m` after each push that asked for a machine: Kaggle kept what was asked.
    assert fake_kaggle.received("GetKernel") == [{"userName": FAKE_USERNAME, "kernelSlug": f"digit-kit-{KERNEL}"}] * 2


@pytest.mark.slow
def test_push_says_when_kaggle_keeps_the_kernel_on_another_machine(fake_kaggle, caplog):
    fake_kaggle.run_on("NvidiaTeslaT4")
    with caplog.at_level(logging.WARNING, logger="src"):
        result = kernels.push(KERNEL, accelerator="NvidiaL4")

    assert (result.machine_shape, result.kept_machine_shape) == ("NvidiaL4", "NvidiaTeslaT4")
    assert fake_kaggle.received("SaveKernel")[0]["machineShape"] == "NvidiaL4"
    assert fake_kaggle.received("SaveKernel")[0]["enableGpu"] is True
    assert any(record.getMessage().startswith(f"warning: Kaggle keeps {REF} on NvidiaTeslaT4, not on NvidiaL4 as "
                                              "pushed (a known Kaggle issue") for record in caplog.records)


def test_push_of_a_retired_machine_names_its_successor_before_calling_kaggle(fake_kaggle, capsys):
    assert cli.main(["push", KERNEL, "--accelerator", "NvidiaTeslaP100"]) == console.EXIT_USAGE
    assert "Kaggle retired it; use 'NvidiaTeslaT4'. Received: accelerator='NvidiaTeslaP100'" in capsys.readouterr().err
    assert fake_kaggle.requests == []


@pytest.mark.slow
def test_push_refused_by_kaggle_names_its_reason(fake_kaggle):
    fake_kaggle.push_error = "Maximum batch GPU session count of 4 reached"
    with pytest.raises(KitError, match="Maximum batch GPU session count"):
        kernels.push(KERNEL)


# --- push-folds -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_push_folds_pushes_one_kernel_per_fold_that_carries_its_index(fake_kaggle, kit_dirs, capsys):
    assert cli.main(["push-folds", KERNEL, "--folds", "3", "--accelerator", "gpu"]) == 0

    pushed = fake_kaggle.received("SaveKernel")
    assert [body["slug"] for body in pushed] == [f"{FAKE_USERNAME}/{fold_slug(index)}" for index in range(3)]
    assert [body["newTitle"] for body in pushed] == [f"digit-kit {KERNEL} fold {index}" for index in range(3)]
    assert all(body["enableGpu"] and body.get("machineShape") == "NvidiaTeslaT4" for body in pushed)
    assert all(body["isPrivate"] is True for body in pushed)
    for index, body in enumerate(pushed):
        values, _ = bundle_values(body["text"])
        assert values["arguments"] == ["--folds", "3", "--fold-index", str(index)]
        assert body["text"] == (kit_dirs[0] / f"{KERNEL}-fold-{index}" / metadata.BUNDLE_CODE_FILE).read_text()
        assert FAKE_KEY not in body["text"]
    out = capsys.readouterr().out
    assert f"pushed {FAKE_USERNAME}/{fold_slug(2)} version 1" in out
    assert f"`make watch-folds KERNEL={KERNEL} FOLDS=3` waits for all 3 and blends them" in out
    assert len(fake_kaggle.received("GetKernel")) == 1  # the folds' machine is read back once


def test_push_folds_needs_two_folds_or_more(fake_kaggle):
    with pytest.raises(KitError, match="folds must be an integer from 2 to 50. Received: folds=1"):
        kernels.push_folds(KERNEL, 1)
    assert fake_kaggle.received("SaveKernel") == []


@pytest.mark.slow
def test_push_folds_failing_midway_names_the_folds_pushed(fake_kaggle, monkeypatch):
    pushed = []
    push_bundle = kernels.push_bundle

    def push_twice(target, **options):
        if len(pushed) == 2:
            fake_kaggle.fail("SaveKernel", 503)
        pushed.append(target.name)
        return push_bundle(target, **options)

    monkeypatch.setattr(kernels, "push_bundle", push_twice)
    with pytest.raises(KitError, match=r"5xx.*\(Folds 0-1 were pushed; push them all again.\)"):
        kernels.push_folds(KERNEL, 3)
    assert pushed == [f"{KERNEL}-fold-{index}" for index in range(3)]


# --- status and output ----------------------------------------------------------------------------


@pytest.mark.slow
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


@pytest.mark.slow
def test_what_kaggle_answers_is_redacted_before_it_is_printed(fake_kaggle, capsys):
    # Kaggle's words reach the screen in a refused push's reason and a failed run's message: never the key.
    fake_kaggle.push_error = f"Invalid token {FAKE_KEY} for this kernel"
    assert cli.main(["push", KERNEL]) == console.EXIT_USAGE
    fake_kaggle.kernel_status = "ERROR"
    fake_kaggle.kernel_failure_message = f"the kernel printed KAGGLE_KEY={FAKE_KEY}"
    assert cli.main(["status", KERNEL]) == 0

    printed = capsys.readouterr()
    assert FAKE_KEY not in printed.out + printed.err
    assert "Invalid token *** for this kernel" in printed.err
    assert printed.out.strip().endswith("error (the kernel printed KAGGLE_KEY=***)")


@pytest.mark.slow
def test_output_downloads_into_submissions_kaggle(fake_kaggle, kit_dirs, capsys):
    csv_text = submission.submission_text(np.arange(12) % 10)
    fake_kaggle.kernel_outputs = {"submission.csv": csv_text.encode(), "old.csv": b"stale\n"}
    kernels.download_output(KERNEL)
    fake_kaggle.kernel_outputs = {"submission.csv": csv_text.encode()}

    assert cli.main(["output", KERNEL]) == 0
    folder = kit_dirs[1] / KERNEL
    assert sorted(path.name for path in folder.iterdir()) == ["digit-kit-mnist-cnn.log", "submission.csv"]
    assert (folder / "submission.csv").read_text() == csv_text
    assert "valid submission, 12 rows" in capsys.readouterr().out
    assert leftovers(kit_dirs[1]) == []


@pytest.mark.slow
def test_output_keeps_the_previous_download_when_a_file_fails(fake_kaggle, kit_dirs):
    fake_kaggle.kernel_outputs = {"submission.csv": b"ImageId,Label\n1,7\n"}
    first = kernels.download_output(KERNEL)
    fake_kaggle.kernel_outputs = {"submission.csv": b"ImageId,Label\n1,1\n", "other.csv": b"x\n"}
    fake_kaggle.fail("GET", 503)

    with pytest.raises(KitError, match="5xx"):
        kernels.download_output(KERNEL)
    assert sorted(path.name for path in first.iterdir()) == ["digit-kit-mnist-cnn.log", "submission.csv"]
    assert (first / "submission.csv").read_bytes() == b"ImageId,Label\n1,7\n"
    assert leftovers(kit_dirs[1]) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["../outside.txt", "/tmp/digit-kit-absolute-outside.txt", "sub/../../outside.txt"])
def test_output_refuses_a_file_named_outside_the_folder_and_keeps_nothing(fake_kaggle, kit_dirs, name):
    fake_kaggle.kernel_outputs = {"submission.csv": b"ImageId,Label\n1,7\n"}
    first = kernels.download_output(KERNEL)
    fake_kaggle.kernel_outputs = {"a.csv": b"x\n", name: b"planted\n"}

    with pytest.raises(KitError, match=r"the kernel's output names a file outside the download folder \(refused: "
                                       rf"{re.escape(repr(name))}\); nothing was kept") as raised:
        kernels.download_output(KERNEL)
    assert "\n" not in str(raised.value)
    assert sorted(path.name for path in first.iterdir()) == ["digit-kit-mnist-cnn.log", "submission.csv"]
    assert not (kit_dirs[1] / "outside.txt").exists() and not Path("/tmp/digit-kit-absolute-outside.txt").exists()
    assert leftovers(kit_dirs[1]) == []


def fake_cli_writing(monkeypatch, write) -> list[list[str]]:
    """Replaces the kaggle CLI of `kernels output` with one that calls `write(folder)`; returns its calls."""
    calls = []

    def run_cli(arguments, what, forbidden=None, not_found=None):
        calls.append(arguments)
        write(Path(arguments[arguments.index("-p") + 1]))
        return ""

    monkeypatch.setattr(kernels, "run_cli", run_cli)
    return calls


# What a kaggle CLI might leave in the download folder (given it and a file outside), and what the kit says of it.
CLI_LEFTOVERS = [
    (lambda folder, outside: (folder / "submission.csv").symlink_to(outside), "'submission.csv' is a symbolic link"),
    (lambda folder, outside: (folder / "run").symlink_to(outside.parent, target_is_directory=True),
     "'run' is a symbolic link"),
    (lambda folder, outside: os.mkfifo(folder / "pipe.csv"), "'pipe.csv' is not a regular file"),
    (lambda folder, outside: (folder / "a\x1b[2Jb.csv").write_text("x\n"), r"the name 'a\\x1b\[2Jb.csv' has control"),
]


def test_output_keeps_only_regular_files_whatever_the_cli_writes(credentials, kit_dirs, monkeypatch, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not the kernel's\n")
    for write, said in CLI_LEFTOVERS:
        fake_cli_writing(monkeypatch, lambda folder, write=write: ((folder / "ok.csv").write_text("ok\n"),
                                                                   write(folder, outside)))
        with pytest.raises(KitError, match=f"Refusing the output of kernel {REF}: {said}.*nothing was kept") as raised:
            kernels.download_output(KERNEL)
        assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value), said
        assert not (kit_dirs[1] / KERNEL).exists() and leftovers(kit_dirs[1]) == []
    assert outside.read_text() == "not the kernel's\n"


def test_output_refuses_a_kaggle_cli_that_writes_outside_its_folder(credentials, kit_dirs, monkeypatch):
    calls = fake_cli_writing(monkeypatch, lambda folder: None)
    monkeypatch.setattr(command, "cli_version", lambda: (2, 2, 4))
    with pytest.raises(KitError, match=r"The kaggle CLI here is version 2.2.4, whose `kernels output` writes a file "
                                       r"wherever .* upgrade it to 2.2.5 or later"):
        kernels.download_output(KERNEL)
    assert calls == []
    monkeypatch.setattr(command, "cli_version", lambda: (2, 2, 5))
    kernels.download_output(KERNEL)
    assert len(calls) == 1


def test_cli_version_is_the_installed_kaggle_package_s():
    expected = tuple(int(part) for part in importlib.metadata.version("kaggle").split(".")[:3])
    assert command.cli_version() == expected >= kernels.SAFE_OUTPUT_CLI


# --- make -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not IN_REPO_VENV, reason="make uses the repository's .venv; run the suite from it (make test)")
def test_make_push_works_against_the_fake_server_and_publishes_with_public(fake_kaggle):
    pushed = make("push", f"KERNEL={KERNEL}")
    assert pushed.returncode == 0, pushed.stderr
    assert f"pushed {REF} version 1: https://www.kaggle.com/code/{REF}" in pushed.stdout
    published = make("push", f"KERNEL={KERNEL}", "PUBLIC=1")
    assert published.returncode == 0, published.stderr
    assert f"pushed {REF} version 2:" in published.stdout
    assert [body["isPrivate"] for body in fake_kaggle.received("SaveKernel")] == [True, False]


@pytest.mark.skipif(not IN_REPO_VENV, reason="make uses the repository's .venv; run the suite from it (make test)")
def test_make_passes_folds_accelerator_and_public_on():
    def dry_run(*arguments: str) -> str:
        completed = make("-n", *arguments, timeout=60)
        assert completed.returncode == 0, completed.stderr
        return " ".join(completed.stdout.split())  # the words of the commands make would run

    assert "-m src push-folds kernels/mnist-cnn --folds 3 --accelerator tpu" in \
        dry_run("push-folds", "KERNEL=mnist-cnn", "FOLDS=3", "ACCELERATOR=tpu")
    assert "-m src push kernels/mnist-cnn --accelerator gpu" in dry_run("push", "KERNEL=mnist-cnn", "ACCELERATOR=gpu")
    assert "-m src push kernels/mnist-cnn --accelerator gpu --public" in \
        dry_run("push", "KERNEL=mnist-cnn", "ACCELERATOR=gpu", "PUBLIC=1")
    assert "--public" not in dry_run("push", "KERNEL=mnist-cnn")
    assert "-m src push-folds kernels/mnist-cnn --folds 5 --public" in \
        dry_run("push-folds", "KERNEL=mnist-cnn", "PUBLIC=1")
    assert "-m src bundle kernels/mnist-cnn --public" in dry_run("bundle", "KERNEL=mnist-cnn", "PUBLIC=1")
    assert "-m src push kernels/mnist-cnn --format notebook" in dry_run("push", "KERNEL=mnist-cnn", "FORMAT=notebook")
    assert "-m src notebook kernels/mnist-cnn" in dry_run("notebook", "KERNEL=mnist-cnn")
    assert '-m src watch kernels/mnist-cnn --submit "first try" --allow-leak' in \
        dry_run("watch", "KERNEL=mnist-cnn", "MESSAGE=first try", "ALLOW_LEAK=1")
    assert "-m src watch-folds kernels/mnist-cnn --folds 3" in dry_run("watch-folds", "KERNEL=mnist-cnn", "FOLDS=3")
    assert "--allow-leak" in dry_run("submit", "FILE=a.csv", "MESSAGE=m", "ALLOW_LEAK=1")
    assert "-m src scores" in dry_run("scores")
