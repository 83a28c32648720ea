"""src.kaggle.command: the kaggle CLI run against a fake Kaggle API, and its failures as one line naming the fix."""

import socket

import pytest

from kaggle_fixtures import FAKE_KEY, KERNEL, REF, leftovers, route_cli_to, write_credentials
from src import paths
from src.errors import KitError
from src.kaggle import command, competition, kernels

pytest_plugins = ["kaggle_fixtures"]


def test_describe_failure_redacts_credentials_in_unknown_output(credentials):
    line = command.describe_failure(f"Something odd happened with {FAKE_KEY}\nmore", "do a thing")
    assert FAKE_KEY not in line
    assert "***" in line
    assert "\n" not in line


def test_run_cli_without_credentials_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(KitError, match="no Kaggle credentials.*kaggle.json"):
        command.run_cli(["kernels", "status", REF], "get a status")


@pytest.mark.slow
def test_run_cli_without_network_says_so(credentials, kit_dirs, monkeypatch, competition_csv):
    with socket.socket() as probe:  # a free port that nothing listens on: every connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    route_cli_to(monkeypatch, port)

    with pytest.raises(KitError, match="unreachable") as raised:
        competition.submit(competition_csv, "no network")
    assert "\n" not in str(raised.value)
    assert not (competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).exists()


@pytest.mark.slow
def test_run_cli_with_a_wrong_key_names_the_credentials(fake_kaggle, credentials):
    write_credentials(credentials, key="wrong0key0wrong0key")
    with pytest.raises(KitError, match="401.*kaggle.json"):
        kernels.push(KERNEL)
    assert [request.authorized for request in fake_kaggle.requests] == [False]


COMMANDS = {
    "push": lambda csv: kernels.push(KERNEL),
    "status": lambda csv: kernels.kernel_status(KERNEL),
    "output": lambda csv: kernels.download_output(KERNEL),
    "submit": lambda csv: competition.submit(csv, "a failing submission"),
}
EXPECTED = {401: "401", 403: "403", 404: "404", 409: "409", 429: "429", 500: "5xx", 503: "5xx"}
# Every command meets the failures whose explanation depends on the command; the generic ones rotate.
FAILURE_CASES = [(status, list(COMMANDS)) for status in (401, 403, 404, 503)] + [
    (409, ["push", "status"]), (429, ["output", "submit"]), (500, ["push", "submit"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("status, names", FAILURE_CASES)
def test_run_cli_failures_are_one_line_and_write_nothing(fake_kaggle, kit_dirs, competition_csv, status, names):
    fake_kaggle.fail("*", status)
    for name in names:
        with pytest.raises(KitError) as raised:
            COMMANDS[name](competition_csv)
        message = str(raised.value)
        assert EXPECTED[status] in message, (name, message)
        assert "\n" not in message and FAKE_KEY not in message
    bundles, outputs = kit_dirs
    assert not (outputs / KERNEL).exists()
    assert leftovers(outputs) == [] and leftovers(bundles) == []
    assert not (competition_csv.parent / paths.KAGGLE_SUBMISSIONS_LOG_NAME).exists()


@pytest.mark.parametrize("output, expected", [
    ("401 Client Error: Unauthorized for url", "the credentials were rejected (401 Unauthorized"),
    ("Could not submit to competition", "the upload of the file failed (upload); check the network and retry."),
    ("503 Server Error: Service unavailable", "Kaggle's servers failed (5xx"),
])
def test_describe_failure_names_the_cause_and_the_fix(credentials, output, expected):
    line = command.describe_failure(output, "do a thing")
    assert line.startswith("Kaggle could not do a thing: ") and expected in line
    assert "\n" not in line
