"""A priced history several value tests read: two addresses over three months, with prices."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine

from tracker.domain import Asset, Observation, WatchedAddress
from tracker.reports.pricebook import ValueRule
from tracker.store.prices import PriceRecord, PriceStore
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset

MAIN, COLD = make_address(51), make_address(52)
SBX = make_asset(0x5B)
XCH = 10**12
LONG = ValueRule.of("USD", 30 * 86_400)  # every snapshot below is priced
SHORT = ValueRule.of("USD", 7200)  # the default: some are not


def day(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


SNAPSHOTS = [
    (MAIN, "2026-01-15T10:00", {"xch": 10 * XCH, SBX: 1000}),
    (MAIN, "2026-01-20T10:00", {"xch": 12 * XCH, SBX: 1000}),
    (COLD, "2026-02-10T10:00", {"xch": 100 * XCH}),
    (MAIN, "2026-03-05T10:00", {"xch": 12 * XCH, SBX: 1500}),
    (MAIN, "2026-03-06T10:00", {"xch": 7 * XCH, SBX: 1500}),
    (COLD, "2026-03-10T10:00", {"xch": 90 * XCH}),
]
# Observed half an hour before the snapshots: XCH in USD, SBX in XCH.
PRICES = [
    ("xch", "USD", "20", "2026-01-15T09:30"),
    (SBX, "xch", "0.01", "2026-01-15T09:30"),
    ("xch", "USD", "21", "2026-01-20T09:30"),
    ("xch", "USD", "25", "2026-02-10T09:30"),
    ("xch", "USD", "30", "2026-03-05T09:30"),
    (SBX, "xch", "0.02", "2026-03-05T09:30"),
    ("xch", "USD", "32", "2026-03-06T09:30"),
    ("xch", "USD", "28", "2026-03-10T09:30"),
]


def build(engine: Engine) -> None:
    store = SnapshotStore(engine)
    store.sync_addresses(
        [WatchedAddress(MAIN, "main"), WatchedAddress(COLD, "cold")], day("2026-01-01")
    )
    infos = {"xch": Asset("xch", "Chia", "XCH"), SBX: Asset(SBX, "Spacebucks", "SBX")}
    for address, when, held in SNAPSHOTS:
        store.record_one(Observation(address, day(when), day(when), held, infos))
    PriceStore(engine).record(
        [PriceRecord(a, q, Decimal(p), day(w), "test") for a, q, p, w in PRICES]
    )
