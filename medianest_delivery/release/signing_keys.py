"""ECDSA P-256 key pairs in the PEM forms cosign reads, and sign/verify of bytes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from medianest_delivery.errors import ConfigError


@dataclass(frozen=True)
class KeyPairPem:
    private_pem: bytes  # PKCS#8, encrypted with the password
    public_pem: bytes  # SubjectPublicKeyInfo: what `cosign verify --key` takes


def generate_key_pair(password: bytes) -> KeyPairPem:
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPairPem(private_pem, public_pem)


def load_private_key(pem: bytes, password: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=password or None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"signing key cannot be loaded (wrong password or not a PEM key): {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("signing key must be an ECDSA key (cosign uses P-256)")
    return key


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigError(f"public key is not a PEM public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("public key must be an ECDSA key (cosign uses P-256)")
    return key


def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """DER-encoded ECDSA signature over SHA-256(data), as cosign produces."""
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_bytes(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def key_id(public_pem: bytes) -> str:
    """A short stable id of a public key (sha256 of its DER) for manifests and logs."""
    der = load_public_key(public_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def ensure_local_key_pair(key_dir: Path, password: bytes) -> KeyPairPem:
    """Read cosign.key/cosign.pub from ``key_dir``, creating them (0600) on first use."""
    private_path, public_path = key_dir / "cosign.key", key_dir / "cosign.pub"
    if private_path.is_file() and public_path.is_file():
        return KeyPairPem(private_path.read_bytes(), public_path.read_bytes())
    key_dir.mkdir(parents=True, exist_ok=True)
    pair = generate_key_pair(password)
    private_path.touch(mode=0o600)
    private_path.write_bytes(pair.private_pem)
    public_path.write_bytes(pair.public_pem)
    return pair
