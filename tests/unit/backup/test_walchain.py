"""WAL segment names, LSNs, gaps in the archive and which segments may expire, table-driven."""

from __future__ import annotations

import pytest

from medianest_delivery.backup.walchain import (
    Segment,
    expired_segments,
    find_gaps,
    missing_for_recovery,
    parse_lsn,
    parse_segment,
    segment_of,
)


@pytest.mark.parametrize(
    ("lsn", "timeline", "segment"),
    [
        ("0/3000028", 1, "000000010000000000000003"),
        ("0/FFFFFFFF", 1, "0000000100000000000000FF"),
        ("1/0", 2, "000000020000000100000000"),
        ("16/B374D848", 3, "0000000300000016000000B3"),
    ],
)
def test_lsn_to_segment_name(lsn: str, timeline: int, segment: str) -> None:
    """An LSN on a timeline maps to PostgreSQL's segment file name, which parses back to that timeline."""
    assert segment_of(lsn, timeline).name() == segment
    parsed = parse_segment(segment)
    assert parsed is not None
    assert parsed.timeline == timeline


@pytest.mark.parametrize("bad", ["3000028", "0/XYZ", ""])
def test_bad_lsn_is_named(bad: str) -> None:
    """A string that is not `hex/hex` is a ValueError mentioning LSN."""
    with pytest.raises(ValueError, match="LSN"):
        parse_lsn(bad)


def test_history_and_backup_files_are_not_segments() -> None:
    """Timeline history files and backup label files in the archive are not taken for segments."""
    assert parse_segment("00000002.history") is None
    assert parse_segment("000000010000000000000002.00000028.backup") is None


def test_gaps_and_missing_segments() -> None:
    """Gaps are found per timeline; recovery lists every absent segment up to the target; older ones expire."""
    names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000005",
        "00000002.history",
        "000000020000000000000005",
    ]
    gaps = find_gaps(names)
    assert [(g.timeline, g.first_missing, g.last_missing, g.count) for g in gaps] == [
        (1, "000000010000000000000003", "000000010000000000000004", 2)
    ]
    start, end = Segment(1, 2), Segment(1, 6)
    assert missing_for_recovery(names, start, end) == [
        "000000010000000000000003",
        "000000010000000000000004",
        "000000010000000000000006",
    ]
    assert expired_segments(names, Segment(1, 2)) == ["000000010000000000000001"]
