"""The release manifest's scan summary: several gate summaries merged into one, table-driven."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianest_delivery.release.manifest import ScanSummary, merge_scan_summaries


@pytest.mark.parametrize(
    ("name", "summaries", "expected"),
    [
        ("empty list passes with nothing counted", [], ScanSummary(outcome="pass")),
        (
            "one summary comes back unchanged",
            [
                ScanSummary(
                    outcome="fail",
                    by_scanner={"secret": {"CRITICAL": 1}},
                    blocking=1,
                    suppressed=2,
                    expired_ignores=["CVE-1"],
                    notes=["a note"],
                    sarif_file="fs.sarif",
                )
            ],
            ScanSummary(
                outcome="fail",
                by_scanner={"secret": {"CRITICAL": 1}},
                blocking=1,
                suppressed=2,
                expired_ignores=["CVE-1"],
                notes=["a note"],
                sarif_file="fs.sarif",
            ),
        ),
        ("all pass is a pass", [ScanSummary(outcome="pass"), ScanSummary(outcome="pass")], ScanSummary(outcome="pass")),
        (
            "a fail anywhere wins over passes",
            [ScanSummary(outcome="pass"), ScanSummary(outcome="fail"), ScanSummary(outcome="pass")],
            ScanSummary(outcome="fail"),
        ),
        (
            "counts summed per scanner and severity",
            [
                ScanSummary(
                    outcome="pass", by_scanner={"vulnerability": {"HIGH": 1, "LOW": 2}}, blocking=1, suppressed=1
                ),
                ScanSummary(
                    outcome="pass",
                    by_scanner={"vulnerability": {"HIGH": 3}, "secret": {"CRITICAL": 1}},
                    blocking=2,
                    suppressed=0,
                ),
            ],
            ScanSummary(
                outcome="pass",
                by_scanner={"vulnerability": {"HIGH": 4, "LOW": 2}, "secret": {"CRITICAL": 1}},
                blocking=3,
                suppressed=1,
            ),
        ),
        (
            "notes and expired ignores deduplicated and sorted",
            [
                ScanSummary(outcome="pass", expired_ignores=["CVE-3", "CVE-1"], notes=["trivy: b", "bandit: a"]),
                ScanSummary(outcome="pass", expired_ignores=["CVE-1", "CVE-2"], notes=["bandit: a", "trivy: c"]),
            ],
            ScanSummary(
                outcome="pass",
                expired_ignores=["CVE-1", "CVE-2", "CVE-3"],
                notes=["bandit: a", "trivy: b", "trivy: c"],
            ),
        ),
        (
            "first SARIF file kept",
            [
                ScanSummary(outcome="pass"),
                ScanSummary(outcome="pass", sarif_file="image.sarif"),
                ScanSummary(outcome="pass", sarif_file="fs.sarif"),
            ],
            ScanSummary(outcome="pass", sarif_file="image.sarif"),
        ),
    ],
)
def test_merge_scan_summaries(name: str, summaries: list[ScanSummary], expected: ScanSummary) -> None:
    """Worst outcome wins, counts add up per scanner and severity, notes and expired ignores merge sorted."""
    assert merge_scan_summaries(summaries) == expected, name


def test_merge_does_not_change_its_inputs() -> None:
    """Summing counts builds new dicts: the summaries passed in keep their own counts."""
    first = ScanSummary(outcome="pass", by_scanner={"vulnerability": {"HIGH": 1}})
    second = ScanSummary(outcome="pass", by_scanner={"vulnerability": {"HIGH": 2}})
    merge_scan_summaries([first, second])
    assert first.by_scanner == {"vulnerability": {"HIGH": 1}}
    assert second.by_scanner == {"vulnerability": {"HIGH": 2}}


def test_release_store_owns_the_layout(tmp_path: Path) -> None:
    """One file per release under <app>/<version>-<sha12>.json, latest.json beside it, both readable back."""
    from medianest_delivery.release.manifest import ReleaseManifest, ReleaseStore

    manifest = ReleaseManifest(
        app="medianest",
        version="1.2.3",
        git_sha="a" * 40,
        git_commit_time="2026-11-26T00:00:00+00:00",
        created="2026-11-26T00:00:00+00:00",
        registry="127.0.0.1:5000",
        images=[],
        scan=ScanSummary(outcome="pass"),
    )
    store = ReleaseStore(tmp_path)
    path = store.save(manifest)
    assert path == tmp_path / "medianest" / f"1.2.3-{'a' * 12}.json"
    assert store.load(path) == manifest
    assert store.load(store.latest_path("medianest")) == manifest
    assert not list(tmp_path.rglob("*.partial"))
