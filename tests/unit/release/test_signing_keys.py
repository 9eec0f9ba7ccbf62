"""Signing keys: password-protected private keys and short key ids, with real ECDSA keys."""

from __future__ import annotations

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
