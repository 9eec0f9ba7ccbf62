"""The worker's source cache: real git repositories served over file://, a path and `git daemon` on 127.0.0.1."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from medianest_delivery.errors import ConfigError, SourceFetchError
from medianest_delivery.release.workspace import SourceWorkspace, require_repository
from tests.helpers import git_daemon


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def commit(work: Path, name: str, text: str, message: str) -> str:
    (work / name).write_text(text)
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", message)
    return git(work, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, Path]:
    """(bare origin, a clone to push from): main with two commits, tag v1 on the first, branch feature."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    git(work, "config", "user.email", "t@example.com")
    git(work, "config", "user.name", "t")
    git(work, "checkout", "-q", "-b", "main")
    commit(work, "app.txt", "one\n", "one")
    git(work, "tag", "v1")
    commit(work, "app.txt", "two\n", "two")
    git(work, "checkout", "-q", "-b", "feature")
    commit(work, "feature.txt", "f\n", "feature")
    git(work, "checkout", "-q", "main")
    git(work, "push", "-q", "origin", "main", "feature", "v1")
    return bare, work


def test_branch_tag_sha_and_head_resolve_to_their_commits(tmp_path: Path, origin: tuple[Path, Path]) -> None:
    """A branch, a tag, a full and a short SHA and HEAD each resolve to their commit and a clean worktree of it."""
    bare, work = origin
    url = f"file://{bare}"
    cache = SourceWorkspace(tmp_path / "cache")
    main = cache.checkout(url, "main")
    assert (main.sha, main.full_ref) == (git(work, "rev-parse", "main"), "refs/heads/main")
    assert (main.root / "app.txt").read_text() == "two\n"
    tag = cache.checkout(url, "v1")
    assert (tag.sha, tag.full_ref) == (git(work, "rev-parse", "v1^{commit}"), "refs/tags/v1")
    assert (tag.root / "app.txt").read_text() == "one\n"
    feature_sha = git(work, "rev-parse", "feature")
    by_sha = cache.checkout(url, feature_sha)
    assert (by_sha.sha, by_sha.full_ref) == (feature_sha, feature_sha)
    assert cache.checkout(url, feature_sha[:10]).sha == feature_sha
    head = cache.checkout(url)
    assert (head.sha, head.full_ref) == (main.sha, "refs/heads/main")
    assert main.root != tag.root
    assert main.root == cache.tree_path(url, main.sha)  # same commit, same directory: stable cache keys


def test_a_force_pushed_branch_builds_its_new_head(tmp_path: Path, origin: tuple[Path, Path]) -> None:
    """After a force push the branch resolves to the new commit, not the one the mirror saw before."""
    bare, work = origin
    cache = SourceWorkspace(tmp_path / "cache")
    before = cache.checkout(str(bare), "feature")
    git(work, "checkout", "-q", "feature")
    git(work, "reset", "-q", "--hard", "main")
    rewritten = commit(work, "feature.txt", "rewritten\n", "rewritten")
    git(work, "push", "-q", "--force", "origin", "feature")
    after = cache.checkout(str(bare), "feature")
    assert after.sha == rewritten != before.sha
    assert (after.root / "feature.txt").read_text() == "rewritten\n"


def test_missing_branch_or_commit_is_a_named_error(tmp_path: Path, origin: tuple[Path, Path]) -> None:
    """A ref that names nothing fails with the repository and its branches; a missing repository is named."""
    bare, _ = origin
    cache = SourceWorkspace(tmp_path / "cache")
    with pytest.raises(
        ConfigError, match=r"'no-such-branch' is not a branch, tag or commit of .*branches: feature, main"
    ):
        cache.checkout(f"file://{bare}", "no-such-branch")
    with pytest.raises(ConfigError, match="is not a branch, tag or commit"):
        cache.checkout(f"file://{bare}", "0" * 40)
    with pytest.raises(SourceFetchError, match="cannot fetch"):
        cache.checkout(f"file://{tmp_path}/missing.git", "main")
    with pytest.raises(ConfigError, match="invalid git ref"):
        cache.checkout(f"file://{bare}", "main;rm -rf /")


@pytest.mark.parametrize(
    "repository",
    ["", "-uhello", "relative/path", "ftp://example.com/x.git", "file:///x\n.git", " https://x/y.git"],
)
def test_repositories_that_are_not_git_urls_are_refused(repository: str) -> None:
    """Only git URLs, scp-like ssh addresses and absolute paths are repositories; an option-looking one never."""
    with pytest.raises(ConfigError, match="repository"):
        require_repository(repository)


def test_two_commits_check_out_concurrently_side_by_side(tmp_path: Path, origin: tuple[Path, Path]) -> None:
    """Two flow runs on one worker fetch and check out different commits at once: each gets its own tree."""
    bare, _ = origin
    cache = SourceWorkspace(tmp_path / "cache")
    refs = ["main", "v1", "feature", "main", "v1", "feature"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        checkouts = list(pool.map(lambda ref: cache.checkout(str(bare), ref), refs))
    assert len({c.root for c in checkouts}) == 3
    for c in checkouts:
        assert git(c.root, "rev-parse", "HEAD") == c.sha
        assert git(c.root, "status", "--porcelain") == ""


def test_a_tree_someone_edited_is_checked_out_again_clean(tmp_path: Path, origin: tuple[Path, Path]) -> None:
    """A worktree whose tracked files changed (a build that wrote into its source) is recreated from the commit."""
    bare, _ = origin
    cache = SourceWorkspace(tmp_path / "cache")
    first = cache.checkout(str(bare), "main")
    (first.root / "app.txt").write_text("tampered\n")
    (first.root / "stray.txt").write_text("x\n")
    again = cache.checkout(str(bare), "main")
    assert again.root == first.root
    assert (again.root / "app.txt").read_text() == "two\n"
    assert not (again.root / "stray.txt").exists()


@pytest.fixture
def served(origin: tuple[Path, Path]) -> Iterator[str]:
    """The origin over `git daemon` on 127.0.0.1 (the real git protocol): its URL."""
    bare, _ = origin
    with git_daemon(bare.parent) as base:
        yield f"{base}/{bare.name}"


def test_a_repository_served_by_git_daemon_is_fetched_over_the_git_protocol(
    tmp_path: Path, origin: tuple[Path, Path], served: str
) -> None:
    """git:// on loopback: the mirror is cloned and updated over the network protocol, not the file system."""
    _, work = origin
    cache = SourceWorkspace(tmp_path / "cache")
    checkout = cache.checkout(served, "feature")
    assert checkout.sha == git(work, "rev-parse", "feature")
    assert (checkout.root / "feature.txt").is_file()
    assert git(cache.mirror_path(served), "config", "remote.origin.url") == served


@pytest.mark.parametrize(
    "repository",
    ["https://token@github.com/o/r.git", "https://user:@github.com/o/r", "git://u:p@127.0.0.1/r.git"],
)
def test_credentials_in_a_repository_url_are_refused(repository: str) -> None:
    """A token as user name, or an empty password, would be recorded in the release: refused, naming why."""
    with pytest.raises(ConfigError, match="holds credentials"):
        require_repository(repository)


def test_ssh_addresses_keep_their_user_and_clone_urls_are_one_repository() -> None:
    """ssh users are not secrets; a clone URL (.git) and the web URL record as one repository."""
    from medianest_delivery.release.workspace import normalise_repository

    assert require_repository("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert require_repository("ssh://git@github.com/o/r.git") == "ssh://git@github.com/o/r.git"
    assert normalise_repository("https://github.com/o/r.git") == normalise_repository("https://github.com/o/r/")


def test_a_commit_already_mirrored_checks_out_with_the_origin_gone(tmp_path: Path, origin: tuple[Path, Path]) -> None:
    """A rollback to a commit built before needs no fetch: it works while the repository host is down."""
    import shutil

    bare, _ = origin
    cache = SourceWorkspace(tmp_path / "cache")
    sha = cache.checkout(str(bare), "v1").sha
    shutil.rmtree(bare)
    assert cache.checkout(str(bare), sha).sha == sha
    with pytest.raises(SourceFetchError):
        cache.checkout(str(bare), "main")  # a branch must be fetched: its head may have moved


def test_ci_names_the_branch_beside_the_sha_and_it_is_recorded_only_when_the_commit_is_on_it(
    tmp_path: Path, origin: tuple[Path, Path]
) -> None:
    """CI builds `github.sha` and names `github.ref`: the ref is recorded once the commit is proven to be on it."""
    bare, work = origin
    url = f"file://{bare}"
    cache = SourceWorkspace(tmp_path / "cache")
    head = cache.checkout(url, git(work, "rev-parse", "main"))
    assert head.full_ref == head.sha  # asked by commit: the checkout alone knows no branch
    assert cache.ref_containing(url, head.sha, "refs/heads/main") == "refs/heads/main"
    older = git(work, "rev-parse", "main~1")  # main moved on since CI was triggered: still on main
    assert cache.ref_containing(url, older, "main") == "refs/heads/main"
    feature = git(work, "rev-parse", "feature")
    with pytest.raises(ConfigError, match=f"commit {feature[:12]} is not on refs/heads/main of {url}"):
        cache.ref_containing(url, feature, "refs/heads/main")
    tagged = git(work, "rev-parse", "v1^{commit}")
    assert cache.ref_containing(url, tagged, "v1") == "refs/tags/v1"
    git(work, "tag", "v2", "main")
    git(work, "push", "-q", "origin", "v2")
    with pytest.raises(ConfigError, match=f"commit {older[:12]} is not refs/tags/v2"):
        cache.ref_containing(url, older, "v2")  # an ancestor of a tag is not that release
    with pytest.raises(ConfigError, match="is a commit, not a branch or tag"):
        cache.ref_containing(url, older, head.sha)
    with pytest.raises(ConfigError, match="is not a branch, tag or commit"):
        cache.ref_containing(url, older, "refs/heads/no-such-branch")
