"""Client-side AES-256-GCM for backup objects, in authenticated chunks.

One GCM message per 1 MiB chunk with the STREAM construction (Hoang et al.,
as in Tink's streaming AEAD and age): nonce = 7-byte random prefix, 4-byte
chunk counter, 1-byte "last chunk" flag; the header is the associated data of
every chunk. So a reader never releases a byte that is not authenticated, and
reordering, truncation and a wrong key are all detected, chunk by chunk.

    header = b"MNBKENC1" + key_id (16 ASCII hex) + nonce_prefix (7 bytes)
    body   = chunk_0 ... chunk_n      each = ciphertext + 16-byte tag
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medianest_delivery.errors import ConfigError, VerificationError

MAGIC = b"MNBKENC1"
KEY_ID_LENGTH = 16
PREFIX_LENGTH = 7
HEADER_LENGTH = len(MAGIC) + KEY_ID_LENGTH + PREFIX_LENGTH
CHUNK = 1024 * 1024
TAG = 16


@dataclass(frozen=True)
class EncryptionKey:
    """A 256-bit key and its id (a hash of the key, so the id never reveals it)."""

    material: bytes = field(repr=False)  # repr() shows the key id, never the key

    def __repr__(self) -> str:
        return f"EncryptionKey(key_id={self.key_id!r})"

    def __post_init__(self) -> None:
        if len(self.material) != 32:
            raise ConfigError(f"backup encryption key must be 32 bytes (AES-256); got {len(self.material)}")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"medianest-backup-key:" + self.material).hexdigest()[:KEY_ID_LENGTH]

    @classmethod
    def parse(cls, text: str) -> EncryptionKey:
        """Accept 64 hex digits or base64 of 32 bytes (what `generate` prints)."""
        value = text.strip()
        if not value:
            raise ConfigError("backup encryption key is empty; create one with `medianest-delivery backup keygen`")
        try:
            raw = bytes.fromhex(value) if len(value) == 64 else base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise ConfigError("backup encryption key is neither 64 hex digits nor base64") from exc
        return cls(raw)

    @classmethod
    def generate(cls) -> EncryptionKey:
        return cls(os.urandom(32))

    def encoded(self) -> str:
        return base64.b64encode(self.material).decode()


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= 2**32:
        raise VerificationError("encrypted object exceeds 4 Ti chunks")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def read_key_id(header: bytes) -> str:
    """The key id an encrypted object names; raises if it is not one of ours."""
    if len(header) < HEADER_LENGTH or header[: len(MAGIC)] != MAGIC:
        raise VerificationError("object is not a MediaNest encrypted backup object (bad header)")
    return header[len(MAGIC) : len(MAGIC) + KEY_ID_LENGTH].decode("ascii")


class Encryptor:
    """Feed plaintext with `update`, end with `finalize`; both return ciphertext."""

    def __init__(self, key: EncryptionKey) -> None:
        self._aead = AESGCM(key.material)
        self._prefix = os.urandom(PREFIX_LENGTH)
        self._header = MAGIC + key.key_id.encode("ascii") + self._prefix
        self._buffer = bytearray()
        self._counter = 0
        self._started = False

    def _seal(self, data: bytes, last: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), data, self._header)
        self._counter += 1
        return sealed

    def update(self, data: bytes) -> bytes:
        out = bytearray()
        if not self._started:
            out += self._header
            self._started = True
        self._buffer += data
        # Keep at least one byte back so that the last chunk is never full-size-and-unflagged.
        offset = 0
        while len(self._buffer) - offset > CHUNK:
            out += self._seal(bytes(self._buffer[offset : offset + CHUNK]), last=False)
            offset += CHUNK
        del self._buffer[:offset]
        return bytes(out)

    def finalize(self) -> bytes:
        out = self.update(b"")
        tail = self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        return out + tail


class Decryptor:
    """The inverse of `Encryptor`; `name` is used in errors so they say which object failed."""

    def __init__(self, key: EncryptionKey, name: str) -> None:
        self._key = key
        self._aead = AESGCM(key.material)
        self._name = name
        self._header: bytes | None = None
        self._buffer = bytearray()
        self._counter = 0

    def _open(self, data: bytes, last: bool) -> bytes:
        assert self._header is not None
        prefix = self._header[-PREFIX_LENGTH:]
        try:
            plain = self._aead.decrypt(_nonce(prefix, self._counter, last), data, self._header)
        except InvalidTag as exc:
            raise VerificationError(
                f"{self._name}: chunk {self._counter} failed authentication (object corrupted or truncated)"
            ) from exc
        self._counter += 1
        return plain

    def update(self, data: bytes) -> bytes:
        self._buffer += data
        if self._header is None:
            if len(self._buffer) < HEADER_LENGTH:
                return b""
            header = bytes(self._buffer[:HEADER_LENGTH])
            key_id = read_key_id(header)
            if key_id != self._key.key_id:
                raise VerificationError(
                    f"{self._name} was encrypted with key id {key_id}; the key given has id {self._key.key_id}"
                )
            self._header = header
            del self._buffer[:HEADER_LENGTH]
        out = bytearray()
        offset = 0
        while len(self._buffer) - offset > CHUNK + TAG:
            out += self._open(bytes(self._buffer[offset : offset + CHUNK + TAG]), last=False)
            offset += CHUNK + TAG
        del self._buffer[:offset]
        return bytes(out)

    def finalize(self) -> bytes:
        if self._header is None:
            raise VerificationError(f"{self._name} is truncated: no complete header")
        if len(self._buffer) < TAG:
            raise VerificationError(f"{self._name} is truncated: last chunk shorter than its tag")
        plain = self._open(bytes(self._buffer), last=True)
        self._buffer.clear()
        return plain
