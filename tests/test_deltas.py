from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from tracker.deltas import AssetDelta, apply_deltas, compute_deltas


def test_baseline_has_no_deltas() -> None:
    assert compute_deltas(None, {"xch": 5, "a": 1}) == []


def test_unchanged_assets_get_no_row() -> None:
    assert compute_deltas({"xch": 5, "a": 1}, {"xch": 5, "a": 1}) == []


def test_changed_appeared_and_disappeared() -> None:
    deltas = compute_deltas({"xch": 5, "gone": 7}, {"xch": 8, "new": 3})
    assert sorted(deltas, key=lambda d: d.asset) == [
        AssetDelta("gone", 7, 0),
        AssetDelta("new", 0, 3),
        AssetDelta("xch", 5, 8),
    ]
    assert {d.asset: d.delta_mojos for d in deltas} == {"gone": -7, "new": 3, "xch": 3}


def test_zero_and_absent_are_the_same_balance() -> None:
    assert compute_deltas({"a": 0}, {}) == []
    assert compute_deltas({}, {"a": 0}) == []
    assert compute_deltas({"a": 4}, {"a": 0}) == [AssetDelta("a", 4, 0)]


balances = st.dictionaries(
    st.sampled_from(["xch", "a", "b", "c", "d"]), st.integers(min_value=0, max_value=2**63 - 1)
)


@given(st.lists(balances, min_size=1, max_size=12))
def test_replaying_deltas_reproduces_every_snapshot(snapshots: list[dict[str, int]]) -> None:
    state = dict(snapshots[0])
    for previous, current in itertools.pairwise(snapshots):
        deltas = compute_deltas(previous, current)
        assert len({d.asset for d in deltas}) == len(deltas)
        assert all(d.delta_mojos != 0 for d in deltas)
        state = apply_deltas(state, deltas)
        assert state == {asset: mojos for asset, mojos in current.items() if mojos}
