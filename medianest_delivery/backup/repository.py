"""The backup repository interface and its local-directory backend.

A repository stores opaque objects under '/'-separated keys. A write is
all-or-nothing: the object appears under its key only after its bytes were
checked against the SHA-256 the caller computed, so a reader never sees a
half-written object. Backups become visible as complete only when their
manifest (written last, see manifest.py) exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from medianest_delivery.errors import ConfigError, RepositoryError, VerificationError

COPY_SIZE = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


class BackupRepository(Protocol):
    """What the backup flows need from storage; DirectoryRepository and S3Repository implement it."""

    @property
    def location(self) -> str: ...

    def put_file(self, key: str, source: Path, sha256: str) -> StoredObject: ...

    def put_bytes(self, key: str, data: bytes) -> StoredObject: ...

    def get_chunks(self, key: str) -> Iterator[bytes]: ...

    def get_bytes(self, key: str) -> bytes: ...

    def list_objects(self, prefix: str) -> list[StoredObject]: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, keys: list[str]) -> None: ...


def check_key(key: str) -> str:
    """Reject keys that could escape the repository root or be ambiguous."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or any(part in ("", ".", "..") for part in key.split("/")):
        raise ConfigError(f"repository key {key!r} must be a relative path without '.' or '..' parts")
    return key


class DirectoryRepository:
    """A posix directory (like pgBackRest's posix repo): temp file, fsync, rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _commit(self, key: str, chunks: Iterator[bytes], sha256: str | None) -> StoredObject:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
            digest = hashlib.sha256()
            size = 0
            with partial.open("wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if sha256 is not None and digest.hexdigest() != sha256:
                partial.unlink(missing_ok=True)
                raise VerificationError(
                    f"{self.location}/{key}: wrote SHA-256 {digest.hexdigest()}, expected {sha256}; nothing stored"
                )
            os.replace(partial, target)
            directory = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise RepositoryError(f"cannot write {key} to {self.location}: {exc}") from exc
        return StoredObject(key, size)

    def put_file(self, key: str, source: Path, sha256: str) -> StoredObject:
        def chunks() -> Iterator[bytes]:
            with source.open("rb") as stream:
                while block := stream.read(COPY_SIZE):
                    yield block

        return self._commit(key, chunks(), sha256)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        return self._commit(key, iter([data]), hashlib.sha256(data).hexdigest())

    def get_chunks(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            stream = path.open("rb")
        except FileNotFoundError as exc:
            raise RepositoryError(f"{self.location}/{key} does not exist") from exc
        with stream:
            while block := stream.read(COPY_SIZE):
                yield block

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.get_chunks(key))

    def list_objects(self, prefix: str) -> list[StoredObject]:
        """Objects whose key starts with `prefix` (which need not end at a '/')."""
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / directory if directory else self.root
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and ".partial-" not in path.name and path.is_file():
                found.append(StoredObject(key, path.stat().st_size))
        return sorted(found, key=lambda o: o.key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        for key in keys:
            parent = self._path(key).parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                shutil.rmtree(parent)
                parent = parent.parent
