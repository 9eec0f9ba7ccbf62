"""The key pair that signs images and attestations."""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from medianest_delivery.release.signing_keys import KeyPairPem, ensure_local_key_pair, load_private_key
from medianest_delivery.settings import StackSettings


class SigningKey(Block):
    """An ECDSA P-256 key pair in cosign's PEM forms.

    With ``private_key_pem`` unset, the flows use (and on first use create) the
    key pair in ``key_dir`` of the local stack.
    """

    _block_type_name = "MediaNest Signing Key"

    private_key_pem: SecretStr | None = Field(default=None, description="PKCS#8 PEM, encrypted with password")
    password: SecretStr = Field(default=SecretStr(""), description="password of the private key")
    public_key_pem: str | None = Field(default=None, description="SubjectPublicKeyInfo PEM (cosign.pub)")
    key_dir: str | None = Field(default=None, description="directory with cosign.key/cosign.pub (default: state dir)")

    def get_client(self) -> KeyPairPem:
        """The key pair: from the block's PEMs, else the local stack's (created 0600 on first use)."""
        password = self.password.get_secret_value().encode()
        if self.private_key_pem is not None:
            private = self.private_key_pem.get_secret_value().encode()
            public = (self.public_key_pem or "").encode()
            if not public:
                from cryptography.hazmat.primitives import serialization

                public = (
                    load_private_key(private, password)
                    .public_key()
                    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                )
            return KeyPairPem(private, public)
        key_dir = Path(self.key_dir) if self.key_dir else StackSettings().keys_dir
        return ensure_local_key_pair(key_dir, password)
