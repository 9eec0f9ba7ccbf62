"""ECDSA P-256 key pairs in the forms cosign reads and writes, and sign/verify of bytes.

The private key is stored as cosign stores it (`cosign.key`: an "ENCRYPTED
SIGSTORE PRIVATE KEY", scrypt + NaCl secretbox), so a real cosign binary can
sign with it, and it is never written unencrypted. Keys in the older PKCS#8 PEM
form stay readable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from medianest_delivery.errors import ConfigError


@dataclass(frozen=True)
class KeyPairPem:
    private_pem: bytes = field(repr=False)  # cosign's encrypted key (cosign.key)
    public_pem: bytes  # SubjectPublicKeyInfo: what `cosign verify --key` takes


def generate_key_pair(password: bytes) -> KeyPairPem:
    key = ec.generate_private_key(ec.SECP256R1())
    return KeyPairPem(encrypt_cosign_private_key(key, password), public_pem_of(key))


def is_cosign_key(pem: bytes) -> bool:
    return pem.lstrip().startswith(
        (f"-----BEGIN {SIGSTORE_PEM_TYPE}".encode(), f"-----BEGIN {LEGACY_COSIGN_PEM_TYPE}".encode())
    )


def public_pem_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes, password: bytes) -> ec.EllipticCurvePrivateKey:
    """A private key from cosign's encrypted form, or from a PKCS#8 PEM (older keys of this project)."""
    if pem.lstrip().startswith(
        (f"-----BEGIN {SIGSTORE_PEM_TYPE}".encode(), f"-----BEGIN {LEGACY_COSIGN_PEM_TYPE}".encode())
    ):
        return decrypt_cosign_private_key(pem, password)
    try:
        try:
            key = serialization.load_pem_private_key(pem, password=password or None)
        except TypeError:  # an older key stored unencrypted: readable, and re-sealed by ensure_local_key_pair
            key = serialization.load_pem_private_key(pem, password=None)
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
    """cosign.key/cosign.pub in ``key_dir``, created (the key 0600 from its first byte) only when neither exists.

    An existing key is never replaced: a lost cosign.pub is derived again from
    cosign.key, and a cosign.pub without its cosign.key is an error (a new pair
    would silently orphan every signature made so far).
    """
    private_path, public_path = key_dir / "cosign.key", key_dir / "cosign.pub"
    if private_path.is_file():
        private_pem = private_path.read_bytes()
        if not is_cosign_key(private_pem):  # an older PKCS#8 key: the same key, re-sealed in cosign's format
            private_pem = encrypt_cosign_private_key(load_private_key(private_pem, password), password)
            partial = private_path.with_name("cosign.key.partial")
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as sealed:
                sealed.write(private_pem)
            os.replace(partial, private_path)
        if not public_path.is_file():
            public_path.write_bytes(public_pem_of(load_private_key(private_pem, password)))
        return KeyPairPem(private_pem, public_path.read_bytes())
    if public_path.is_file():
        raise ConfigError(
            f"{public_path} exists without {private_path}: restore the private key, or move cosign.pub away to make "
            "a new pair (then trust the new public key; signatures by the old one stop verifying)"
        )
    key_dir.mkdir(parents=True, exist_ok=True)
    pair = generate_key_pair(password)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never over an existing key
    with os.fdopen(descriptor, "wb") as private_file:
        private_file.write(pair.private_pem)
    public_path.write_bytes(pair.public_pem)
    return pair


# --- cosign's encrypted private key format -------------------------------------------------
# cosign (and containers/image) store the PKCS#8 DER of the key in go-securesystemslib's
# "encrypted" envelope: scrypt (N=32768, r=8, p=1, 32-byte salt) derives a key from the
# password, NaCl secretbox (XSalsa20-Poly1305, 24-byte nonce) seals the DER, and the JSON
# envelope is the body of an "ENCRYPTED SIGSTORE PRIVATE KEY" PEM block.
SIGSTORE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
LEGACY_COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1


def _scrypt_key(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def encrypt_cosign_private_key(key: ec.EllipticCurvePrivateKey, password: bytes) -> bytes:
    """The key as `cosign generate-key-pair` writes it (cosign.key), sealed under `password`."""
    from nacl.secret import SecretBox
    from nacl.utils import random as random_bytes

    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    salt, nonce = random_bytes(32), random_bytes(SecretBox.NONCE_SIZE)
    sealed = SecretBox(_scrypt_key(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(der, nonce).ciphertext
    envelope = {
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}, "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    body = base64.encodebytes(json.dumps(envelope, separators=(",", ":")).encode()).decode()
    return f"-----BEGIN {SIGSTORE_PEM_TYPE}-----\n{body}-----END {SIGSTORE_PEM_TYPE}-----\n".encode()


def decrypt_cosign_private_key(pem: bytes, password: bytes) -> ec.EllipticCurvePrivateKey:
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    text = pem.decode(errors="replace").strip()
    lines = text.splitlines()
    if len(lines) < 3 or lines[0] not in (f"-----BEGIN {t}-----" for t in (SIGSTORE_PEM_TYPE, LEGACY_COSIGN_PEM_TYPE)):
        raise ConfigError("signing key is not a cosign key (ENCRYPTED SIGSTORE PRIVATE KEY)")
    try:
        envelope = json.loads(base64.b64decode("".join(lines[1:-1]), validate=True))
        kdf, cipher = envelope["kdf"], envelope["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise ConfigError(f"unsupported cosign key encryption: {kdf['name']} / {cipher['name']}")
        params = kdf["params"]
        secret = _scrypt_key(password, base64.b64decode(kdf["salt"]), params["N"], params["r"], params["p"])
        der = SecretBox(secret).decrypt(base64.b64decode(envelope["ciphertext"]), base64.b64decode(cipher["nonce"]))
    except CryptoError as exc:
        raise ConfigError("signing key cannot be decrypted: wrong password") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"cosign key envelope is malformed: {exc!r}") from exc
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("signing key must be an ECDSA key (cosign uses P-256)")
    return key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
