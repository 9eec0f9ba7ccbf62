"""The release manifest: one JSON document per build-and-publish run.

Later flows (deliver, rollback) take it as input, so its shape is a contract:
extend it with new optional fields, never repurpose old ones.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medianest_delivery.errors import ConfigError
from medianest_delivery.release.workspace import config_path_in_repository

MANIFEST_SCHEMA = "medianest.release/v1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignatureRef(_Model):
    signature_tag: str
    attestation_tag: str
    sbom_tag: str
    key_id: str
    signer: str = Field(description="'cosign' binary or the built-in 'cryptography' signer")
    predicate_types: list[str] = Field(default_factory=list)


class ReleaseImage(_Model):
    component: str
    repository: str = Field(description="registry/repository, no tag")
    digest: str
    tags: list[str]
    size_bytes: int | None = None
    sbom_files: dict[str, str] = Field(default_factory=dict, description="format -> path")
    signature: SignatureRef | None = None
    verified: bool = False

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


class ScanSummary(_Model):
    outcome: str
    by_scanner: dict[str, dict[str, int]] = Field(default_factory=dict)
    blocking: int = 0
    suppressed: int = 0
    expired_ignores: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    sarif_file: str | None = None


def merge_scan_summaries(summaries: list[ScanSummary]) -> ScanSummary:
    """One summary for the manifest: worst outcome, summed counts, all notes."""
    by_scanner: dict[str, dict[str, int]] = {}
    for summary in summaries:
        for scanner, counts in summary.by_scanner.items():
            merged = by_scanner.setdefault(scanner, {})
            for severity, count in counts.items():
                merged[severity] = merged.get(severity, 0) + count
    return ScanSummary(
        outcome="fail" if any(s.outcome == "fail" for s in summaries) else "pass",
        by_scanner=by_scanner,
        blocking=sum(s.blocking for s in summaries),
        suppressed=sum(s.suppressed for s in summaries),
        expired_ignores=sorted({e for s in summaries for e in s.expired_ignores}),
        notes=sorted({n for s in summaries for n in s.notes}),
        sarif_file=next((s.sarif_file for s in summaries if s.sarif_file), None),
    )


class ManifestSignature(_Model):
    """ECDSA signature (base64) over the manifest's canonical JSON, by the key with this id (release/trust.py)."""

    key_id: str
    signature: str


class ReleaseManifest(_Model):
    schema_: str = Field(default=MANIFEST_SCHEMA, alias="schema")
    app: str
    version: str
    git_sha: str
    git_commit_time: str
    git_ref: str | None = None  # in full (refs/heads/main) when built from a repository
    source_dirty: bool = False
    # The repository the commit was fetched from and where delivery.yaml sits in it (None: a local checkout).
    source_repository: str | None = None
    app_config_path: str | None = None
    created: str
    flow_run_id: str | None = None
    registry: str
    public_key_pem: str = ""
    images: list[ReleaseImage]
    quality: dict[str, object] = Field(default_factory=dict)
    scan: ScanSummary
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    # Stages whose results all came from Prefect's cache (their seconds are the lookup).
    cached_stages: list[str] = Field(default_factory=list)
    # Release-policy waivers this release was built under (who, why, until when), as its scan attestations record.
    waivers: list[str] = Field(default_factory=list)
    manifest_signature: ManifestSignature | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("app_config_path")
    @classmethod
    def _inside_the_repository(cls, value: str | None) -> str | None:
        # Joined onto the commit's worktree before the manifest is verified: never an absolute path or '..'.
        return None if value is None else config_path_in_repository(value)

    def image(self, component: str) -> ReleaseImage:
        for image in self.images:
            if image.component == component:
                return image
        raise ConfigError(f"release {self.version} has no image for component {component!r}")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


def load_release_manifest(path: str | Path) -> ReleaseManifest:
    manifest_path = Path(path)
    try:
        return ReleaseManifest.model_validate(json.loads(manifest_path.read_text()))
    except FileNotFoundError as exc:
        raise ConfigError(f"release manifest {manifest_path} does not exist") from exc
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ConfigError(f"release manifest {manifest_path} is invalid: {exc}") from exc


class ReleaseStore:
    """The one place that knows where release manifests live on disk.

    <root>/<app>/<version>-<sha12>.json   one file per published release
    <root>/<app>/latest.json              the newest published release of the app
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, manifest: ReleaseManifest) -> Path:
        return self.root / manifest.app / f"{manifest.version}-{manifest.git_sha[:12]}.json"

    def latest_path(self, app: str) -> Path:
        return self.root / app / "latest.json"

    def save(self, manifest: ReleaseManifest) -> Path:
        """Write the release's own file and point latest.json at its content; returns the release's file."""
        path = self.path(manifest)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = manifest.to_json()
        for target in (path, self.latest_path(manifest.app)):
            with tempfile.NamedTemporaryFile("w", dir=target.parent, suffix=".partial", delete=False) as partial:
                partial.write(text)
            Path(partial.name).replace(target)  # readers never see half a manifest, concurrent writers never collide
        return path

    def load(self, path: str | Path) -> ReleaseManifest:
        return load_release_manifest(path)


def resolve_release(release: ReleaseManifest | str | Path) -> ReleaseManifest:
    """Flows take a release as the model itself (in-process callers, deployments with JSON) or a manifest file."""
    return release if isinstance(release, ReleaseManifest) else load_release_manifest(release)
