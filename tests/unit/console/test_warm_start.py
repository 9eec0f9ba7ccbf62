"""When a warm spare may run a flow run as a cold engine would, and when it must refuse."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from medianest_delivery.console.warm_start import api_target, code_fingerprint, refusal

API = ("http://127.0.0.1:4200/api", "user:pw", "")


def test_the_same_code_and_api_is_served_warm() -> None:
    assert refusal("abc", "abc", API, API) == ""


def test_changed_source_files_are_refused() -> None:
    assert refusal("abc", "abd", API, API) == "the source files changed since the spare imported them"


def test_another_api_or_other_credentials_are_refused_without_showing_them() -> None:
    other_url = ("http://127.0.0.1:4300/api", "user:pw", "")
    assert "http://127.0.0.1:4300/api" in refusal("a", "a", API, other_url)
    reason = refusal("a", "a", API, ("http://127.0.0.1:4200/api", "user:other", ""))
    assert reason == "the run's Prefect API credentials differ from the spare's"
    assert "other" not in reason.replace("differ from", "")


def test_the_fingerprint_sees_a_touched_file(tmp_path: Path) -> None:
    for package in ("flows", "tasks", "blocks", "medianest_delivery"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    before = code_fingerprint(tmp_path)
    assert code_fingerprint(tmp_path) == before
    stat = (tmp_path / "flows" / "__init__.py").stat()
    os.utime(tmp_path / "flows" / "__init__.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert code_fingerprint(tmp_path) != before
    (tmp_path / "tasks" / "new.py").write_text("x = 1\n")
    assert len({before, code_fingerprint(tmp_path)}) == 2


class _Api:
    def __init__(self, url: str | None, auth: str | None, key: str | None) -> None:
        self.url = url
        self.auth_string = SecretStr(auth) if auth else None
        self.key = SecretStr(key) if key else None


class _Settings:
    def __init__(self, api: _Api) -> None:
        self.api = api


def test_api_target_reads_url_and_either_credential() -> None:
    assert api_target(_Settings(_Api("http://x/api", "u:p", None))) == ("http://x/api", "u:p", "")
    assert api_target(_Settings(_Api(None, None, "pnu_key"))) == ("", "", "pnu_key")
