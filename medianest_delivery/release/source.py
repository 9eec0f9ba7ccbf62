"""Source trees: git identity of a build and content digests for cache keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from medianest_delivery.errors import ConfigError
from medianest_delivery.proc import run_command
from medianest_delivery.release.refs import require_git_ref

# Outputs of the quality gate and tool caches must not change the digest.
_SKIP_DIRS = {".git", "__pycache__", ".reports", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".venv"}
_SKIP_FILES = {".coverage", ".git"}  # .git: a worktree's pointer to its repository


@dataclass(frozen=True)
class SourceInfo:
    root: str
    git_sha: str
    commit_time: str
    ref: str | None
    dirty: bool
    tree_digest: str
    # The ref as git names it in full (refs/heads/main, refs/tags/v1.0.0), HEAD when detached or a bare SHA.
    built_ref: str = "HEAD"


def tree_digest(path: Path) -> str:
    """sha256 over relative paths, modes and contents of every file under ``path``."""
    digest = hashlib.sha256()
    for directory, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if name in _SKIP_FILES or name.endswith(".pyc"):
                continue
            file_path = Path(directory) / name
            rel = file_path.relative_to(path).as_posix()
            digest.update(rel.encode() + b"\0")
            digest.update(oct(file_path.stat().st_mode & 0o111).encode() + b"\0")
            digest.update(hashlib.sha256(file_path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def describe_source(root: Path, ref: str | None = None) -> SourceInfo:
    """Git SHA, commit time and dirtiness of the repository holding ``root``.

    With ``ref`` the ref must resolve to a commit; the working tree is what gets
    built, so a ref other than HEAD's commit is refused rather than mislabelled.
    """
    if ref is not None:
        require_git_ref(ref)
    git = ["git", "-C", str(root)]
    probe = run_command([*git, "rev-parse", "--show-toplevel"], check=False)
    if probe.returncode != 0:
        raise ConfigError(f"{root} is not inside a git repository: the release needs a commit to record")
    head = run_command([*git, "rev-parse", "--verify", "HEAD^{commit}"], check=False)
    if head.returncode != 0:
        raise ConfigError(f"the git repository at {root} has no commit yet")
    sha = head.stdout.strip()
    if ref is not None:
        wanted = run_command([*git, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"], check=False)
        if wanted.returncode != 0:
            raise ConfigError(f"git ref {ref!r} does not name a commit in {root}")
        if wanted.stdout.strip() != sha:
            raise ConfigError(
                f"git ref {ref!r} is {wanted.stdout.strip()[:12]} but the checkout is at {sha[:12]}: "
                "check the ref out first (CI does) so that what is built is what is recorded"
            )
    epoch = run_command([*git, "show", "-s", "--format=%ct", sha]).stdout.strip()
    commit_time = dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC).isoformat()
    # The ref was checked by require_git_ref (no leading '-'); rev-parse would echo --end-of-options.
    named = run_command([*git, "rev-parse", "--symbolic-full-name", ref or "HEAD"], check=False)
    built_ref = named.stdout.strip() if named.returncode == 0 and named.stdout.strip() else "HEAD"
    # The gate's outputs and tool caches are not source (tree_digest skips them too): a tree a build ran in
    # before (the source cache reuses one per commit) is still the commit alone.
    outputs = [f":(exclude,glob)**/{name}/**" for name in sorted(_SKIP_DIRS)]
    outputs += [f":(exclude,glob)**/{name}" for name in sorted(_SKIP_FILES)]
    status = run_command([*git, "status", "--porcelain", "--", ".", *outputs], cwd=root)
    return SourceInfo(
        root=str(root),
        git_sha=sha,
        commit_time=commit_time,
        ref=ref,
        dirty=bool(status.stdout.strip()),
        tree_digest=tree_digest(root),
        built_ref=built_ref,
    )
