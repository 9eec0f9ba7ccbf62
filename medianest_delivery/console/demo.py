"""What `medianest-delivery demo` prints after a run."""

from __future__ import annotations

import time
from typing import Literal

from rich.console import Console
from rich.table import Table

from medianest_delivery.release.manifest import ReleaseManifest
from medianest_delivery.rollout.loadgen import LoadReport
from medianest_delivery.settings import StackSettings


def print_release_summary(console: Console, manifest: ReleaseManifest, settings: StackSettings) -> None:
    images = Table(title=f"{manifest.app} {manifest.version} @ {manifest.git_sha[:12]}")
    for column in ("component", "image (by digest)", "signed", "verified"):
        images.add_column(column, overflow="fold")
    for image in manifest.images:
        signer = f"{image.signature.signer} key {image.signature.key_id}" if image.signature else "no"
        images.add_row(image.component, image.reference, signer, "yes" if image.verified else "NO")
    console.print(images)

    findings = Table(title=f"security findings (gate: {manifest.scan.outcome})")
    severities = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
    findings.add_column("scanner")
    for severity in severities:
        findings.add_column(severity, justify="right")
    for scanner, counts in manifest.scan.by_scanner.items():
        findings.add_row(scanner, *[str(counts.get(s, 0)) for s in severities])
    console.print(findings)
    for note in manifest.scan.notes:
        console.print(f"[yellow]note:[/] {note}")
    for waiver in manifest.waivers:
        console.print(f"[bold yellow]WAIVED:[/] {waiver}")
    coverage = manifest.quality.get("coverage_percent")
    if isinstance(coverage, float):
        console.print(f"coverage: {coverage:.1f}%")
    timings = ", ".join(
        f"{k} {v:.1f}s" + (" (cached)" if k in manifest.cached_stages else "")
        for k, v in manifest.stage_seconds.items()
    )
    console.print(f"stages: {timings}")
    ui = f"http://127.0.0.1:{settings.prefect_port}"
    if manifest.flow_run_id:
        console.print(f"flow run: {ui}/runs/flow-run/{manifest.flow_run_id}")


Strategy = Literal["canary", "blue-green"]
DEMO_RELEASES: list[tuple[str, Strategy, dict[str, str] | None, str]] = [
    ("1.0.0", "canary", None, "v1: first release"),
    ("1.1.0", "canary", None, "v2: canary, healthy"),
    ("1.2.0", "canary", {"MEDIANEST_ERROR_RATE": "0.3"}, "v3: canary with the error knob on"),
    ("1.3.0", "blue-green", None, "v4: blue-green"),
]


def run_delivery_demo(console: Console, settings: StackSettings, app_config: str) -> None:
    """v1 to production, v2 by canary, v3 (errors injected) rolled back, v4 by blue-green, under load."""
    from flows.build_and_publish import build_and_publish
    from flows.deliver import deliver, validate_in_staging
    from medianest_delivery.errors import RolloutFailedError
    from medianest_delivery.rollout.loadgen import LoadGenerator
    from medianest_delivery.rollout.topology import environment_plan

    plan = environment_plan("production")
    rows = []
    ui = f"http://127.0.0.1:{settings.prefect_port}"
    for version, strategy, fault, label in DEMO_RELEASES:
        console.rule(label)
        manifest = build_and_publish(app_config=app_config, version=version)
        if version == DEMO_RELEASES[0][0]:
            print_release_summary(console, manifest, settings)
            # Stage 3 once, before the demo's own production load starts (it would skew the performance check).
            validate_in_staging(release_manifest=manifest, app_config=app_config)
        # Production-like traffic for as long as a rollout may take with the judge's default settings.
        api = LoadGenerator(f"http://127.0.0.1:{plan.router_port(0)}/api/media", 50, 45000, 900).start()
        web = LoadGenerator(f"http://127.0.0.1:{plan.router_port(1)}/", 10, 9000, 900).start()
        started = time.monotonic()
        try:
            summary = deliver(
                release_manifest=manifest,
                strategy=strategy,
                auto_approve=True,
                app_config=app_config,
                staging_environment=None,
                fault_injection=fault,
            )
        except RolloutFailedError as exc:
            summary = exc.summary
        finally:
            seen, pages = api.stop(), web.stop()
        rows.append(
            (
                label,
                summary["outcome"],
                (summary["reason"] or "")[:70],
                f"{time.monotonic() - started:.0f}s",
                f"{seen.failed + pages.failed}/{seen.total + pages.total}"
                if version != DEMO_RELEASES[0][0]
                else _first_release_failures(seen, pages),
                f"{ui}/runs/flow-run/{summary['flow_run_id']}",
            )
        )
    table = Table(title="what the demo did in production")  # client failures: every request the load sent
    for column in ("release", "outcome", "reason", "took", "client failures", "deliver flow run"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _first_release_failures(*reports: LoadReport) -> str:
    """A first release: the load starts before production exists, so count from the first answer (and say so)."""
    answered = [r.since_first_answer() for r in reports]
    before = sum(r.total for r in reports) - sum(r.total for r in answered)
    return f"{sum(r.failed for r in answered)}/{sum(r.total for r in answered)} (+{before} before it existed)"
