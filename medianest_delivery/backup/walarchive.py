"""The WAL archiver PostgreSQL calls: `archive_command` (push) and `restore_command` (fetch).

    archive_command = '<archiver> push --config /path/archiver.json %p'
    restore_command = '<archiver> fetch --config /path/archiver.json %f %p'

Each segment is stored compressed and encrypted under a key that carries the
SHA-256 of the plain segment (as pgBackRest puts a SHA-1 in its names), so a
re-push of the same segment after a crash is recognised, a different segment
under the same name is refused, and `verify` can check every segment.
Exit status is what PostgreSQL expects: 0 only when the segment is safely
stored (push) or restored (fetch). This module keeps its imports light: it
runs once per 16 MiB of WAL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medianest_delivery.backup.codec import decode_chunks, encode_to_file, read_chunks
from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.backup.repository import BackupRepository
from medianest_delivery.backup.repospec import RepositorySpec, open_repository
from medianest_delivery.errors import DeliveryError, RepositoryError, VerificationError

SUFFIX = ".zst.enc"


@dataclass(frozen=True)
class ArchiverConfig:
    stanza: str
    repository: RepositorySpec
    key_file: Path
    spool_dir: Path

    def key(self) -> EncryptionKey:
        try:
            return EncryptionKey.parse(self.key_file.read_text())
        except FileNotFoundError as exc:
            raise DeliveryError(f"WAL archiver key file {self.key_file} does not exist") from exc

    def write(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "stanza": self.stanza,
                    "repository": json.loads(self.repository.to_json()),
                    "key_file": str(self.key_file),
                    "spool_dir": str(self.spool_dir),
                },
                indent=2,
            )
        )
        path.chmod(0o600)

    @classmethod
    def read(cls, path: Path) -> ArchiverConfig:
        raw = json.loads(path.read_text())
        return cls(
            raw["stanza"], RepositorySpec.from_mapping(raw["repository"]), Path(raw["key_file"]), Path(raw["spool_dir"])
        )


def wal_prefix(stanza: str) -> str:
    return f"{stanza}/wal"


def segment_key(stanza: str, wal_name: str, plain_sha256: str) -> str:
    return f"{wal_prefix(stanza)}/{wal_name[:16]}/{wal_name}-{plain_sha256}{SUFFIX}"


def split_segment_key(key: str) -> tuple[str, str]:
    """'<stanza>/wal/<dir>/<name>-<sha>.zst.enc' -> (name, sha)."""
    base = key.rsplit("/", 1)[-1].removesuffix(SUFFIX)
    name, _, sha = base.rpartition("-")
    return name, sha


def find_segment(repository: BackupRepository, stanza: str, wal_name: str) -> list[str]:
    return [o.key for o in repository.list_objects(f"{wal_prefix(stanza)}/{wal_name[:16]}/{wal_name}-")]


def push_segment(config: ArchiverConfig, repository: BackupRepository, source: Path) -> str:
    """Store one WAL file; idempotent for identical content, refuses different content."""
    name = source.name
    plain_sha = hashlib.sha256(source.read_bytes()).hexdigest()
    existing = find_segment(repository, config.stanza, name)
    key = segment_key(config.stanza, name, plain_sha)
    if key in existing:
        return key
    if existing:
        raise VerificationError(
            f"WAL file {name} is already archived with different content ({existing[0]}); "
            "another cluster may be archiving to this stanza"
        )
    config.spool_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=config.spool_dir) as spool:
        with source.open("rb") as stream:
            encoded = encode_to_file(read_chunks(stream), config.key(), Path(spool) / (name + SUFFIX))
        repository.put_file(key, encoded.path, encoded.sha256)
    return key


def fetch_segment(config: ArchiverConfig, repository: BackupRepository, wal_name: str, target: Path) -> bool:
    """Restore one WAL file to `target`; False when the archive does not hold it."""
    keys = find_segment(repository, config.stanza, wal_name)
    if not keys:
        return False
    key = keys[0]
    _, plain_sha = split_segment_key(key)
    partial = target.with_name(target.name + ".fetching")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for chunk in decode_chunks(repository.get_chunks(key), config.key(), key):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != plain_sha:
        partial.unlink(missing_ok=True)
        raise VerificationError(f"{key}: restored WAL has SHA-256 {digest.hexdigest()}, its name says {plain_sha}")
    os.replace(partial, target)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="walarchive", description=__doc__.split("\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    push = sub.add_parser("push", help="archive one WAL file (archive_command)")
    push.add_argument("--config", type=Path, required=True)
    push.add_argument("path", type=Path)
    fetch = sub.add_parser("fetch", help="restore one WAL file (restore_command)")
    fetch.add_argument("--config", type=Path, required=True)
    fetch.add_argument("name")
    fetch.add_argument("target", type=Path)
    check = sub.add_parser("check", help="read the config and key, list the stanza's WAL (setup check)")
    check.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        config = ArchiverConfig.read(args.config)
        repository = open_repository(config.repository)
        if args.command == "check":
            config.key()
            count = len(repository.list_objects(wal_prefix(config.stanza) + "/"))
            print(f"walarchive: {config.stanza} ready, {count} WAL objects archived", file=sys.stderr)
            return 0
        if args.command == "push":
            print(f"walarchive: stored {push_segment(config, repository, args.path)}", file=sys.stderr)
            return 0
        if fetch_segment(config, repository, args.name, args.target):
            return 0
        return 1  # not archived: normal at the end of recovery
    except (DeliveryError, RepositoryError, OSError, ValueError) as exc:
        print(f"walarchive {args.command} failed: {exc}", file=sys.stderr)
        return 2


def cli() -> None:
    """Console entry point of the installed archiver (`medianest-walarchive`)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
