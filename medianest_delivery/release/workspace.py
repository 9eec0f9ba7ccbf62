"""The worker's source cache: one bare mirror per repository, one clean worktree per commit (git CLI).

A build names a repository (a URL or a local path) and a ref (a branch, a tag,
a full ref or a commit SHA). The ref is resolved against a fresh fetch of the
mirror, so a force-pushed branch builds its new head, and the commit is
checked out, detached, into ``trees/<repository>/<sha>``: the same commit
always builds in the same directory (stable cache keys), two commits build
side by side, and nothing needs a checkout of the project on the worker.

Fetches and worktree changes of one repository are serialised by a file lock,
so concurrent flow runs on one worker (threads or processes) never corrupt a
mirror. Git never runs a hook or a credential prompt here: hooks are pointed at
an empty directory and ``GIT_TERMINAL_PROMPT=0``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from medianest_delivery.errors import ConfigError, SourceFetchError
from medianest_delivery.proc import run_command
from medianest_delivery.release.refs import require_git_ref

_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_SHORT_SHA = re.compile(r"^[0-9a-f]{7,39}$")
_SCHEMES = {"file", "git", "http", "https", "ssh"}
# scp-like ssh addresses: git@host:owner/repo.git
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._/~-]+$")


@dataclass(frozen=True)
class Checkout:
    """A commit of a repository, checked out clean on the worker."""

    repository: str  # as given: what the release records
    ref: str  # as asked
    full_ref: str  # refs/heads/<b>, refs/tags/<t>, or the SHA itself when asked by commit
    sha: str
    root: Path  # the worktree


def require_repository(repository: str) -> str:
    """A repository is a file://, git://, http(s)://, ssh:// URL, an scp-like ssh address or an absolute path."""
    if not repository or repository != repository.strip() or any(ord(ch) < 32 for ch in repository):
        raise ConfigError(f"repository {repository!r} is empty or holds whitespace or control characters")
    if repository.startswith("-"):
        raise ConfigError(f"repository {repository!r} starts with '-': git would read it as an option")
    if _SCP_LIKE.match(repository) or Path(repository).is_absolute():
        return repository
    parsed = urlparse(repository)
    if "@" in parsed.netloc and (parsed.scheme != "ssh" or parsed.password is not None):
        raise ConfigError(
            "repository URL holds credentials: they would be recorded in the release, its provenance and "
            "the UI; give git its credentials through a credential helper or the environment instead"
        )
    scheme = parsed.scheme
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"repository {repository!r} is not a git URL ({', '.join(sorted(_SCHEMES))}) nor an absolute path"
        )
    return repository


def normalise_repository(repository: str) -> str:
    """The repository as recorded and matched by release policies: no trailing slash, no ``.git`` suffix.

    ``https://github.com/o/r.git`` (a clone URL) and ``https://github.com/o/r`` are one repository.
    """
    return require_repository(repository).rstrip("/").removesuffix(".git")


def config_path_in_repository(app_config: str | None) -> str:
    """Where delivery.yaml sits in a fetched repository: a relative path inside it (default ``delivery.yaml``)."""
    if app_config is None:
        return "delivery.yaml"
    path = PurePosixPath(app_config)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ConfigError(
            f"app_config {app_config!r}: with a repository it is the path of delivery.yaml inside the "
            "repository, relative and without '..'"
        )
    return str(path)


def repository_key(repository: str) -> str:
    """A directory name for the repository: readable tail plus a digest of the whole (normalised) URL."""
    repository = repository.rstrip("/").removesuffix(".git")
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", repository.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    return f"{tail[:40] or 'repo'}-{hashlib.sha256(repository.encode()).hexdigest()[:12]}"


def _git_env() -> dict[str, str]:
    # No prompt (a CI run would hang): none for passwords, none from ssh. The user's git config stays, so
    # credential helpers, proxies and CA settings work; hooks and fsmonitor are turned off per call (GIT_ARGS).
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}


class SourceWorkspace:
    """Mirrors and worktrees under ``root`` (by default ``<state>/sources``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mirrors = root / "mirrors"
        self.trees = root / "trees"
        self._no_hooks = root / "no-hooks"

    def mirror_path(self, repository: str) -> Path:
        return self.mirrors / f"{repository_key(repository)}.git"

    def tree_path(self, repository: str, sha: str) -> Path:
        return self.trees / repository_key(repository) / sha

    def _git_argv(self, *args: str) -> list[str]:
        """git with no hook and no fsmonitor whatever the repository or the user's config says."""
        return ["git", "-c", f"core.hooksPath={self._no_hooks}", "-c", "core.fsmonitor=false", *args]

    def _git(self, mirror: Path, *args: str, check: bool = True) -> str:
        result = run_command(self._git_argv(f"--git-dir={mirror}", *args), check=False, env=_git_env())
        if check and result.returncode != 0:
            raise ConfigError(
                f"git {args[0]} failed in {mirror.name}: {(result.stderr or result.stdout).strip()[-400:]}"
            )
        return str(result.stdout)

    @contextlib.contextmanager
    def _locked(self, repository: str) -> Iterator[None]:
        self.mirrors.mkdir(parents=True, exist_ok=True)
        with (self.mirrors / f"{repository_key(repository)}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def fetch(self, repository: str) -> Path:
        """Create or update the repository's bare mirror (every ref, forced, pruned); its path."""
        require_repository(repository)
        mirror = self.mirror_path(repository)
        self._no_hooks.mkdir(parents=True, exist_ok=True)
        with self._locked(repository):
            self._fetch_locked(repository, mirror)
        return mirror

    def _fetch_locked(self, repository: str, mirror: Path) -> None:
        if not (mirror / "HEAD").is_file():
            shutil.rmtree(mirror, ignore_errors=True)  # a clone that died half-way
            partial = mirror.with_suffix(".partial")
            shutil.rmtree(partial, ignore_errors=True)
            argv = self._git_argv("clone", "--mirror", "--quiet", "--", repository, str(partial))
            result = run_command(argv, check=False, env=_git_env())
            if result.returncode != 0:
                raise SourceFetchError(f"cannot fetch {repository}: {(result.stderr or result.stdout).strip()[-400:]}")
            partial.rename(mirror)
            return
        result = run_command(
            self._git_argv(f"--git-dir={mirror}", "fetch", "--quiet", "--prune", "--force", "origin"),
            check=False,
            env=_git_env(),
        )
        if result.returncode != 0:
            raise SourceFetchError(f"cannot fetch {repository}: {(result.stderr or result.stdout).strip()[-400:]}")

    def resolve(self, repository: str, ref: str) -> tuple[str, str]:
        """(commit SHA, full ref) of ``ref`` in the mirror: a branch, a tag, a full ref, HEAD or a commit."""
        mirror = self.mirror_path(repository)
        if ref != "HEAD":
            require_git_ref(ref)
        if _FULL_SHA.match(ref) or _SHORT_SHA.match(ref):
            sha = self._commit(mirror, ref)
            if sha is not None:
                return sha, sha
        candidates = [ref] if ref.startswith("refs/") or ref == "HEAD" else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
        for name in candidates:
            sha = self._commit(mirror, name)
            if sha is not None:
                full = (
                    self._git(mirror, "symbolic-ref", "--quiet", "HEAD", check=False).strip()
                    if name == "HEAD"
                    else name
                )
                return sha, full or name
        branches = self._git(mirror, "for-each-ref", "--format=%(refname:short)", "--count=10", "refs/heads/").split()
        raise ConfigError(
            f"{ref!r} is not a branch, tag or commit of {repository}"
            + (f" (branches: {', '.join(branches)})" if branches else " (it has no branch)")
        )

    def ref_containing(self, repository: str, sha: str, ref: str) -> str:
        """``ref``'s full name, once ``sha`` is proven to be on it (its head, or an ancestor of its head).

        CI builds the commit it was triggered by (a SHA) and names the branch or tag beside it: the release
        records that ref, so a policy's ``allowed_refs`` can hold for CI builds, and never one the commit is
        not on. The mirror must have been fetched (a checkout of ``sha`` did that).
        """
        mirror = self.fetch(repository)  # the branch as it is now, not as an earlier fetch left it
        head, full_ref = self.resolve(repository, ref)
        if not full_ref.startswith("refs/"):
            raise ConfigError(f"{ref!r} is a commit, not a branch or tag of {repository}")
        if full_ref.startswith("refs/tags/") and head != sha:
            # A tag names one commit: an ancestor of it is not that release.
            raise ConfigError(f"commit {sha[:12]} is not {full_ref} of {repository} (the tag is {head[:12]})")
        on_it = run_command(
            self._git_argv(f"--git-dir={mirror}", "merge-base", "--is-ancestor", sha, head),
            check=False,
            env=_git_env(),
        )
        if on_it.returncode != 0:
            raise ConfigError(f"commit {sha[:12]} is not on {full_ref} of {repository} (its head is {head[:12]})")
        return full_ref

    def _commit(self, mirror: Path, name: str) -> str | None:
        out = self._git(
            mirror, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}", check=False
        )
        return out.strip() or None

    def checkout(self, repository: str, ref: str | None = None) -> Checkout:
        """Fetch, resolve ``ref`` (default: the repository's HEAD) and give its commit a clean worktree."""
        ref = ref or "HEAD"
        mirror = self.mirror_path(repository)
        # A commit is immutable: one the mirror already has needs no fetch (a rollback works with the host down).
        if not (_FULL_SHA.match(ref) and (mirror / "HEAD").is_file() and self._commit(mirror, ref)):
            self.fetch(repository)
        sha, full_ref = self.resolve(repository, ref)
        tree = self.tree_path(repository, sha)
        with self._locked(repository):
            if not self._clean_at(tree, sha):
                self._git(mirror, "worktree", "prune")
                if tree.exists():
                    self._git(mirror, "worktree", "remove", "--force", str(tree), check=False)
                    shutil.rmtree(tree, ignore_errors=True)
                tree.parent.mkdir(parents=True, exist_ok=True)
                self._git(mirror, "worktree", "add", "--detach", "--force", "--quiet", str(tree), sha)
        return Checkout(normalise_repository(repository), ref, full_ref, sha, tree)

    def _clean_at(self, tree: Path, sha: str) -> bool:
        """Whether ``tree`` is a worktree at ``sha`` with no change to tracked files (outputs may stay)."""
        if not (tree / ".git").exists():
            return False
        head = run_command(self._git_argv("-C", str(tree), "rev-parse", "HEAD"), check=False, env=_git_env())
        if head.returncode != 0 or head.stdout.strip() != sha:
            return False
        # Tracked files only: a build's outputs (.reports, caches) are not the source, and another run of the
        # same commit may be reading them right now.
        argv = self._git_argv("-C", str(tree), "status", "--porcelain", "--untracked-files=no")
        status = run_command(argv, check=False, env=_git_env())
        return status.returncode == 0 and not status.stdout.strip()
