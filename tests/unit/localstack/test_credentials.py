"""The stack's service credentials: made once, 0600, never overwritten, sent only to the stack's own services."""

from __future__ import annotations

import stat
from pathlib import Path

import bcrypt
import pytest

from blocks.registry import OciRegistry
from medianest_delivery.localstack.credentials import ensure_credentials, htpasswd_line, htpasswd_matches
from medianest_delivery.localstack.prefect_api import prefect_client_env
from medianest_delivery.localstack.stack import export_environment, shell_exports
from medianest_delivery.settings import StackSettings


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StackSettings:
    monkeypatch.setenv("MEDIANEST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return StackSettings()


def test_credentials_are_made_once_private_and_never_overwritten(stack: StackSettings) -> None:
    """First use makes `user:password` in a 0600 file in a 0700 directory; later uses read the same value."""
    first = ensure_credentials(stack.prefect_auth_file, "medianest")
    user, password = first.split(":", 1)
    assert user == "medianest"
    assert len(password) >= 32
    assert stat.S_IMODE(stack.prefect_auth_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(stack.prefect_auth_file.parent.stat().st_mode) == 0o700
    assert ensure_credentials(stack.prefect_auth_file, "someone-else") == first
    assert stack.prefect_auth_string() == first


def test_a_credentials_file_without_a_user_is_an_error_not_replaced(stack: StackSettings) -> None:
    """A damaged file is reported with its path; it is not silently replaced (clients may hold the old value)."""
    stack.registry_credentials_file.parent.mkdir(parents=True)
    stack.registry_credentials_file.write_text("no-colon-here\n")
    with pytest.raises(ValueError, match="registry-credentials holds no `user:password`"):
        ensure_credentials(stack.registry_credentials_file, "medianest-ci")
    assert stack.registry_credentials_file.read_text() == "no-colon-here\n"
    assert stack.registry_credentials() is None


def test_an_empty_credentials_file_is_named_not_a_recursion(stack: StackSettings) -> None:
    """Regression (review): a zero-length file (a crash between create and write) made `stack up` recurse
    forever. The file is now linked into place whole, and an empty one is an error naming it."""
    stack.prefect_auth_file.parent.mkdir(parents=True)
    stack.prefect_auth_file.write_text("")
    with pytest.raises(ValueError, match="prefect-api-auth holds no `user:password`"):
        ensure_credentials(stack.prefect_auth_file, "medianest")
    assert list(stack.prefect_auth_file.parent.iterdir()) == [stack.prefect_auth_file]  # no temp file left


def test_htpasswd_entries_are_bcrypt_and_checked() -> None:
    """The registry accepts only bcrypt; an unchanged password is recognised, a changed one is not."""
    line = htpasswd_line("medianest-ci", "s3cret")
    assert line.startswith("medianest-ci:$2b$04$")  # the registry checks it on every request: cheap
    assert line.endswith("\n")
    assert htpasswd_matches(line, "medianest-ci", "s3cret")
    assert not htpasswd_matches(line, "medianest-ci", "other")
    assert not htpasswd_matches(line, "someone", "s3cret")
    assert not htpasswd_matches("medianest-ci:not-a-hash", "medianest-ci", "s3cret")
    costly = "medianest-ci:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=10)).decode()
    assert not htpasswd_matches(costly, "medianest-ci", "s3cret")  # rewritten at the cheaper cost
    with pytest.raises(ValueError, match="without ':'"):
        htpasswd_line("a:b", "x")


def test_prefect_credentials_go_only_to_the_stacks_own_server(
    stack: StackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Children of ours get the auth string for the stack's server; never for another PREFECT_API_URL."""
    assert prefect_client_env(stack) == {"PREFECT_API_URL": "http://127.0.0.1:4200/api"}  # no stack yet
    auth = ensure_credentials(stack.prefect_auth_file, "medianest")
    assert prefect_client_env(stack) == {
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        "PREFECT_API_AUTH_STRING": auth,
    }
    monkeypatch.setenv("PREFECT_API_URL", "https://prefect.example.com/api")
    assert prefect_client_env(StackSettings()) == {"PREFECT_API_URL": "https://prefect.example.com/api"}


def test_shell_exports_never_print_the_secret(stack: StackSettings) -> None:
    """`stack up` and `stack env` print a command that reads the 0600 file, not the password itself."""
    auth = ensure_credentials(stack.prefect_auth_file, "medianest")
    assert export_environment(stack)["PREFECT_API_AUTH_STRING"] == auth
    lines = shell_exports(stack)
    assert not any(auth.split(":", 1)[1] in line for line in lines)
    assert f'export PREFECT_API_AUTH_STRING="$(cat {stack.prefect_auth_file})"' in lines


def test_the_registry_block_uses_the_stacks_credentials_only_for_the_stacks_registry(stack: StackSettings) -> None:
    """No copy is stored in the block; explicit credentials win; another host never gets the stack's."""
    assert OciRegistry(host=stack.registry_host).credentials() is None  # before `stack up` made them
    user, password = ensure_credentials(stack.registry_credentials_file, "medianest-ci").split(":", 1)
    local = OciRegistry(host=stack.registry_host)
    assert local.credentials() == (user, password)
    assert local.password is None  # nothing to save into a block document
    assert local.docker_auth() == {"username": user, "password": password}
    assert local.trivy_env() == {"TRIVY_USERNAME": user, "TRIVY_PASSWORD": password}
    assert OciRegistry(host="ghcr.io").credentials() is None
    assert OciRegistry(host="ghcr.io").trivy_env() == {}
    assert OciRegistry(host=stack.registry_host, username="ci", password="pw").credentials() == ("ci", "pw")
