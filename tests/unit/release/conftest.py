"""Fixtures shared by the release tests."""

from __future__ import annotations

import pytest

from medianest_delivery.release.signing_keys import generate_key_pair, load_private_key, load_public_key


@pytest.fixture(scope="module")
def keys() -> tuple[object, object, bytes]:
    """A real ECDSA key pair: (private key, public key, public PEM)."""
    pair = generate_key_pair(b"pw")
    return load_private_key(pair.private_pem, b"pw"), load_public_key(pair.public_pem), pair.public_pem
