"""Preview environment names derived from branch names."""

from __future__ import annotations

import re

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.rollout.previews import preview_name


@pytest.mark.parametrize(
    ("name", "branch", "expected"),
    [
        ("plain branch", "main", "preview-main"),
        ("docstring example", "feature/Canary-Analysis", "preview-feature-canary-analysis"),
        ("dots and underscores become dashes", "release_2026.11", "preview-release-2026-11"),
        ("runs of separators collapse to one dash", "fix//double__sep", "preview-fix-double-sep"),
        ("trailing separator is dropped", "feature-", "preview-feature"),
        ("digits kept", "v1.2.3", "preview-v1-2-3"),
        ("slug of exactly 31 characters kept whole", "a" * 31, "preview-" + "a" * 31),
        ("longer slug cut to 31 characters", "a" * 32, "preview-" + "a" * 31),
        ("long branch cut after the slugging", "feature/" + "b" * 100, "preview-feature-" + "b" * 23),
    ],
)
def test_preview_name(name: str, branch: str, expected: str) -> None:
    """A branch becomes `preview-` plus a lower-case slug of letters, digits and single dashes, at most 40 characters."""
    actual = preview_name(branch)
    assert actual == expected, name
    assert len(actual) <= 40, name


@pytest.mark.parametrize(
    ("name", "branch"),
    [
        ("empty", ""),
        ("shell command", "main; rm -rf /"),
        ("command substitution", "feature/$(whoami)"),
        ("option-like", "-x"),
        ("double dot", "x..y"),
        ("space", "branch name"),
        ("lock suffix", "tag.lock"),
        ("trailing slash", "feature/"),
    ],
)
def test_invalid_branches_are_rejected_naming_the_input(name: str, branch: str) -> None:
    """A branch that is not a safe git ref is a ConfigError that quotes the branch as given."""
    with pytest.raises(ConfigError, match=rf"invalid git ref {re.escape(repr(branch))}"):
        preview_name(branch)


def test_a_cut_preview_name_never_ends_in_a_dash() -> None:
    """A branch whose slug is cut right after a separator still gives a name without a trailing dash."""
    name = preview_name("a" * 30 + "/b")
    assert not name.endswith("-")
    assert name == "preview-" + "a" * 30
