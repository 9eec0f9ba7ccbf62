"""The zstd+encryption codec that stores backup objects, on real bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medianest_delivery.backup.codec import decode_chunks, encode_to_file
from medianest_delivery.backup.crypto import HEADER_LENGTH, EncryptionKey
from medianest_delivery.errors import VerificationError


def test_codec_flipped_byte_names_the_object(tmp_path: Path) -> None:
    """One flipped stored byte fails decoding with the object's name in the error."""
    key = EncryptionKey.generate()
    plain = b"row,%d\n" * 1 + os.urandom(300_000)
    encoded = encode_to_file(iter([plain]), key, tmp_path / "obj")
    assert b"".join(decode_chunks([encoded.path.read_bytes()], key, "obj", encoded.sha256)) == plain
    data = bytearray(encoded.path.read_bytes())
    data[HEADER_LENGTH + 100] ^= 0x01
    with pytest.raises(VerificationError, match=r"^stanza/backups/1/dump\.zst\.enc: chunk 0"):
        b"".join(decode_chunks([bytes(data)], key, "stanza/backups/1/dump.zst.enc", encoded.sha256))


def test_codec_compresses_repetitive_data(tmp_path: Path) -> None:
    """Repetitive SQL shrinks over 20-fold with threaded zstd, and the plain size is recorded exactly."""
    key = EncryptionKey.generate()
    plain = b"INSERT INTO media VALUES (1, 'title');\n" * 50_000
    encoded = encode_to_file(iter([plain]), key, tmp_path / "obj", threads=2)
    assert encoded.plain_size == len(plain)
    assert encoded.size < len(plain) / 20
