"""What `medianest-delivery demo` prints after a run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from medianest_delivery.release import ReleaseManifest
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
    coverage = manifest.quality.get("coverage_percent")
    if isinstance(coverage, float):
        console.print(f"coverage: {coverage:.1f}%")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in manifest.stage_seconds.items())
    console.print(f"stages: {timings}")
    ui = f"http://127.0.0.1:{settings.prefect_port}"
    if manifest.flow_run_id:
        console.print(f"flow run: {ui}/runs/flow-run/{manifest.flow_run_id}")
