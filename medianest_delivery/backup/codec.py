"""Backup object encoding: zstd, then AES-256-GCM chunks, hashed as stored.

`encode_to_file` and `decode_chunks` are the two directions; both stream, so
memory stays flat whatever the database size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

from medianest_delivery.backup.crypto import Decryptor, EncryptionKey, Encryptor
from medianest_delivery.errors import VerificationError

READ_SIZE = 1024 * 1024
COMPRESSION_LEVEL = 3


@dataclass(frozen=True)
class EncodedObject:
    """What was written: the stored bytes' size and SHA-256, and the plaintext size."""

    path: Path
    size: int
    sha256: str
    plain_size: int


def read_chunks(stream: IO[bytes], size: int = READ_SIZE) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def encode_to_file(chunks: Iterable[bytes], key: EncryptionKey, path: Path, threads: int = 0) -> EncodedObject:
    """Compress, encrypt and hash `chunks` into `path` (fsynced); returns the stored checksum.

    threads > 0 lets zstd compress on worker threads while the producer (pg_dump)
    keeps writing: on two cores this keeps the pipeline at pg_dump's own speed.
    """
    compressor = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL, threads=threads).compressobj()
    encryptor = Encryptor(key)
    digest = hashlib.sha256()
    size = 0
    plain_size = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:

        def emit(data: bytes) -> None:
            nonlocal size
            if data:
                digest.update(data)
                out.write(data)
                size += len(data)

        for chunk in chunks:
            plain_size += len(chunk)
            emit(encryptor.update(compressor.compress(chunk)))
        emit(encryptor.update(compressor.flush()))
        emit(encryptor.finalize())
        out.flush()
        os.fsync(out.fileno())
    return EncodedObject(path, size, digest.hexdigest(), plain_size)


def decode_chunks(
    stored: Iterable[bytes], key: EncryptionKey, name: str, expected_sha256: str | None = None
) -> Iterator[bytes]:
    """Verify, decrypt and decompress stored bytes; errors name the object.

    Every chunk is authenticated before it is released; the whole-object
    SHA-256 is compared at the end (a mismatch there means the repository's
    copy differs from what the manifest recorded).
    """
    decryptor = Decryptor(key, name)
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    digest = hashlib.sha256()
    try:
        for chunk in stored:
            digest.update(chunk)
            plain = decryptor.update(chunk)
            if plain:
                yield decompressor.decompress(plain)
        tail = decryptor.finalize()
        if tail:
            yield decompressor.decompress(tail)
    except zstandard.ZstdError as exc:
        raise VerificationError(f"{name}: zstd data is corrupt after decryption: {exc}") from exc
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        raise VerificationError(f"{name}: SHA-256 {digest.hexdigest()} does not match the manifest's {expected_sha256}")
