"""Signing keys: password-protected private keys and short key ids, with real ECDSA keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.release.signing_keys import generate_key_pair, key_id, load_private_key


def test_wrong_password_is_a_clear_error() -> None:
    """Loading a private key with the wrong password is a ConfigError saying so."""
    pair = generate_key_pair(b"right")
    with pytest.raises(ConfigError, match="wrong password"):
        load_private_key(pair.private_pem, b"wrong")


def test_key_id_is_stable_and_short(keys: tuple[object, object, bytes]) -> None:
    """The same public key always gets the same 16-character id."""
    _, _, public_pem = keys
    assert key_id(public_pem) == key_id(public_pem)
    assert len(key_id(public_pem)) == 16


def test_private_key_is_stored_in_cosigns_encrypted_format() -> None:
    """cosign.key is an ENCRYPTED SIGSTORE PRIVATE KEY: scrypt (N=32768, r=8, p=1) and NaCl secretbox, as cosign
    writes it, so a real cosign binary can load it; it round-trips and signs verifiably."""
    import base64
    import json

    from medianest_delivery.release.signing_keys import (
        generate_key_pair,
        load_private_key,
        load_public_key,
        sign_bytes,
        verify_bytes,
    )

    pair = generate_key_pair(b"correct horse")
    lines = pair.private_pem.decode().strip().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert lines[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    envelope = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert envelope["kdf"]["name"] == "scrypt"
    assert envelope["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(envelope["kdf"]["salt"])) == 32
    assert envelope["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(envelope["cipher"]["nonce"])) == 24
    key = load_private_key(pair.private_pem, b"correct horse")
    assert verify_bytes(load_public_key(pair.public_pem), b"payload", sign_bytes(key, b"payload"))
    assert b"PRIVATE KEY-----\nMI" not in pair.private_pem  # no plain PKCS#8 anywhere


def test_wrong_password_is_named() -> None:
    """A wrong password fails to decrypt with an error that says so, not a parse error."""
    from medianest_delivery.errors import ConfigError
    from medianest_delivery.release.signing_keys import generate_key_pair, load_private_key

    pair = generate_key_pair(b"right")
    with pytest.raises(ConfigError, match="wrong password"):
        load_private_key(pair.private_pem, b"wrong")


def test_tampered_envelope_is_refused() -> None:
    """A flipped byte in the sealed key is caught by secretbox's authenticator."""
    import base64
    import json

    from medianest_delivery.errors import ConfigError
    from medianest_delivery.release.signing_keys import generate_key_pair, load_private_key

    pair = generate_key_pair(b"pw")
    lines = pair.private_pem.decode().strip().splitlines()
    envelope = json.loads(base64.b64decode("".join(lines[1:-1])))
    sealed = bytearray(base64.b64decode(envelope["ciphertext"]))
    sealed[-1] ^= 1
    envelope["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    body = base64.b64encode(json.dumps(envelope).encode()).decode()
    with pytest.raises(ConfigError):
        load_private_key(f"{lines[0]}\n{body}\n{lines[-1]}\n".encode(), b"pw")


def test_existing_key_is_never_replaced(tmp_path: Path) -> None:
    """Regression (issue 11.4): a missing cosign.pub silently regenerated the pair. Now the public key is derived
    from the existing private key, the private key keeps its bytes and mode 0600, and a public key without its
    private key is an error."""
    import stat

    from medianest_delivery.errors import ConfigError
    from medianest_delivery.release.signing_keys import ensure_local_key_pair

    first = ensure_local_key_pair(tmp_path, b"pw")
    assert stat.S_IMODE((tmp_path / "cosign.key").stat().st_mode) == 0o600
    (tmp_path / "cosign.pub").unlink()
    again = ensure_local_key_pair(tmp_path, b"pw")
    assert again.private_pem == first.private_pem
    assert again.public_pem == first.public_pem
    (tmp_path / "cosign.key").unlink()
    with pytest.raises(ConfigError, match="exists without"):
        ensure_local_key_pair(tmp_path, b"pw")
    assert not (tmp_path / "cosign.key").exists()


def test_an_older_unencrypted_key_is_resealed_in_cosign_format(tmp_path: Path) -> None:
    """A PKCS#8 key left by earlier versions is re-sealed in place: same key (same public key), now encrypted."""
    import stat

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from medianest_delivery.release.signing_keys import ensure_local_key_pair, public_pem_of

    key = ec.generate_private_key(ec.SECP256R1())
    plain = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "cosign.key").write_bytes(plain)
    (tmp_path / "cosign.pub").write_bytes(public_pem_of(key))
    pair = ensure_local_key_pair(tmp_path, b"pw")
    stored = (tmp_path / "cosign.key").read_bytes()
    assert stored.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert stat.S_IMODE((tmp_path / "cosign.key").stat().st_mode) == 0o600
    assert pair.public_pem == public_pem_of(key)
    assert public_pem_of(load_private_key(stored, b"pw")) == public_pem_of(key)
