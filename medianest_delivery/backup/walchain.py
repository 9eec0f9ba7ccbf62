"""WAL segment names, LSNs and the continuity of an archive (pure).

A segment file name is 24 hex digits: timeline, then the segment number split
into "log" (high 32 bits of the LSN) and "seg" (which segment within the 4 GiB
log). With 16 MiB segments there are 256 per log. Example: LSN 0/3000028 on
timeline 1 lies in segment 000000010000000000000003.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

SEGMENT_NAME = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True, order=True)
class Segment:
    timeline: int
    number: int  # absolute segment number: LSN // segment size

    def name(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
        per_log = 0x100000000 // segment_size
        return f"{self.timeline:08X}{self.number // per_log:08X}{self.number % per_log:08X}"


def parse_segment(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment | None:
    """The segment a WAL file name denotes; None for .history, .backup and .partial files."""
    match = SEGMENT_NAME.match(name)
    if not match:
        return None
    timeline, log, seg = (int(part, 16) for part in match.groups())
    return Segment(timeline, log * (0x100000000 // segment_size) + seg)


def parse_lsn(lsn: str) -> int:
    """'16/B374D848' -> integer byte position; raises ValueError naming the bad text."""
    high, sep, low = lsn.partition("/")
    if not sep:
        raise ValueError(f"LSN {lsn!r} is not of the form X/Y")
    try:
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError as exc:
        raise ValueError(f"LSN {lsn!r} is not hexadecimal") from exc


def segment_of(lsn: str, timeline: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment:
    return Segment(timeline, parse_lsn(lsn) // segment_size)


@dataclass(frozen=True)
class Gap:
    timeline: int
    first_missing: str
    last_missing: str
    count: int


def find_gaps(names: list[str], segment_size: int = DEFAULT_SEGMENT_SIZE) -> list[Gap]:
    """Holes in each timeline's run of archived segments (between its first and last)."""
    by_timeline: dict[int, list[int]] = {}
    for name in names:
        segment = parse_segment(name, segment_size)
        if segment is not None:
            by_timeline.setdefault(segment.timeline, []).append(segment.number)
    gaps = []
    for timeline, numbers in sorted(by_timeline.items()):
        ordered = sorted(set(numbers))
        for before, after in itertools.pairwise(ordered):
            if after - before > 1:
                gaps.append(
                    Gap(
                        timeline,
                        Segment(timeline, before + 1).name(segment_size),
                        Segment(timeline, after - 1).name(segment_size),
                        after - before - 1,
                    )
                )
    return gaps


def missing_for_recovery(
    names: list[str], start: Segment, end: Segment, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> list[str]:
    """Segments between a base backup's start and the recovery target that the archive lacks.

    Only the start timeline is followed: a promotion in between shows up as
    missing segments on the old timeline, which is the honest answer for a
    repository that does not hold the new timeline's history.
    """
    have = {s.number for n in names if (s := parse_segment(n, segment_size)) and s.timeline == start.timeline}
    return [Segment(start.timeline, n).name(segment_size) for n in range(start.number, end.number + 1) if n not in have]


def expired_segments(names: list[str], oldest_needed: Segment, segment_size: int = DEFAULT_SEGMENT_SIZE) -> list[str]:
    """Segments older than the oldest kept base backup needs: safe to delete."""
    return [
        n
        for n in names
        if (s := parse_segment(n, segment_size)) is not None
        and (s.timeline, s.number) < (oldest_needed.timeline, oldest_needed.number)
    ]
