"""The local stack's backup key: one Prefect Secret block, with a 0600 escrow copy in the state dir."""

from __future__ import annotations

from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.settings import StackSettings

DEFAULT_KEY_SECRET = "medianest-backup-key"


def ensure_backup_key(settings: StackSettings, secret_name: str = DEFAULT_KEY_SECRET) -> EncryptionKey:
    """Return the key in the Secret block, creating both the block and the escrow file if absent.

    An existing Secret always wins; an existing escrow file is used to recreate a
    lost Secret (e.g. a fresh Prefect database) so old backups stay readable.
    """
    from prefect.blocks.system import Secret

    escrow = settings.backup_key_file
    try:
        key = EncryptionKey.parse(str(Secret.load(secret_name).get()))  # type: ignore[union-attr]
    except ValueError:
        key = EncryptionKey.parse(escrow.read_text()) if escrow.exists() else EncryptionKey.generate()
        Secret(value=key.encoded()).save(secret_name, overwrite=True)
    if not escrow.exists():
        escrow.parent.mkdir(parents=True, exist_ok=True)
        escrow.write_text(key.encoded())
        escrow.chmod(0o600)
    return key
