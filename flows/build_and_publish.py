"""Flow `build-and-publish`: stages 1 and 2 of MediaNest's delivery strategy.

    source ─┬─ quality commands ─ coverage gate ──────────────────────────┐
            ├─ trivy fs + bandit ─ source gate ───────────────────────────┤
            └─ per component: build ─ push ─ scan image ─┬─ image gate ───┴─ sign + attest ─ verify ─ manifest
                                                         └─ SBOM ─ attach ─┘

Components run as independent pipelines, concurrently with the quality and
source gates. Pushing early is safe because signing is the approval: nothing is
signed until every gate has passed, and every deploy verifies signatures first.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import get_run_context
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_docker import DockerHost

from blocks.loading import load_or_default
from blocks.policy import release_policy_for
from blocks.registry import OciRegistry
from blocks.signing import SigningKey
from medianest_delivery.appconfig import DEFAULT_APP_CONFIG, AppConfig, load_app_config
from medianest_delivery.errors import ConfigError
from medianest_delivery.release.manifest import (
    ReleaseImage,
    ReleaseManifest,
    SignatureRef,
    merge_scan_summaries,
)
from medianest_delivery.release.policy import BUILDER_ID
from medianest_delivery.release.refs import parse_image_reference, require_tag, tag_from_version
from medianest_delivery.release.source import SourceInfo, tree_digest
from medianest_delivery.release.workspace import config_path_in_repository
from medianest_delivery.renderers import release_waivers_markdown
from medianest_delivery.settings import StackSettings
from tasks.build import build_image, image_reference, inspect_base_image, oci_labels, push_image
from tasks.quality import gate_coverage, run_quality_command
from tasks.release import (
    collect_stage_timings,
    confirm_ref,
    fetch_source,
    publish_release_manifest,
    resolve_source,
)
from tasks.sbom import file_digests, generate_sbom
from tasks.scan import (
    gate_security,
    record_image_scan,
    scan_image,
    scan_source_sast,
    scan_source_trivy,
    trivy_db_state,
)
from tasks.signing import (
    attach_sbom,
    fingerprint,
    load_public_key_pem,
    sign_image,
    sign_release_manifest,
    verify_image,
)


def _load_blocks(
    settings: StackSettings, registry_block: str | None, signing_key_block: str | None, docker_host_block: str | None
) -> tuple[OciRegistry, SigningKey, DockerHost]:
    registry = load_or_default(OciRegistry, registry_block, OciRegistry(host=settings.registry_host))
    signing_key = load_or_default(SigningKey, signing_key_block, SigningKey())
    docker_host = load_or_default(DockerHost, docker_host_block, DockerHost(base_url=settings.docker_host))
    return registry, signing_key, docker_host


def _submit_quality(config: AppConfig, source: SourceInfo) -> list[PrefectFuture[Any]]:
    """Commands start as soon as the commands they need have passed; the coverage gate goes last."""
    by_name: dict[str, PrefectFuture[Any]] = {}
    for command in config.quality.commands:
        by_name[command.name] = run_quality_command.submit(
            command.name,
            command.resolved_argv(),
            source.root,
            source.tree_digest,
            command.timeout_seconds,
            wait_for=[by_name[n] for n in command.needs],
        )
    futures = list(by_name.values())
    if config.quality.coverage_report is not None:
        report = str(config.path(config.quality.coverage_report))
        futures.append(
            gate_coverage.submit(report, config.quality.coverage_min, source.tree_digest, wait_for=list(futures))
        )
    return futures


def _quality_result(futures: list[PrefectFuture[Any]], config: AppConfig) -> float | None:
    """Raise the first failure in listed order, else return the coverage."""
    results = [future.result() for future in futures]
    return results[-1] if config.quality.coverage_report is not None else None


@flow(name="build-and-publish", task_runner=ThreadPoolTaskRunner(max_workers=8), log_prints=True)
def build_and_publish(
    app_config: str | None = None,
    git_ref: str | None = None,
    repository: str | None = None,
    version: str | None = None,
    version_suffix: str = "",
    components: list[str] | None = None,
    registry_block: str | None = None,
    signing_key_block: str | None = None,
    docker_host_block: str | None = None,
    releases_dir: str | None = None,
    enforce_gates: bool = True,
    release_policy_block: str | None = None,
    triggered_by_ref: str | None = None,
) -> ReleaseManifest:
    """Quality gate, security scans, concurrent builds, push by digest, SBOMs, signing, verification.

    With ``enforce_gates=False`` findings are reported but do not stop the run, and
    nothing is signed: such a release is for inspection and can never be deployed.
    Each image's scan is attested; the release policy's waivers for a scan that
    could not run are recorded in that attestation and in the manifest.

    With ``repository`` (a git URL or path) the flow fetches it into the
    worker's source cache, resolves ``git_ref`` (branch, tag or SHA; default
    the repository's HEAD) to a commit and builds exactly that commit's tree;
    ``app_config`` is then the path of delivery.yaml inside the repository
    (default ``delivery.yaml``). ``version`` defaults to the app config's, and
    ``version_suffix`` is appended (feature-ci: the branch).
    ``triggered_by_ref`` is the branch or tag CI ran on (``github.ref``) when
    ``git_ref`` is its commit: once the commit is proven to be on it, the release
    records that ref instead of the SHA (so ``allowed_refs`` policies hold).
    Without ``repository``, ``app_config`` is a file on the
    worker (default: the sample app) and ``git_ref`` must be what is checked
    out there.

    Returns the release manifest that `deliver` takes as input.
    """
    logger = get_run_logger()
    settings = StackSettings()
    checkout, in_repository = None, None
    if triggered_by_ref is not None and repository is None:
        raise ConfigError("triggered_by_ref names the branch of a commit fetched from a repository: pass repository")
    if repository is not None:
        in_repository = config_path_in_repository(app_config)
        checkout = fetch_source(repository, git_ref, str(settings.sources_dir))
        app_config = str(checkout.root / in_repository)
    config = load_app_config(app_config or DEFAULT_APP_CONFIG)
    selected = config.select(components)
    release_version = (version or config.version) + version_suffix
    version_tag = tag_from_version(release_version)
    registry, signing_key, docker_host = _load_blocks(settings, registry_block, signing_key_block, docker_host_block)
    trivy_cache = str(settings.trivy_cache_dir)
    ignore_file = str(config.path(config.security.ignore_file)) if config.security.ignore_file else None
    run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    policy = release_policy_for(config, release_policy_block)  # a malformed policy fails before any work
    waivers = [w.describe() for w in policy.waivers if w.expires >= dt.datetime.now(dt.UTC).date()]

    # A fetched commit is checked out detached in its own worktree: the checkout names the ref, not git.
    source = resolve_source(str(config.root), None if checkout else git_ref)
    built_ref = checkout.full_ref if checkout else source.built_ref
    if checkout is not None and repository is not None and triggered_by_ref is not None:
        built_ref = confirm_ref(repository, checkout.sha, triggered_by_ref, str(settings.sources_dir))
    sha_tag = require_tag(
        source.git_sha if not source.dirty else f"{source.git_sha[:12]}-dirty-{source.tree_digest[7:19]}"
    )
    tags = [sha_tag, version_tag]
    for c in selected:  # fail before any work if the registry block makes an invalid reference
        parse_image_reference(f"{registry.image_name(c.name)}:{version_tag}")
    out_dir = Path(releases_dir or settings.releases_dir) / config.name / f"{release_version}-{source.git_sha[:12]}"
    if source.dirty:
        logger.warning("working tree is dirty: images are tagged %s, not the bare commit", sha_tag)
    source_uri = checkout.repository if checkout else (config.source or f"file://{config.root}")

    # Stage 1, code quality and source security, beside the component pipelines.
    quality = _submit_quality(config, source)
    source_scans = [
        scan_source_trivy.submit(source.root, source.tree_digest, trivy_cache),
        scan_source_sast.submit(source.root, config.security.sast_paths, source.tree_digest),
    ]
    source_gate = gate_security.submit(
        "source",
        source_scans,
        config.security.fail_on,
        config.security.forbidden_licenses,
        ignore_file,
        str(out_dir / "source.sarif"),
        enforce_gates,
    )

    # Stage 2, per component: build, push, scan the pushed image, SBOM.
    base_image_id = inspect_base_image.submit(docker_host, settings.base_image)
    digests: dict[str, PrefectFuture[str]] = {}
    image_scans: dict[str, PrefectFuture[dict[str, Any]]] = {}
    scan_attestations: dict[str, PrefectFuture[dict[str, Any]]] = {}
    sboms: dict[str, PrefectFuture[dict[str, str]]] = {}
    for c in selected:
        labels = oci_labels(
            revision=source.git_sha,
            source=source_uri,
            created=source.commit_time,
            version=release_version,
            title=f"{config.name}-{c.name}",
        )
        built = build_image.submit(
            c.name,
            str(config.path(c.context)),
            c.dockerfile,
            tree_digest(config.path(c.context)),
            settings.base_image,
            base_image_id,
            labels,
            docker_host,
        )
        digests[c.name] = push_image.submit(c.name, built, registry.image_name(c.name), tags, registry, docker_host)
        reference = image_reference.submit(registry.image_name(c.name), digests[c.name])
        image_scans[c.name] = scan_image.submit(
            c.name,
            reference,
            trivy_cache,
            str(out_dir),
            registry.plain_http,
            registry=registry,
            database=trivy_db_state(trivy_cache),
        )
        sboms[c.name] = generate_sbom.submit(c.name, reference, image_scans[c.name], str(out_dir / "sbom"))
        scan_attestations[c.name] = record_image_scan.submit(
            c.name,
            image_scans[c.name],
            config.security.fail_on,
            config.security.forbidden_licenses,
            ignore_file,
            waivers,
        )
    image_gate = gate_security.submit(
        "images",
        list(image_scans.values()),
        config.security.fail_on,
        config.security.forbidden_licenses,
        ignore_file,
        str(out_dir / "images.sarif"),
        enforce_gates,
    )

    # Signing is the approval: it waits for every gate. Results are read in
    # causal order so that a failure surfaces as its root cause (a push that
    # failed), not as a downstream task that never ran.
    coverage = _quality_result(quality, config)
    upstream: list[PrefectFuture[Any]] = [
        *digests.values(),
        *image_scans.values(),
        *sboms.values(),
        *scan_attestations.values(),
    ]
    for future in upstream:
        future.result()
    gates = [source_gate.result(), image_gate.result()]
    public_key = load_public_key_pem(signing_key)
    key_fingerprint = fingerprint(public_key)
    signatures: dict[str, PrefectFuture[SignatureRef]] = {}
    verifications: dict[str, PrefectFuture[dict[str, Any]]] = {}
    if not enforce_gates:
        logger.warning("gates were not enforced: nothing is signed, and deliver refuses these images")
    for c in selected if enforce_gates else []:  # a release whose gates were not enforced is never signed
        digest = digests[c.name].result()
        sbom_files = sboms[c.name].result()
        attached = attach_sbom.submit(
            c.name, registry.repository(c.name), digest, sbom_files, file_digests(sbom_files), registry
        )
        provenance = {
            "source_uri": source_uri,
            "git_sha": source.git_sha,
            "dockerfile": c.dockerfile,
            "component": c.name,
            "version": release_version,
            "base_image_digest": base_image_id.result(),
            "builder_id": BUILDER_ID,
            "invocation_id": run_id,
            "started_on": source.commit_time,
            "finished_on": dt.datetime.now(dt.UTC).isoformat(),
            "source_ref": built_ref,
            "source_dirty": source.dirty,
        }
        signatures[c.name] = sign_image.submit(
            c.name,
            registry.repository(c.name),
            digest,
            provenance,
            sbom_files,
            file_digests(sbom_files),
            scan_attestations[c.name].result(),
            key_fingerprint,
            registry,
            signing_key,
            wait_for=[attached],
        )
        # Only the version tag is immutable: the commit tag moves when one commit is released twice.
        verifications[c.name] = verify_image.submit(
            registry.repository(c.name), digest, [version_tag], public_key, registry, wait_for=[signatures[c.name]]
        )
    verified = {name: future.result() for name, future in verifications.items()}
    finished = [
        *quality,
        *source_scans,
        source_gate,
        image_gate,
        base_image_id,
        *digests.values(),
        *image_scans.values(),
        *sboms.values(),
        *scan_attestations.values(),
        *signatures.values(),
        *verifications.values(),
    ]
    timings = collect_stage_timings(run_id, [str(f.task_run_id) for f in finished])

    manifest = ReleaseManifest(
        app=config.name,
        version=release_version,
        git_sha=source.git_sha,
        git_commit_time=source.commit_time,
        git_ref=built_ref if checkout else git_ref,
        source_dirty=source.dirty,
        source_repository=checkout.repository if checkout else None,
        app_config_path=in_repository if checkout else None,
        created=dt.datetime.now(dt.UTC).isoformat(),
        flow_run_id=run_id,
        registry=registry.host,
        public_key_pem=public_key,
        images=[
            ReleaseImage(
                component=c.name,
                repository=registry.image_name(c.name),
                digest=digests[c.name].result(),
                tags=tags,
                sbom_files=sboms[c.name].result(),
                signature=signatures[c.name].result() if c.name in signatures else None,
                verified=bool(verified.get(c.name)),
            )
            for c in selected
        ],
        quality={"coverage_percent": coverage, "commands": [c.name for c in config.quality.commands]},
        scan=merge_scan_summaries(gates),
        stage_seconds=timings.seconds,
        cached_stages=timings.cached,
        waivers=sorted(
            {w for future in scan_attestations.values() for w in future.result()["scanner"]["result"]["waivers"]}
        ),
    )
    if manifest.waivers:
        logger.warning("release %s ships under waivers: %s", release_version, "; ".join(manifest.waivers))
        create_markdown_artifact(
            key="release-waivers",
            markdown=release_waivers_markdown(manifest),
            description=f"{config.name} {release_version}: waived policy rules",
        )
    if enforce_gates:  # the manifest itself is signed: deploys trust it only through a configured key
        manifest = sign_release_manifest(manifest, signing_key)
    path = publish_release_manifest(manifest, str(Path(releases_dir or settings.releases_dir)))
    logger.info("release manifest written to %s", path)
    return manifest
