"""src.kaggle.credentials: where the kaggle CLI finds kaggle.json, the user's name, and keeping keys out of output."""

import pytest

from kaggle_fixtures import FAKE_KEY, FAKE_USERNAME, KERNEL
from src.errors import KitError
from src.kaggle import bundle
from src.kaggle import credentials as kaggle_credentials  # `credentials` is the fixture

pytest_plugins = ["kaggle_fixtures"]


def test_config_dir_follows_the_kaggle_cli(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "config"))
    assert kaggle_credentials.credentials_file() == tmp_path / "config" / "kaggle.json"

    monkeypatch.delenv("KAGGLE_CONFIG_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert kaggle_credentials.config_dir() == tmp_path / "xdg" / "kaggle"  # on Linux, while ~/.kaggle is absent
    (tmp_path / "home" / ".kaggle").mkdir(parents=True)
    assert kaggle_credentials.config_dir() == tmp_path / "home" / ".kaggle"


def test_kaggle_username_prefers_the_environment(credentials, monkeypatch):
    assert kaggle_credentials.has_credentials()
    assert kaggle_credentials.kaggle_username() == FAKE_USERNAME
    monkeypatch.setenv("KAGGLE_USERNAME", "  someone-else ")
    assert kaggle_credentials.kaggle_username() == "someone-else"


def test_kaggle_username_without_one_names_both_places():
    assert not kaggle_credentials.has_credentials()
    with pytest.raises(KitError, match="no KAGGLE_USERNAME and no 'username' in .*kaggle.json"):
        kaggle_credentials.kaggle_username()


def test_redact_hides_every_key_the_kit_knows(credentials, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "another0secret0key")
    text = kaggle_credentials.redact(f"key {FAKE_KEY}, env key another0secret0key, user {FAKE_USERNAME}")
    assert text == f"key ***, env key ***, user {FAKE_USERNAME}"


def test_warn_if_exposed_warns_once_on_a_readable_kaggle_json(credentials, caplog, tmp_path):
    assert not kaggle_credentials.warn_if_exposed()
    (credentials / "kaggle.json").chmod(0o644)

    bundle.bundle(KERNEL, build_dir=tmp_path / "build")
    assert kaggle_credentials.warn_if_exposed()
    warnings = [record.getMessage() for record in caplog.records if "open to other users" in record.getMessage()]
    assert len(warnings) == 1 and f"chmod 600 {credentials / 'kaggle.json'}" in warnings[0]
    assert FAKE_KEY not in caplog.text


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_warn_if_exposed_looks_at_the_access_token_too(credentials, caplog, mode):
    token = credentials / "access_token"
    token.write_text("kgat_0123456789abcdef0123\n")
    token.chmod(0o600)
    assert not kaggle_credentials.warn_if_exposed()
    token.chmod(mode)

    assert kaggle_credentials.warn_if_exposed()
    warnings = [record.getMessage() for record in caplog.records if "open to other users" in record.getMessage()]
    assert len(warnings) == 1 and f"{token} is open to other users (mode {mode:o}); run `chmod 600 {token}`" \
        in warnings[0]
    assert "kgat_0123456789abcdef0123" not in caplog.text
    assert kaggle_credentials.redact("token kgat_0123456789abcdef0123 here") == "token *** here"
