"""The key pair that signs images and attestations."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


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
