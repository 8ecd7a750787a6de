"""Delta computation: a pure function, so the rule that everything else trusts is easy to test.

An asset missing from a snapshot has a balance of zero; "appeared" and "disappeared" are just
changes from or to zero. Replaying the deltas on the baseline gives back every snapshot.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class AssetDelta(Generic[K]):
    asset: K
    previous_mojos: int
    mojos: int

    @property
    def delta_mojos(self) -> int:
        return self.mojos - self.previous_mojos


def compute_deltas(
    previous: Mapping[K, int] | None, current: Mapping[K, int]
) -> list[AssetDelta[K]]:
    """One delta per asset whose balance differs; none at all for a baseline (no previous)."""
    if previous is None:
        return []
    deltas = [
        AssetDelta(asset, previous.get(asset, 0), mojos)
        for asset, mojos in current.items()
        if previous.get(asset, 0) != mojos
    ]
    deltas.extend(
        AssetDelta(asset, mojos, 0)
        for asset, mojos in previous.items()
        if asset not in current and mojos != 0
    )
    return deltas


def apply_deltas(balances: Mapping[K, int], deltas: Iterable[AssetDelta[K]]) -> dict[K, int]:
    """The balances after ``deltas``, with zero balances dropped (as "not held")."""
    result = {asset: mojos for asset, mojos in balances.items() if mojos}
    for delta in deltas:
        result[delta.asset] = result.get(delta.asset, 0) + delta.delta_mojos
        if result[delta.asset] == 0:
            del result[delta.asset]
    return result
