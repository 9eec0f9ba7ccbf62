"""Chunked AES-256-GCM on real bytes, and how encryption keys are parsed."""

from __future__ import annotations

import os

import pytest

from medianest_delivery.backup.crypto import CHUNK, HEADER_LENGTH, Decryptor, EncryptionKey, Encryptor
from medianest_delivery.errors import ConfigError, VerificationError


def _roundtrip(plain: bytes, feed: int) -> bytes:
    key = EncryptionKey.generate()
    enc = Encryptor(key)
    sealed = b"".join(enc.update(plain[i : i + feed]) for i in range(0, len(plain), feed)) + enc.finalize()
    dec = Decryptor(key, "obj")
    out = b"".join(dec.update(sealed[i : i + 7777]) for i in range(0, len(sealed), 7777)) + dec.finalize()
    return out


@pytest.mark.parametrize(
    ("name", "size", "feed"),
    [
        ("empty", 0, 1),
        ("one byte", 1, 1),
        ("exactly one chunk", CHUNK, 4096),
        ("one chunk plus one", CHUNK + 1, 65536),
        ("three chunks, odd feed", 3 * CHUNK + 17, 100_003),
    ],
)
def test_encryption_round_trips_any_size(name: str, size: int, feed: int) -> None:
    """Whatever the size and however it is fed, decrypting gives back the input."""
    plain = os.urandom(size)
    assert _roundtrip(plain, feed) == plain, name


def test_truncation_at_a_chunk_boundary_is_detected() -> None:
    """Dropping the final chunk must not yield a shorter-but-valid plaintext."""
    key = EncryptionKey.generate()
    enc = Encryptor(key)
    sealed = enc.update(os.urandom(2 * CHUNK + 5)) + enc.finalize()
    truncated = sealed[: HEADER_LENGTH + CHUNK + 16]
    dec = Decryptor(key, "backups/x/dump")
    dec.update(truncated)
    with pytest.raises(VerificationError, match="backups/x/dump: chunk 0 failed authentication"):
        dec.finalize()


def test_wrong_key_names_both_key_ids() -> None:
    """A different key is reported by id before any decryption is attempted."""
    right, wrong = EncryptionKey.generate(), EncryptionKey.generate()
    enc = Encryptor(right)
    sealed = enc.update(b"secret rows") + enc.finalize()
    with pytest.raises(VerificationError, match=f"key id {right.key_id}.*has id {wrong.key_id}"):
        Decryptor(wrong, "obj").update(sealed)


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("empty", "  ", "empty"),
        ("short base64", "YWJj", "32 bytes"),
        ("garbage", "not a key at all!", "neither"),
    ],
)
def test_bad_keys_are_rejected_clearly(name: str, text: str, error: str) -> None:
    """A blank, too short or undecodable key is a ConfigError saying which of these it is."""
    with pytest.raises(ConfigError, match=error):
        EncryptionKey.parse(text)


def test_key_parses_from_hex_and_base64_alike() -> None:
    """The same 32 bytes given as 64 hex digits or as base64 parse to the same key."""
    key = EncryptionKey.generate()
    assert EncryptionKey.parse(key.material.hex()) == EncryptionKey.parse(key.encoded()) == key
