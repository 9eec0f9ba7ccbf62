"""Artifact text for the flows (pure): already-computed values in, markdown or table rows out.

Flows compute, then pass what these return to `create_markdown_artifact` or
`create_table_artifact` under their own keys; nothing here touches Prefect,
so tests call each renderer directly on hand-made values.
"""

from __future__ import annotations

import datetime as dt

from medianest_delivery.backup.manifest import BackupManifest, ValidationRecord
from medianest_delivery.backup.physical import RecoveryResult, RecoveryTarget
from medianest_delivery.backup.verdicts import ObjectivesReport, RecoveryObjectives
from medianest_delivery.charts import Series, data_uri, line_chart_svg
from medianest_delivery.dora.metrics import DoraReport
from medianest_delivery.release.manifest import ReleaseManifest

SPARK = "▁▂▃▄▅▆▇█"


# DORA (flow dora-report)


def sparkline(values: list[float | None]) -> str:
    """A text chart that renders anywhere Markdown does; '·' marks weeks with no data."""
    known = [v for v in values if v is not None]
    if not known:
        return "·" * len(values)
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    return "".join("·" if v is None else SPARK[round((v - low) / span * (len(SPARK) - 1))] for v in values)


def trend_charts(weeks: list[DoraReport]) -> str:
    """One small SVG line chart per metric, week by week (oldest first); empty without weeks."""
    if not weeks:
        return ""
    labels = [f"W-{len(weeks) - 1 - i}" if i < len(weeks) - 1 else "this week" for i in range(len(weeks))]
    images = []
    for index, metric in enumerate(weeks[-1].metrics):
        svg = line_chart_svg(
            f"{metric.name} ({metric.unit})",
            metric.unit,
            [Series("weekly", [w.metrics[index].value for w in weeks])],
            labels,
            width=480,
            height=200,
        )
        images.append(f"![{metric.name} by week]({data_uri(svg)})")
    return "\n\n".join(images)


def report_rows(report: DoraReport) -> list[dict[str, str]]:
    """One table row per metric: value, band, target and whether the target is met ('n/a' without data)."""
    return [
        {
            "metric": m.name,
            "value": m.display(),
            "band": m.band.value,
            "target": _target(m.name, m.target),
            "meets target": "n/a" if m.meets_target is None else ("yes" if m.meets_target else "no"),
        }
        for m in report.metrics
    ]


def _target(name: str, target: float) -> str:
    if name == "deployment frequency":
        return f"≥ {target:g}/day"
    if name in ("lead time for changes", "time to restore service"):
        return f"< {target / 60:g} min"
    return f"< {target:.0%}"


def dora_report_markdown(
    app: str, environment: str, report: DoraReport, weeks: list[DoraReport], deliver_runs: dict[str, int]
) -> str:
    """The window's table, a sparkline per metric over `weeks` (oldest first) and one chart per metric."""
    table = "\n".join(
        f"| {r['metric']} | {r['value']} | {r['band']} | {r['target']} | {r['meets target']} |"
        for r in report_rows(report)
    )
    trend = "\n".join(
        f"| {m.name} | `{sparkline([w.metrics[i].value for w in weeks])}` | "
        f"{weeks[-1].metrics[i].display() if weeks else 'n/a'} |"
        for i, m in enumerate(report.metrics)
    )
    runs_line = ", ".join(f"{n} {state}" for state, n in sorted(deliver_runs.items())) or "none"
    return (
        f"# DORA: {app} in {environment}\n\n"
        f"{report.window_start:%Y-%m-%d %H:%M} → {report.window_end:%Y-%m-%d %H:%M} UTC: "
        f"{report.deployments} deployments, {report.failures} failed. deliver runs in the window: {runs_line}.\n\n"
        "| metric | value | band | target | meets target |\n|---|---|---|---|---|\n"
        f"{table}\n\n## Weekly trend (oldest → newest, {len(weeks)} weeks)\n\n"
        f"| metric | trend | last week |\n|---|---|---|\n{trend}\n\n{trend_charts(weeks)}\n"
    )


# Logical backups (flows nightly-backup and validate-backup)


def _mb(value: int) -> str:
    return f"{value / 1e6:,.1f} MB"


def backup_markdown(
    manifest: BackupManifest,
    stanza: str,
    run_seconds: float,
    extras: list[BackupManifest],
    retention: list[tuple[str, str, str]],
    retention_dry_run: bool,
) -> str:
    """A stored backup: sizes, speed, WAL position, copies, the other backups taken with it, retention's plan.

    `retention` holds (backup id, action, why) rows as `apply_retention` returns them.
    """
    throughput = manifest.plain_size / max(manifest.duration_s, 1e-6) / 1e6
    rows = "\n".join(f"| {b} | {action} | {why} |" for b, action, why in retention)
    return (
        f"# Backup {manifest.backup_id}\n\n"
        "| field | value |\n|---|---|\n"
        f"| database | {manifest.database} ({stanza}) |\n"
        f"| dump | {manifest.dump_format}, {len(manifest.objects)} object(s) |\n"
        f"| size | {_mb(manifest.plain_size)} plain → {_mb(manifest.size)} stored "
        f"(×{manifest.plain_size / max(manifest.size, 1):.1f}) |\n"
        f"| dump duration | {manifest.duration_s:.1f} s ({throughput:.1f} MB/s) |\n"
        f"| run duration | {run_seconds:.1f} s |\n"
        f"| tables / rows | {len(manifest.row_counts)} / {sum(manifest.row_counts.values()):,} |\n"
        f"| WAL position | {manifest.wal_start_lsn} (timeline {manifest.timeline}) |\n"
        f"| key id | {manifest.key_id} |\n"
        f"| copies | {', '.join(manifest.copies) or 'none'} |\n"
        f"| also stored | {', '.join(m.backup_id for m in extras) or 'nothing'} |\n\n"
        f"## Retention{' (dry run: nothing deleted)' if retention_dry_run else ''}\n\n"
        f"| backup | action | why |\n|---|---|---|\n{rows}\n"
    )


def validation_markdown(
    manifest: BackupManifest,
    record: ValidationRecord,
    objectives: ObjectivesReport,
    targets: RecoveryObjectives,
    app_checks: int,
) -> str:
    """A restore validation's verdict, RTO and RPO against their targets, and every problem found."""
    problem_lines = "\n".join(f"- {p}" for p in record.problems) or "none"
    return (
        f"# Backup validation: {record.verdict.upper()}\n\n"
        "| measure | value | target | status |\n|---|---|---|---|\n"
        f"| RTO (fetch → verified restore) | {objectives.rto_seconds:.1f} s | {targets.rto_seconds / 60:.0f} min "
        f"| {objectives.rto_status} |\n"
        f"| RPO (backup age) | {objectives.rpo_seconds / 3600:.2f} h | {targets.rpo_seconds / 3600:.0f} h "
        f"| {objectives.rpo_status} |\n"
        f"| restore (pg_restore) | {record.restore_seconds or 0:.1f} s | | |\n"
        f"| backup | {manifest.backup_id} ({_mb(manifest.size)}) | | |\n"
        f"| tables checked | {len(manifest.row_counts)} | | |\n"
        f"| app checks | {app_checks} | | |\n\n"
        f"## Problems\n\n{problem_lines}\n"
    )


# Point-in-time recovery (flows pitr-restore and dr-drill)


def pitr_markdown(
    manifest: BackupManifest,
    target: RecoveryTarget,
    result: RecoveryResult,
    reached: bool,
    evidence: str,
    keep_running: bool,
    proof_query: str | None,
    proof: object,
) -> str:
    """Where replay stopped against the target, PostgreSQL's evidence, and the proof query's answer."""
    return (
        f"# Point-in-time restore: {'target reached' if reached else 'TARGET NOT REACHED'}\n\n"
        "| field | value |\n|---|---|\n"
        f"| base backup | {manifest.backup_id} ({manifest.wal_start_lsn}) |\n"
        f"| target | {target.describe()} |\n"
        f"| evidence | {evidence} |\n"
        f"| replayed to | {result.replayed_lsn} |\n"
        f"| last transaction | {result.last_transaction_at} |\n"
        f"| restore + replay | {result.seconds:.1f} s |\n"
        f"| cluster | {'127.0.0.1:' + str(result.port) if keep_running else 'removed'} |\n"
        f"| proof query | {proof_query or '-'} → {proof} |\n"
    )


def dr_drill_markdown(
    manifest: BackupManifest,
    target: RecoveryTarget,
    result: RecoveryResult,
    objectives: ObjectivesReport,
    targets: RecoveryObjectives,
    recovered_until: dt.datetime,
    problems: list[str],
) -> str:
    """The drill's verdict (PASSED only with no problems and both objectives met), RTO and RPO, problems."""
    problem_lines = "\n".join(f"- {p}" for p in problems) or "none"
    return (
        f"# DR drill: {'PASSED' if not problems and objectives.met else 'FAILED'}\n\n"
        "| measure | achieved | target | status |\n|---|---|---|---|\n"
        f"| RTO (loss → restored, checked) | {objectives.rto_seconds:.1f} s | {targets.rto_seconds / 60:.0f} min "
        f"| {objectives.rto_status} |\n"
        f"| RPO (loss − last recovered commit) | {objectives.rpo_seconds:.1f} s | {targets.rpo_seconds / 60:.0f} min "
        f"| {objectives.rpo_status} |\n\n"
        f"Base backup {manifest.backup_id}, replayed to {result.replayed_lsn} ({target.describe()}); "
        f"last recovered commit {recovered_until.isoformat()}.\n\n"
        f"## Problems\n\n{problem_lines}\n"
    )


# Releases (task publish-release-manifest)


def release_markdown(manifest: ReleaseManifest, path: str) -> str:
    """A release: commit, security gate, each image by digest with its signature, and seconds per stage."""
    lines = [
        f"# Release {manifest.app} {manifest.version}",
        "",
        f"- commit `{manifest.git_sha}` ({manifest.git_commit_time}){' — dirty working tree' if manifest.source_dirty else ''}",
        f"- security gate: **{manifest.scan.outcome}** ({manifest.scan.blocking} blocking, {manifest.scan.suppressed} ignored)",
        f"- manifest: `{path}`",
        "",
        "| component | image (by digest) | signed | SBOM tag |",
        "|---|---|---|---|",
    ]
    for image in manifest.images:
        signed = f"{image.signature.signer}, key {image.signature.key_id}" if image.signature else "no"
        sbom = image.signature.sbom_tag if image.signature else "-"
        lines.append(f"| {image.component} | `{image.reference}` | {signed} | `{sbom}` |")
    if manifest.scan.notes:
        lines += ["", "**Notes**", *[f"- {n}" for n in manifest.scan.notes]]
    if manifest.waivers:
        lines += ["", "**WAIVED** (release policy)", *[f"- {w}" for w in manifest.waivers]]
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [
        f"| {stage} | {seconds:.2f}{' (cached)' if stage in manifest.cached_stages else ''} |"
        for stage, seconds in manifest.stage_seconds.items()
    ]
    return "\n".join(lines)


def release_waivers_markdown(manifest: ReleaseManifest) -> str:
    """The waivers a release ships under, loud: each names the rule, who signed it off, why and until when."""
    return "\n".join(
        [
            f"# WAIVED: {manifest.app} {manifest.version} ships under {len(manifest.waivers)} waiver(s)",
            "",
            *[f"- {waiver}" for waiver in manifest.waivers],
            "",
            "Recorded in each image's signed scan attestation and in the release manifest; "
            "deploys honour a waiver only while the release policy still holds it, unexpired.",
        ]
    )


def policy_report_markdown(
    app: str, version: str, environment: str, images: dict[str, dict[str, object]], rules: list[str]
) -> str:
    """What the release policy checked for each image before a deploy, and the waivers it applied."""
    lines = [
        f"# Release policy: {app} {version} → {environment}: **passed**",
        "",
        f"Rules checked: {', '.join(f'`{rule}`' for rule in rules)}",
        "",
        "| component | digest | signatures | attestations | waived |",
        "|---|---|---|---|---|",
    ]
    for component, result in images.items():
        predicates = result.get("predicate_types") or []
        waived = result.get("waived") or []
        lines.append(
            f"| {component} | `{result.get('digest')}` | {result.get('signatures')} | "
            f"{len(predicates) if isinstance(predicates, list) else '-'} | "
            f"{'; '.join(str(w) for w in waived) if isinstance(waived, list) and waived else 'none'} |"
        )
    return "\n".join(lines)
