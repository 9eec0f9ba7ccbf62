"""The key pair that signs images and attestations."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import cast

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, SecretStr

from medianest_delivery.errors import ConfigError
from medianest_delivery.release.signing_keys import KeyPairPem, ensure_local_key_pair, load_private_key
from medianest_delivery.release.trust import TrustedKey
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


class TrustedKeyEntry(BaseModel):
    """One public key a deploy accepts, and when (rotation: the old and the new key overlap for a while)."""

    public_key_pem: str = Field(description="SubjectPublicKeyInfo PEM (cosign.pub)")
    name: str = Field(default="", description="who or what holds the private key, for messages")
    not_before: dt.datetime | None = Field(default=None, description="accepted from (UTC)")
    not_after: dt.datetime | None = Field(default=None, description="accepted until (UTC), exclusive")


class TrustedSigners(Block):
    """The keys deploys trust, from configuration: a release manifest never names its own trust anchor.

    Without a block, deploys trust the local stack's signing key (its cosign.pub) and nothing else.
    """

    _block_type_name = "MediaNest Trusted Signers"

    keys: list[TrustedKeyEntry] = Field(default_factory=list, description="accepted keys with validity windows")

    def get_client(self) -> list[TrustedKey]:
        return [TrustedKey(k.public_key_pem, k.name, k.not_before, k.not_after) for k in self.keys]


def trusted_signers_or_local(name: str | None) -> TrustedSigners:
    """The named block, or the local stack's own signing key as the only trusted key."""
    if name:
        return cast(TrustedSigners, TrustedSigners.load(name))
    public = StackSettings().keys_dir / "cosign.pub"  # a deploy only reads: it never makes or re-seals keys
    if not public.is_file():
        raise ConfigError(f"no trusted signer: {public} does not exist; save a TrustedSigners block and pass its name")
    return TrustedSigners(keys=[TrustedKeyEntry(public_key_pem=public.read_text(), name="local stack key")])
