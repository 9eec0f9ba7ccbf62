"""The git identity of a build and the digest of its source tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.release.source import describe_source, tree_digest


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh git repository on branch main with one commit."""
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "app.py").write_text("print('hi')\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "one")
    return tmp_path


def test_clean_checkout_is_described(repo: Path) -> None:
    """A clean checkout reports HEAD's sha, not dirty, and the commit time in UTC."""
    info = describe_source(repo, "main")
    assert info.git_sha == git(repo, "rev-parse", "HEAD")
    assert not info.dirty
    assert info.commit_time.endswith("+00:00")


def test_dirty_tree_changes_digest(repo: Path) -> None:
    """An uncommitted edit changes the tree digest and marks the source dirty."""
    before = tree_digest(repo)
    (repo / "app.py").write_text("print('changed')\n")
    assert tree_digest(repo) != before
    assert describe_source(repo).dirty


def test_tool_outputs_do_not_change_digest(repo: Path) -> None:
    """Reports and coverage data written by tools do not change the tree digest."""
    before = tree_digest(repo)
    (repo / ".reports").mkdir()
    (repo / ".reports" / "coverage.json").write_text("{}")
    (repo / ".coverage").write_text("x")
    assert tree_digest(repo) == before


@pytest.mark.parametrize(
    ("name", "ref", "message"),
    [
        ("shell metacharacters", "main;reboot", "invalid git ref"),
        ("unknown ref", "no-such-branch", "does not name a commit"),
    ],
)
def test_bad_refs(repo: Path, name: str, ref: str, message: str) -> None:
    """An unsafe ref or one that names no commit is a ConfigError saying which."""
    with pytest.raises(ConfigError, match=message):
        describe_source(repo, ref)


def test_ref_other_than_checkout_is_refused(repo: Path) -> None:
    """A ref naming a commit other than the checked-out one is refused: check it out first."""
    first = git(repo, "rev-parse", "HEAD")
    (repo / "b.py").write_text("x = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "two")
    with pytest.raises(ConfigError, match="check the ref out first"):
        describe_source(repo, first)


def test_not_a_repository(tmp_path: Path) -> None:
    """A directory outside any git repository is a ConfigError saying so."""
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigError, match="not inside a git repository"):
        describe_source(plain, None)


def test_outputs_of_an_earlier_build_do_not_make_the_tree_dirty(repo: Path) -> None:
    """A worktree a build ran in before (reports, coverage, caches, untracked and unignored) is still the commit:
    the source cache reuses one per commit, and the release policy refuses dirty builds."""
    (repo / ".reports").mkdir()
    (repo / ".reports" / "coverage.json").write_text("{}")
    (repo / ".coverage").write_text("x")
    (repo / "pkg" / "__pycache__").mkdir(parents=True)
    (repo / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    assert not describe_source(repo).dirty
    (repo / "new.py").write_text("x = 1\n")
    assert describe_source(repo).dirty
