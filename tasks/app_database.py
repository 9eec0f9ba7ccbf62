"""Where each environment's app database password lives: a Prefect Secret block per app role."""

from __future__ import annotations

import contextlib
import secrets
from typing import cast

from prefect.blocks.system import Secret
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound


def secret_block_name(role: str) -> str:
    """``medianest_production_app`` -> ``medianest-production-app-db-password`` (block names take dashes)."""
    return f"{role.replace('_', '-')}-db-password"


def app_database_password(role: str) -> str:
    """The role's password from its Secret block, generated (and saved) on first use; never logged."""
    name = secret_block_name(role)
    try:
        return _stored(name)
    except (ValueError, ObjectNotFound):
        pass  # first deploy of this environment
    with contextlib.suppress(ValueError, ObjectAlreadyExists):  # a concurrent deploy saved one first: both use it
        Secret(value=secrets.token_urlsafe(32)).save(name, overwrite=False)
    return _stored(name)


def _stored(name: str) -> str:
    secret = cast(Secret[str], Secret.load(name, validate=False))
    return str(secret.get())


def forget_app_database_password(role: str) -> None:
    """Delete the role's Secret block (a torn-down preview): nothing is left to leak."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(secret_block_name(role), "secret")
        except ObjectNotFound:
            return
        client.delete_block_document(document.id)
