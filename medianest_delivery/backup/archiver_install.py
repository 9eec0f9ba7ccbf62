"""The WAL archiver as an installed tool: its own virtual environment the cluster user can run.

PostgreSQL runs `archive_command` and `restore_command` as its own OS user, which
may be unable to read this checkout (a 0700 home directory) or to execute this
project's interpreter (a pyenv build under /root). As pgBackRest and WAL-G ship a
binary, `install_archiver` builds a self-contained virtual environment from this
project's wheel, with the archiver's own dependencies pinned to the versions this
environment runs, on a Python the cluster user can execute; it proves the result
by running it as that user before anything writes it into `archive_command`.

Layout under the tools directory (all-or-nothing: an install counts only once its
`.installed` stamp exists, and a half-made one is removed and built again):

    walarchive-<fingerprint>/       one virtual environment per project source digest
    walarchive -> walarchive-<fp>   the stable path that archive/restore commands use
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from medianest_delivery.backup.pgcluster import cluster_user, run_as_cluster_user
from medianest_delivery.errors import CommandFailedError, ConfigError, StackError
from medianest_delivery.proc import run_command
from medianest_delivery.settings import PROJECT_ROOT

PACKAGE_DIR = PROJECT_ROOT / "medianest_delivery"
# What walarchive.py imports beyond the standard library (boto3 for S3 repositories).
ARCHIVER_REQUIREMENTS = ("cryptography", "zstandard", "boto3")
SCRIPT = "medianest-walarchive"
STABLE_NAME = "walarchive"
STAMP = ".installed"


@dataclass(frozen=True)
class ArchiverInstall:
    """One installed archiver: where it lives and which project sources it was built from."""

    root: Path
    fingerprint: str

    @property
    def script(self) -> Path:
        return self.root / "bin" / SCRIPT

    @property
    def complete(self) -> bool:
        return (self.root / STAMP).is_file()


def pinned_requirements(names: tuple[str, ...] = ARCHIVER_REQUIREMENTS) -> list[str]:
    """`name==version` for `names` and everything they need, as installed in this environment.

    Markers are evaluated for this interpreter without extras, so the list is what
    `pip install name` would have pulled here, at exactly the locked versions.
    """
    pinned: dict[str, str] = {}
    pending = list(names)
    while pending:
        name = _canonical(pending.pop())
        if name in pinned:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ConfigError(f"the WAL archiver needs {name}, which this environment lacks; run `uv sync`") from exc
        pinned[name] = dist.version
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return [f"{name}=={version}" for name, version in sorted(pinned.items())]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def source_fingerprint(requirements: list[str]) -> str:
    """Digest of what an install is made of: the package's sources, the build config, the pins."""
    digest = hashlib.sha256()
    files = [*sorted(PACKAGE_DIR.rglob("*.py")), PROJECT_ROOT / "pyproject.toml"]
    for path in files:
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update("\n".join(requirements).encode())
    return digest.hexdigest()[:16]


def cluster_python() -> str:
    """An interpreter of our Python version that the cluster user can execute.

    Ours first (it may live in an unreadable home directory), then the system's.
    """
    wanted = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
        shutil.which(f"python{wanted}") or "",
        f"/usr/bin/python{wanted}",
    ]
    tried: list[str] = []
    for python in dict.fromkeys(c for c in candidates if c):
        tried.append(python)
        try:
            probe = run_as_cluster_user(
                [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], timeout=60, check=False
            )
        except PermissionError:  # exec as that user refused: a directory on the way is closed to it
            continue
        if probe.returncode == 0 and probe.stdout.strip() == wanted:
            return python
    raise ConfigError(
        f"no Python {wanted} that the {cluster_user()} user can execute (tried {', '.join(tried)}); "
        f"install Debian's python{wanted} (make deps)"
    )


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


@contextlib.contextmanager
def _install_lock(tools_dir: Path) -> Iterator[None]:
    """One installer at a time per tools directory (two `stack up`s, or a flow and a test)."""
    with (tools_dir / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(install: ArchiverInstall, requirements: list[str]) -> None:
    if not (PROJECT_ROOT / "pyproject.toml").is_file():
        raise ConfigError(f"{PROJECT_ROOT} is not a source checkout of medianest-delivery: cannot build the archiver")
    shutil.rmtree(install.root, ignore_errors=True)  # a half-made install from a killed run
    uv = _uv()
    with tempfile.TemporaryDirectory(prefix="walarchive-wheel-") as wheels:
        run_command([uv, "build", "--wheel", "--quiet", "--out-dir", wheels, str(PROJECT_ROOT)], timeout=600)
        wheel = next(Path(wheels).glob("*.whl"))
        run_command([uv, "venv", "--quiet", "--python", cluster_python(), str(install.root)], timeout=300)
        run_command(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--python",
                str(install.root / "bin" / "python"),
                "--link-mode=copy",  # self-contained: nothing points back into our caches
                "--no-deps",
                str(wheel),
                *requirements,
            ],
            timeout=600,
        )
    _prove(install)
    (install.root / STAMP).write_text(install.fingerprint + "\n")


def _prove(install: ArchiverInstall) -> None:
    """Run the installed archiver as the cluster user: the only check that counts."""
    probe = run_as_cluster_user([str(install.script), "--help"], timeout=120, check=False)
    if probe.returncode != 0:
        raise StackError(
            f"the {cluster_user()} user cannot run the WAL archiver installed at {install.root} "
            f"(exit {probe.returncode}):\n{probe.stdout[-2000:]}"
        )


def _make_traversable(path: Path) -> None:
    """The cluster user must reach the tools directory from /."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)


def install_archiver(tools_dir: Path) -> Path:
    """Install (or reuse) the archiver for this project's sources; return the stable script path.

    The stable path `<tools_dir>/walarchive/bin/medianest-walarchive` survives upgrades:
    the link is switched atomically to the new install, and installs other than the
    current and the previous one are removed.
    """
    _make_traversable(tools_dir)
    requirements = pinned_requirements()
    fingerprint = source_fingerprint(requirements)
    install = ArchiverInstall(tools_dir / f"{STABLE_NAME}-{fingerprint}", fingerprint)
    stable = tools_dir / STABLE_NAME
    with _install_lock(tools_dir):
        if not install.complete:
            try:
                _build(install, requirements)
            except (CommandFailedError, StackError, ConfigError):
                shutil.rmtree(install.root, ignore_errors=True)
                raise
        previous = installed_fingerprint(tools_dir)
        if previous != install.fingerprint:
            link = tools_dir / f".{STABLE_NAME}.link"
            link.unlink(missing_ok=True)
            link.symlink_to(install.root.name)
            os.replace(link, stable)
        keep = {install.root.name, f"{STABLE_NAME}-{previous}" if previous else ""}
        for old in tools_dir.glob(f"{STABLE_NAME}-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
    return stable / "bin" / SCRIPT


def installed_fingerprint(tools_dir: Path) -> str | None:
    """Fingerprint of the install the stable path points at (None if none is installed)."""
    stable = tools_dir / STABLE_NAME
    if not stable.is_symlink() or not (stable / STAMP).is_file():
        return None
    return (stable / STAMP).read_text().strip()


def current_fingerprint() -> str:
    """Fingerprint that `install_archiver` would install from this checkout now."""
    return source_fingerprint(pinned_requirements())


def archiver_argv(tools_dir: Path) -> list[str]:
    """How archive_command and restore_command start the archiver (installed on first use)."""
    return [str(install_archiver(tools_dir))]


def check_archiver_config(argv: list[str], config_path: Path) -> None:
    """As the cluster user, read `config_path`, its key and the repository: before archive_command names them."""
    probe = run_as_cluster_user([*argv, "check", "--config", str(config_path)], timeout=120, check=False)
    if probe.returncode != 0:
        raise ConfigError(
            f"the {cluster_user()} user cannot archive with {config_path} (exit {probe.returncode}): "
            f"{probe.stdout.strip()[-1000:]}"
        )
