"""The release policy as a block: what deploys demand of attestations, kept outside the app's repository."""

from __future__ import annotations

from typing import cast

from prefect.blocks.core import Block
from pydantic import Field

from medianest_delivery.appconfig import AppConfig
from medianest_delivery.errors import ConfigError
from medianest_delivery.release.policy import ReleasePolicy, parse_release_policy


class ReleasePolicyBlock(Block):
    """A release policy document (YAML, the same schema as the app repository's release-policy.yaml).

    A block wins over the app's file: the team that runs production can hold the
    policy where a pull request to the app cannot loosen it.
    """

    _block_type_name = "MediaNest Release Policy"

    document: str = Field(description="the policy as YAML; see examples/medianest/release-policy.yaml")

    def get_client(self) -> ReleasePolicy:
        return parse_release_policy(self.document, f"release policy block {self._block_document_name!r}")


def release_policy_for(config: AppConfig, block_name: str | None) -> ReleasePolicy:
    """The named block's policy, else the app's ``security.release_policy`` file, else the defaults."""
    if block_name:
        return cast(ReleasePolicyBlock, ReleasePolicyBlock.load(block_name)).get_client()
    if config.security.release_policy is None:
        return ReleasePolicy()
    path = config.path(config.security.release_policy)
    if not path.is_file():
        raise ConfigError(f"release policy {path} is configured (security.release_policy) but does not exist")
    return parse_release_policy(path.read_text(), str(path))
