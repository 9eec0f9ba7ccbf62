"""Artifact renderers on hand-made values (pure): the lines an operator reads in the Prefect UI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from medianest_delivery.backup.manifest import (
    BackupKind,
    BackupManifest,
    StoredEntry,
    ValidationRecord,
    ValidationVerdict,
)
from medianest_delivery.backup.physical import RecoveryResult, RecoveryTarget
from medianest_delivery.backup.verdicts import ObjectivesReport, RecoveryObjectives, assess_objectives
from medianest_delivery.dora.metrics import Band, DoraReport, Metric, compute_dora
from medianest_delivery.release.manifest import ReleaseImage, ReleaseManifest, ScanSummary, SignatureRef
from medianest_delivery.renderers import (
    backup_markdown,
    dora_report_markdown,
    dr_drill_markdown,
    pitr_markdown,
    release_markdown,
    report_rows,
    sparkline,
    trend_charts,
    validation_markdown,
)

T0 = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
DIGEST = "sha256:" + "b" * 64
Decision = tuple[str, str, str]  # retention's (backup id, action, why)
TARGETS = RecoveryObjectives(rto_seconds=30 * 60, rpo_seconds=24 * 3600)


def missing_lines(markdown: str, expected: list[str]) -> list[str]:
    """The expected lines that are not whole lines of `markdown` (empty when all are there)."""
    lines = markdown.splitlines()
    return [line for line in expected if line not in lines]


def manifest(copies: list[str] | None = None) -> BackupManifest:
    return BackupManifest(
        backup_id="b-logical",
        kind=BackupKind.LOGICAL,
        stanza="medianest-production",
        database="medianest",
        started_at=T0,
        finished_at=T0 + dt.timedelta(seconds=12.5),
        wal_start_lsn="0/3000028",
        timeline=1,
        dump_format="custom",
        objects=[StoredEntry(name="dump", key="k", size=3_000_000, sha256="0" * 64, plain_size=12_000_000)],
        row_counts={"media": 1200, "users": 3},
        key_id="key-1",
        copies=copies or [],
    )


# DORA


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("no weeks", [], ""),
        ("no data at all", [None, None, None], "···"),
        ("rising: lowest and highest blocks at the ends", [0.0, 1.0, 2.0], "▁▅█"),
        ("flat: all lowest, no division by zero", [3.0, 3.0], "▁▁"),
        ("gap marks the week without data", [1.0, None, 2.0], "▁·█"),
    ],
)
def test_sparkline(name: str, values: list[float | None], expected: str) -> None:
    """One character per week, scaled between the lowest and highest known value; '·' where there is none."""
    assert sparkline(values) == expected, name


@pytest.mark.parametrize(
    ("name", "metric", "expected"),
    [
        (
            "frequency meets its target",
            Metric("deployment frequency", 2.0, "per day", Band.ELITE, 1.0, True),
            {"value": "2.00/day", "band": "elite", "target": "≥ 1/day", "meets target": "yes"},
        ),
        (
            "lead time target shown in minutes",
            Metric("lead time for changes", 3 * 3600, "seconds", Band.ELITE, 7200, False),
            {"value": "3.0 h", "band": "elite", "target": "< 120 min", "meets target": "no"},
        ),
        (
            "ratio without data",
            Metric("change failure rate", None, "ratio", Band.NONE, 0.05, None),
            {"value": "n/a", "band": "no data", "target": "< 5%", "meets target": "n/a"},
        ),
    ],
)
def test_report_rows(name: str, metric: Metric, expected: dict[str, str]) -> None:
    """Each metric becomes one row: its display value, band, target in the metric's own unit, yes/no/n/a."""
    report = DoraReport(T0 - dt.timedelta(days=1), T0, 2, 0, [metric])
    assert report_rows(report) == [{"metric": metric.name, **expected}], name


def empty_window() -> DoraReport:
    return compute_dora([], T0 - dt.timedelta(days=7), T0)


@pytest.mark.parametrize(
    ("name", "weeks", "runs", "expected"),
    [
        (
            "empty window: no deployments, no runs, times without data",
            [empty_window(), empty_window()],
            {},
            [
                "2026-11-19 02:00 → 2026-11-26 02:00 UTC: 0 deployments, 0 failed. deliver runs in the window: none.",
                "| deployment frequency | 0.00/day | low | ≥ 1/day | no |",
                "| lead time for changes | n/a | no data | < 120 min | n/a |",
                "## Weekly trend (oldest → newest, 2 weeks)",
                "| lead time for changes | `··` | n/a |",
            ],
        ),
        (
            "runs listed by state, alphabetically",
            [empty_window()],
            {"FAILED": 2, "COMPLETED": 5},
            [
                "2026-11-19 02:00 → 2026-11-26 02:00 UTC: 0 deployments, 0 failed. deliver runs in the window: 5 COMPLETED, 2 FAILED."
            ],
        ),
        (
            "no trend weeks: the table still renders",
            [],
            {},
            ["## Weekly trend (oldest → newest, 0 weeks)", "| deployment frequency | `` | n/a |"],
        ),
    ],
)
def test_dora_report_markdown(name: str, weeks: list[DoraReport], runs: dict[str, int], expected: list[str]) -> None:
    """The report names the window, lists each metric with band and target, and a sparkline row per metric."""
    markdown = dora_report_markdown("medianest", "production", empty_window(), weeks, runs)
    assert markdown.startswith("# DORA: medianest in production\n"), name
    assert missing_lines(markdown, expected) == [], name


@pytest.mark.parametrize(("name", "weeks", "charts"), [("no weeks", 0, 0), ("one chart per metric", 3, 5)])
def test_trend_charts(name: str, weeks: int, charts: int) -> None:
    """Each of the five metrics gets one embedded SVG chart; no weeks means no charts rather than an error."""
    markdown = trend_charts([empty_window() for _ in range(weeks)])
    assert markdown.count("data:image/svg+xml;base64,") == charts, name


# Logical backups


@pytest.mark.parametrize(
    ("name", "copies", "extras", "retention", "dry_run", "expected"),
    [
        (
            "no copies, nothing else stored, nothing to expire",
            [],
            [],
            [],
            False,
            ["| copies | none |", "| also stored | nothing |", "## Retention"],
        ),
        (
            "replica copy, configuration backup, dry-run retention",
            ["replica"],
            ["b-config"],
            [("b-new", "keep", "daily"), ("b-old", "delete", "expired")],
            True,
            [
                "| copies | replica |",
                "| also stored | b-config |",
                "## Retention (dry run: nothing deleted)",
                "| b-new | keep | daily |",
                "| b-old | delete | expired |",
            ],
        ),
    ],
)
def test_backup_markdown(
    name: str, copies: list[str], extras: list[str], retention: list[Decision], dry_run: bool, expected: list[str]
) -> None:
    """The backup table shows sizes, compression, speed and rows; retention lists every decision with its reason."""
    others = [manifest().model_copy(update={"backup_id": backup_id}) for backup_id in extras]
    markdown = backup_markdown(manifest(copies), "medianest-production", 14.25, others, retention, dry_run)
    common = [
        "# Backup b-logical",
        "| database | medianest (medianest-production) |",
        "| size | 12.0 MB plain → 3.0 MB stored (×4.0) |",
        "| dump duration | 12.5 s (1.0 MB/s) |",
        "| run duration | 14.2 s |",
        "| tables / rows | 2 / 1,203 |",
    ]
    assert missing_lines(markdown, common + expected) == [], name


@pytest.mark.parametrize(
    ("name", "problems", "objectives", "restore_seconds", "expected"),
    [
        (
            "passed within both objectives",
            [],
            assess_objectives(95.0, 5.5 * 3600, TARGETS),
            42.0,
            [
                "# Backup validation: PASSED",
                "| RTO (fetch → verified restore) | 95.0 s | 30 min | met |",
                "| RPO (backup age) | 5.50 h | 24 h | met |",
                "| restore (pg_restore) | 42.0 s | | |",
                "none",
            ],
        ),
        (
            "failed restore: missed RTO, no restore time, each problem listed",
            ["table media is missing after restore (expected 1200 rows)"],
            assess_objectives(2400.0, 30 * 3600, TARGETS),
            None,
            [
                "# Backup validation: FAILED",
                "| RTO (fetch → verified restore) | 2400.0 s | 30 min | missed |",
                "| RPO (backup age) | 30.00 h | 24 h | missed |",
                "| restore (pg_restore) | 0.0 s | | |",
                "- table media is missing after restore (expected 1200 rows)",
            ],
        ),
    ],
)
def test_validation_markdown(
    name: str, problems: list[str], objectives: ObjectivesReport, restore_seconds: float | None, expected: list[str]
) -> None:
    """The verdict heads the artifact; RTO and RPO are shown against their targets as met or missed."""
    record = ValidationRecord(
        verdict=ValidationVerdict.FAILED if problems else ValidationVerdict.PASSED,
        validated_at=T0,
        restore_seconds=restore_seconds,
        backup_age_seconds=objectives.rpo_seconds,
        problems=problems,
    )
    markdown = validation_markdown(manifest(), record, objectives, TARGETS, 3)
    common = ["| backup | b-logical (3.0 MB) | | |", "| tables checked | 2 | | |", "| app checks | 3 | | |"]
    assert missing_lines(markdown, common + expected) == [], name


# Point-in-time recovery


RESULT = RecoveryResult(
    port=55432,
    data_dir=Path("/tmp/pitr-scratch"),
    replayed_lsn="0/5000060",
    stop_line="recovery stopping before commit of transaction 750",
    last_transaction_at=T0,
    seconds=7.77,
)


@pytest.mark.parametrize(
    ("name", "reached", "keep_running", "proof_query", "proof", "expected"),
    [
        (
            "time target reached, cluster kept for the operator",
            True,
            True,
            "select count(*) from media",
            1200,
            [
                "# Point-in-time restore: target reached",
                "| cluster | 127.0.0.1:55432 |",
                "| proof query | select count(*) from media → 1200 |",
            ],
        ),
        (
            "target missed, cluster removed, no proof query",
            False,
            False,
            None,
            None,
            ["# Point-in-time restore: TARGET NOT REACHED", "| cluster | removed |", "| proof query | - → None |"],
        ),
    ],
)
def test_pitr_markdown(
    name: str, reached: bool, keep_running: bool, proof_query: str | None, proof: object, expected: list[str]
) -> None:
    """The heading says whether replay reached the target; the table gives the evidence and where the cluster is."""
    target = RecoveryTarget(time=T0)
    markdown = pitr_markdown(manifest(), target, RESULT, reached, "the evidence", keep_running, proof_query, proof)
    common = [
        "| target | time 2026-11-26T02:00:00+00:00 |",
        "| evidence | the evidence |",
        "| replayed to | 0/5000060 |",
        "| restore + replay | 7.8 s |",
    ]
    assert missing_lines(markdown, common + expected) == [], name


DRILL_TARGETS = RecoveryObjectives(rto_seconds=30 * 60, rpo_seconds=5 * 60)


@pytest.mark.parametrize(
    ("name", "problems", "objectives", "expected"),
    [
        (
            "restored in time with nothing lost",
            [],
            assess_objectives(60.0, 10.0, DRILL_TARGETS),
            [
                "# DR drill: PASSED",
                "| RTO (loss → restored, checked) | 60.0 s | 30 min | met |",
                "| RPO (loss − last recovered commit) | 10.0 s | 5 min | met |",
                "none",
            ],
        ),
        (
            "missed objective alone fails the drill",
            [],
            assess_objectives(60.0, 600.0, DRILL_TARGETS),
            ["# DR drill: FAILED", "| RPO (loss − last recovered commit) | 600.0 s | 5 min | missed |"],
        ),
        (
            "a problem fails the drill even with objectives met",
            ["marker row 7 is missing after restore"],
            assess_objectives(60.0, 10.0, DRILL_TARGETS),
            ["# DR drill: FAILED", "- marker row 7 is missing after restore"],
        ),
    ],
)
def test_dr_drill_markdown(name: str, problems: list[str], objectives: ObjectivesReport, expected: list[str]) -> None:
    """PASSED needs no problems and both objectives met; otherwise FAILED, with what was missed or wrong."""
    markdown = dr_drill_markdown(manifest(), RecoveryTarget(), RESULT, objectives, DRILL_TARGETS, T0, problems)
    common = [
        "Base backup b-logical, replayed to 0/5000060 (end of archive); "
        "last recovered commit 2026-11-26T02:00:00+00:00."
    ]
    assert missing_lines(markdown, common + expected) == [], name


# Releases


def release(*, dirty: bool, notes: list[str], signed: bool, cached: list[str]) -> ReleaseManifest:
    signature = SignatureRef(signature_tag="s", attestation_tag="a", sbom_tag="b.sbom", key_id="k1", signer="cosign")
    image = ReleaseImage(component="backend", repository="registry/backend", digest=DIGEST, tags=["1.2.0"])
    return ReleaseManifest(
        app="medianest",
        version="1.2.0",
        git_sha="a" * 40,
        git_commit_time="2026-11-26T01:00:00+00:00",
        source_dirty=dirty,
        created="2026-11-26T02:00:00+00:00",
        registry="localhost:5000",
        images=[image.model_copy(update={"signature": signature if signed else None})],
        scan=ScanSummary(outcome="pass", blocking=0, suppressed=2, notes=notes),
        stage_seconds={"build": 12.345, "scan": 0.01},
        cached_stages=cached,
    )


@pytest.mark.parametrize(
    ("name", "manifest_", "expected", "absent"),
    [
        (
            "signed clean release, scan stage cached",
            release(dirty=False, notes=[], signed=True, cached=["scan"]),
            [
                f"- commit `{'a' * 40}` (2026-11-26T01:00:00+00:00)",
                f"| backend | `registry/backend@{DIGEST}` | cosign, key k1 | `b.sbom` |",
                "| build | 12.35 |",
                "| scan | 0.01 (cached) |",
            ],
            ["**Notes**"],
        ),
        (
            "unsigned image from a dirty tree, with scan notes, nothing cached",
            release(dirty=True, notes=["trivy db is 3 days old"], signed=False, cached=[]),
            [
                f"- commit `{'a' * 40}` (2026-11-26T01:00:00+00:00) — dirty working tree",
                f"| backend | `registry/backend@{DIGEST}` | no | `-` |",
                "**Notes**",
                "- trivy db is 3 days old",
                "| scan | 0.01 |",
            ],
            ["| scan | 0.01 (cached) |"],
        ),
    ],
)
def test_release_markdown(name: str, manifest_: ReleaseManifest, expected: list[str], absent: list[str]) -> None:
    """Each image is listed by digest with its signer; stages served from the cache are marked '(cached)'."""
    markdown = release_markdown(manifest_, "releases/medianest/1.2.0-aaaaaaaaaaaa.json")
    common = [
        "# Release medianest 1.2.0",
        "- security gate: **pass** (0 blocking, 2 ignored)",
        "- manifest: `releases/medianest/1.2.0-aaaaaaaaaaaa.json`",
    ]
    assert missing_lines(markdown, common + expected) == [], name
    assert [line for line in absent if line in markdown.splitlines()] == [], name
