"""The soak test at CI size, and tests of the soak test's own machinery.

The slow tests run the real ``tracker run`` daemon against the fault-injecting fake Spacescan
(tests/support/soak.py has the checks and why they prove what they claim): 30 addresses, at
least 450 address-polls per database with 20 % of answers faulty, then 3 SIGKILLs with
restarts. All phases run at the same time, each with its own fake, database and daemon, so the
whole module takes about as long as one steady phase (~1.5 minutes on 2 cores).
``bench/soak`` runs the same phases one at a time, plus the PostgreSQL outage, which stops the
shared server and so only runs here when asked for with ``TRACKER_SOAK_PG_RESTART=1``.

The fast tests check the checker: a clean history passes, and each kind of corruption (a lost,
duplicated or altered snapshot, an orphan row, a bad answer stored) is caught.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from tracker.domain import XCH_ASSET, Asset, Observation, WatchedAddress
from tracker.store import engine as engines
from tracker.store import migrate
from tracker.store.writer import SnapshotStore

from support import soak
from support.databases import postgres_unavailable, require_postgres
from support.fakeapi import TOKEN_PATH, XCH_PATH, FakeSpacescan, Response, Served
from support.process import wait_for

SETTINGS = soak.SoakSettings(addresses=30, polls=450, kills=3)
"""CI size: every fault kind many times over, 3 kills, in about a minute (bench/soak: more)."""
RESTART_PG = os.environ.get("TRACKER_SOAK_PG_RESTART") == "1"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# -- the soak itself (slow) ------------------------------------------------------------------------


_RUN: dict[str, soak.PhaseResult] = {}
"""The soak's results, once per process: a test runner may tear module fixtures down between
two tests of one module (pytest-xdist does when its queue runs dry), and the soak is too long to
run twice."""


@pytest.fixture(scope="module")
def soak_results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, soak.PhaseResult]:
    """Runs, in parallel and once, the phases the selected tests look at."""
    if _RUN:
        return _RUN
    wanted = set()
    for item in request.session.items:
        if item.module is not request.module:
            continue
        name = getattr(item, "originalname", "")
        phase = {"test_steady_soak": "steady", "test_kill_and_restart": "kill"}.get(name)
        if phase and hasattr(item, "callspec"):
            wanted.add(f"{phase}-{item.callspec.params['backend']}")
        if name == "test_postgresql_outage" and RESTART_PG:
            wanted.add("outage-postgresql")
    if postgres_unavailable() is not None:
        wanted = {name for name in wanted if "postgresql" not in name}
    if not wanted:
        return {}
    names = [name for name in soak.PHASES if name in wanted]
    printed: list[str] = []

    def say(line: str) -> None:
        printed.append(line)
        print(line)

    results = soak.run_all(SETTINGS, tmp_path_factory.mktemp("soak"), names, parallel=True, say=say)
    for result in results:
        result.texts["test_soak output"] = "\n".join(printed)
        _RUN[result.name] = result
    return _RUN


def _result(results: dict[str, soak.PhaseResult], name: str) -> soak.PhaseResult:
    if name.endswith("postgresql"):
        require_postgres()
    assert name in results, f"{name} did not run"
    return results[name]


def _assert_clean(result: soak.PhaseResult) -> None:
    problems = result.all_problems
    assert not problems, f"{len(problems)} problems, the first ones:\n" + "\n".join(problems[:40])
    assert result.verdict.duplicates == 0
    assert result.verdict.drift_mojos == 0
    assert result.verdict.good_answers > 0
    assert result.over_budget == 0
    assert result.forbidden == 0  # the API key went with every request


@pytest.mark.slow
@pytest.mark.xdist_group("soak")
@pytest.mark.parametrize("backend", BACKENDS)
def test_steady_soak(soak_results: dict[str, soak.PhaseResult], backend: str) -> None:
    result = _result(soak_results, f"steady-{backend}")
    _assert_clean(result)
    verdict = result.verdict
    assert verdict.attempts - verdict.failure_causes["cancelled at stop"] >= SETTINGS.polls
    # Every good answer is a snapshot exactly once: none lost, none excused.
    assert verdict.lost.total() == 0
    assert verdict.snapshots == verdict.good_answers
    assert verdict.unrecorded.total() == 0
    # About a fifth of the answers were faulty, of every kind, and some polls failed of them.
    assert 0.15 < result.faults.total() / result.requests < 0.25
    assert set(result.faults) == set(soak.TERMINAL_FAULTS) | set(soak.RETRYABLE_FAULTS)
    assert verdict.failed > 0.05 * verdict.attempts
    assert result.rss_warm_kib is not None
    assert result.rss_end_kib is not None
    assert result.rss_end_kib <= result.rss_warm_kib * 1.10


@pytest.mark.slow
@pytest.mark.xdist_group("soak")
@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_and_restart(soak_results: dict[str, soak.PhaseResult], backend: str) -> None:
    result = _result(soak_results, f"kill-{backend}")
    _assert_clean(result)
    assert result.restarts == SETTINGS.kills
    assert len(result.first_poll_delays) == SETTINGS.kills + 1
    # How soon each (re)started daemon polls is a figure of bench/soak, not a limit here: a
    # loaded machine may start Python slowly. Here: every daemon did poll.
    # Only answers in flight at a kill may be missing: a handful, not a poll's worth.
    assert result.verdict.lost.total() <= SETTINGS.kills * SETTINGS.concurrency


@pytest.mark.slow
@pytest.mark.xdist_group("soak")
@pytest.mark.postgres
@pytest.mark.skipif(
    not RESTART_PG,
    reason="stops the shared PostgreSQL server: bench/soak runs it; "
    "set TRACKER_SOAK_PG_RESTART=1 to run it here",
)
def test_postgresql_outage(soak_results: dict[str, soak.PhaseResult]) -> None:
    result = _result(soak_results, "outage-postgresql")
    _assert_clean(result)
    assert result.outage_failures > 0


@pytest.mark.slow
@pytest.mark.xdist_group("soak")
def test_no_secret_in_anything_the_soak_printed(
    soak_results: dict[str, soak.PhaseResult],
) -> None:
    if not soak_results:
        pytest.skip("no soak phase selected")
    texts: dict[str, str] = {}
    for result in soak_results.values():
        texts.update(result.texts)
        # The key went with every request and the URL is logged masked: the scan is not vacuous.
        assert result.forbidden == 0
        if result.backend == "postgresql":
            assert ":***@" in result.texts[f"{result.name}: daemon log"]
    some_config = next(iter(soak_results.values())).config
    texts.update(soak.repr_texts(some_config))
    assert soak.find_secrets(texts) == []


# -- the fake's hooks ------------------------------------------------------------------------------

ADDRESS = soak.make_address(7)


def test_on_good_answer_fires_after_good_answers_only() -> None:
    calls: list[tuple[str, str]] = []
    with FakeSpacescan(
        api_key="k", on_good_answer=lambda endpoint, address: calls.append((endpoint, address))
    ) as fake:
        headers = {"User-Agent": "t", "x-api-key": "k"}
        fake.push(XCH_PATH, Response(200, {"status": "success", "mojo": 1}))
        fake.push(TOKEN_PATH, Response(500, {"status": "failed"}))
        with requests.Session() as session:
            for path in (XCH_PATH, TOKEN_PATH, XCH_PATH, TOKEN_PATH):
                session.get(fake.url + path + ADDRESS, headers=headers, timeout=5)
            session.get(fake.url + XCH_PATH + ADDRESS, headers={"User-Agent": "t"}, timeout=5)
        wait_for(lambda: len(calls) == 2, "two good answers")
        time.sleep(0.1)
        # The pushed answers and the 403 (no key) do not count; the two real answers do.
        assert calls == [(XCH_PATH, ADDRESS), (TOKEN_PATH, ADDRESS)]
        sent = [s for s in fake.requests if s.sent is not None]
        assert len(sent) == 5
        assert all(s.at <= s.sent and s.wall > 0 for s in sent)
    with FakeSpacescan(fault_rate=1.0, faults=["html"]) as fake:
        fake.on_good_answer = lambda endpoint, address: calls.append((endpoint, address))
        requests.get(fake.url + XCH_PATH + ADDRESS, headers={"User-Agent": "t"}, timeout=5)
        time.sleep(0.1)
    assert len(calls) == 2


def test_set_balances_replaces_everything_at_once() -> None:
    with FakeSpacescan(variance=False) as fake:
        fake.set_token(ADDRESS, "aa" * 32, "5")
        fake.set_balances(ADDRESS, 7, {"bb" * 32: (Decimal("9007199254740.993"), None, None)})
        headers = {"User-Agent": "t"}
        tokens = requests.get(fake.url + TOKEN_PATH + ADDRESS, headers=headers, timeout=5)
        xch = requests.get(fake.url + XCH_PATH + ADDRESS, headers=headers, timeout=5)
    assert '"asset_id": "' + "bb" * 32 in tokens.text
    assert "aa" * 32 not in tokens.text
    assert '"balance": 9007199254740.993' in tokens.text
    assert xch.json()["mojo"] == 7
    with pytest.raises(TypeError):
        fake.set_balances(ADDRESS, 1, {"bb" * 32: (0.5, None, None)})  # type: ignore[dict-item]


def test_states_are_exact_distinct_and_storable() -> None:
    for index in (0, 1, 2, 49):
        seen = set()
        for k in range(300):
            mojos = soak.state_mojos(index, k)
            assert all(0 <= v <= soak.MAX_MOJOS for v in mojos.values())
            seen.add(tuple(sorted(mojos.items())))
            xch, tokens = soak.fake_balances(index, k)
            assert xch == mojos["xch"]
            assert {a: int(t[0].scaleb(3)) for a, t in tokens.items()} == {
                a: v for a, v in mojos.items() if a != "xch"
            }
        assert len(seen) == 300
    assert soak.state_mojos(0, 0)["xch"] == 2**63 - 1
    assert soak.fake_balances(0, 0)[1][soak.CAT_BIG][0] == Decimal("9007199254740.993")


# -- the checker catches what it must (fast, in-process SQLite) -----------------------------------

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
STATES = 4
HTML_ERROR = "token-balance: answered HTML instead of JSON"


def _served(path: str, at: datetime, fault: str | None = None) -> Served:
    wall = at.timestamp()
    return Served(0.0, path, "", {}, 200, fault, wall, 1.0)


@pytest.fixture
def clean(tmp_path: Path) -> tuple[Path, soak.World, list[Served]]:
    """A history written by the real SnapshotStore as a faultless daemon would, plus one poll
    of the first address that failed on an HTML answer."""
    world = soak.World(3)
    path = tmp_path / "clean.db"
    engine = engines.create(f"sqlite:///{path}")
    migrate.upgrade(engine)
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(a, world.labels[a]) for a in world.addresses], T0)
    served = []
    for k in range(STATES):
        for i, address in enumerate(world.addresses):
            start = T0 + timedelta(seconds=10 * k, milliseconds=100 * i)
            taken = start + timedelta(milliseconds=50)
            mojos = soak.state_mojos(i, k)
            assets = {a: XCH_ASSET if a == "xch" else Asset(a, None, None) for a in mojos}
            store.record_one(Observation(address, start, taken, mojos, assets))
            world.answered(XCH_PATH, address)
            served.append(_served(XCH_PATH + address, taken))
    failed_at = T0 + timedelta(seconds=10 * STATES)
    store.record_failure(
        world.addresses[0], failed_at, failed_at + timedelta(milliseconds=20), HTML_ERROR
    )
    served.append(
        _served(TOKEN_PATH + world.addresses[0], failed_at + timedelta(milliseconds=10), "html")
    )
    engine.dispose()
    return path, world, served


def _check(
    path: Path, world: soak.World, served: list[Served], excuses: soak.Excuses | None = None
) -> soak.Verdict:
    history = soak.read_history(f"sqlite:///{path}")
    return soak.check_history(history, world, served, max_attempts=3, excuses=excuses)


def test_checker_passes_a_clean_history(clean: tuple[Path, soak.World, list[Served]]) -> None:
    verdict = _check(*clean)
    assert verdict.problems == []
    assert verdict.snapshots == verdict.good_answers == 3 * STATES
    assert verdict.failed == 1
    assert verdict.failure_causes == {"html": 1}


LAST_OF_FIRST = "(SELECT max(id) FROM snapshots WHERE address_id = 1)"
MIDDLE_OF_FIRST = (
    "(SELECT id FROM snapshots WHERE address_id = 1 ORDER BY taken_at LIMIT 1 OFFSET 1)"
)
CORRUPTIONS = {
    "a balance off by one mojo": (
        [
            f"UPDATE snapshot_balances SET balance_mojos = balance_mojos + 1 "
            f"WHERE snapshot_id = {LAST_OF_FIRST} AND asset_id = 1"
        ],
        "matches no state served",
    ),
    "a snapshot lost": (
        [
            f"DELETE FROM deltas WHERE snapshot_id = {MIDDLE_OF_FIRST}",
            f"DELETE FROM poll_attempts WHERE snapshot_id = {MIDDLE_OF_FIRST}",
            f"DELETE FROM snapshot_balances WHERE snapshot_id = {MIDDLE_OF_FIRST}",
            f"DELETE FROM snapshots WHERE id = {MIDDLE_OF_FIRST}",
        ],
        "good answer for state 1",
    ),
    "a snapshot stored twice": (
        [
            # Balances first: once snapshot 1000 exists, it is the last one of the address.
            "INSERT INTO snapshot_balances SELECT 1000, asset_id, balance_mojos "
            f"FROM snapshot_balances WHERE snapshot_id = {LAST_OF_FIRST}",
            "INSERT INTO snapshots (id, address_id, taken_at) SELECT 1000, address_id, "
            f"'2026-11-24 13:00:00.000000' FROM snapshots WHERE id = {LAST_OF_FIRST}",
            "INSERT INTO poll_attempts (address_id, started_at, finished_at, ok, snapshot_id) "
            "VALUES (1, '2026-11-24 13:00:00.000000', '2026-11-24 13:00:00.000000', 1, 1000)",
        ],
        "is state 3 again",
    ),
    "a delta missing": (
        [f"DELETE FROM deltas WHERE snapshot_id = {LAST_OF_FIRST}"],
        "deltas sum to",
    ),
    "a balance row without its snapshot": (
        ["INSERT INTO snapshot_balances VALUES (999, 1, 5)"],
        "balance row without its snapshot",
    ),
    "a delta without its snapshot": (
        [
            "INSERT INTO deltas (snapshot_id, asset_id, previous_snapshot_id, address_id,"
            " taken_at, previous_balance_mojos, balance_mojos, delta_mojos)"
            " VALUES (999, 1, 1, 1, '2026-11-24 13:00:00.000000', 0, 5, 5)"
        ],
        "delta without its snapshot",
    ),
    "a half-written snapshot": (
        [f"DELETE FROM snapshot_balances WHERE snapshot_id = {LAST_OF_FIRST}"],
        "has no balance rows",
    ),
    "a snapshot without its poll attempt": (
        [f"DELETE FROM poll_attempts WHERE snapshot_id = {LAST_OF_FIRST}"],
        "0 ok poll attempts",
    ),
    "a failure nothing explains": (
        [
            "INSERT INTO poll_attempts (address_id, started_at, finished_at, ok, error) VALUES "
            "(2, '2026-11-24 13:00:00.000000', '2026-11-24 13:00:01.000000', 0, 'internal error')"
        ],
        "failed unexplained",
    ),
    "a failure reported as the wrong fault": (
        ["UPDATE poll_attempts SET error = 'token-balance: is negative (-1)' WHERE NOT ok"],
        "reported as",
    ),
    "a bad answer without a failed attempt": (
        ["DELETE FROM poll_attempts WHERE NOT ok"],
        "has no failed poll attempt",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_checker_catches(
    clean: tuple[Path, soak.World, list[Served]], tmp_path: Path, corruption: str
) -> None:
    path, world, served = clean
    broken = tmp_path / "broken.db"
    shutil.copy(path, broken)
    statements, expected = CORRUPTIONS[corruption]
    connection = sqlite3.connect(broken)
    try:
        with connection:
            for statement in statements:
                connection.execute(statement)
    finally:
        connection.close()
    problems = _check(broken, world, served).problems
    assert any(expected in problem for problem in problems), problems


def test_checker_catches_a_bad_answer_inside_a_successful_poll(
    clean: tuple[Path, soak.World, list[Served]],
) -> None:
    path, world, served = clean
    bad = _served(TOKEN_PATH + world.addresses[0], T0 + timedelta(milliseconds=20), "negative")
    problems = _check(path, world, [*served, bad]).problems
    assert any("was stored as a snapshot" in p for p in problems), problems


def test_checker_excuses_a_retried_fault_only_in_a_poll_cut_off(
    clean: tuple[Path, soak.World, list[Served]],
) -> None:
    path, world, served = clean
    address = world.addresses[1]
    last = _served(TOKEN_PATH + address, T0 + timedelta(seconds=60), "503")
    earlier = _served(TOKEN_PATH + address, T0 + timedelta(seconds=5), "503")
    killed = soak.Excuses(cut_off=[(T0.timestamp(), last.wall + 1, last.wall + 1)])
    assert any(
        "falls in no poll attempt" in p for p in _check(path, world, [*served, last]).problems
    )
    # After the address's last attempt, a kill explains it; before a later attempt, nothing does.
    assert _check(path, world, [*served, last], killed).problems == []
    problems = _check(path, world, [*served, earlier], killed).problems
    assert any("falls in no poll attempt" in p for p in problems)


def test_checker_catches_a_good_answer_the_hook_missed(
    clean: tuple[Path, soak.World, list[Served]],
) -> None:
    path, world, served = clean
    extra = _served(XCH_PATH + world.addresses[1], T0 + timedelta(hours=1))
    assert any("good XCH answers" in p for p in _check(path, world, [*served, extra]).problems)


# -- secrets in reprs ------------------------------------------------------------------------------


@pytest.fixture
def pg_config(tmp_path: Path) -> Path:
    config = tmp_path / "tracker.toml"
    config.write_text(
        "[database]\n"
        f'url = "postgresql://postgres:{soak.PG_PASSWORD}@127.0.0.1:5432/test"\n'
        "[spacescan]\n"
        'base_url = "http://127.0.0.1:9"\n'
        "[[addresses]]\n"
        f'address = "{ADDRESS}"\n'
    )
    return config


def test_reprs_hide_the_api_key(pg_config: Path) -> None:
    texts = soak.repr_texts(pg_config)
    assert all(soak.API_KEY not in text for text in texts.values())
    assert "***" in texts["repr(SpacescanSource)"]
    assert soak.PG_PASSWORD not in texts["masked database URL"]


def test_settings_repr_hides_the_database_password(pg_config: Path) -> None:
    assert soak.PG_PASSWORD not in soak.repr_texts(pg_config)["repr(Settings)"]
