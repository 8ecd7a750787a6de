"""The shared request budget, the one retry policy and the clocks' cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from tracker.clock import Cancelled, SystemClock
from tracker.retry import RetryPolicy
from tracker.sources.budget import RateBudget

from support.clock import FakeClock


def acquire_times(budget: RateBudget, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        budget.acquire()
        times.append(clock.monotonic())
    return times


# ---------------------------------------------------------------------------------------------
# RateBudget


def test_interval_is_sixty_seconds_over_rpm(clock: FakeClock) -> None:
    assert RateBudget(3, clock).interval == 20
    assert RateBudget(120, clock).interval == 0.5
    assert RateBudget(0.5, clock).interval == 120


@pytest.mark.parametrize("rpm", [0, -1, -0.5])
def test_rpm_must_be_positive(clock: FakeClock, rpm: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        RateBudget(rpm, clock)


def test_requests_are_spaced_evenly(clock: FakeClock) -> None:
    start = clock.monotonic()
    times = acquire_times(RateBudget(3, clock), clock, 5)
    assert [t - start for t in times] == [0, 20, 40, 60, 80]


@pytest.mark.parametrize("rpm", [1, 3, 7, 60, 250])
def test_no_sixty_second_window_exceeds_rpm(clock: FakeClock, rpm: int) -> None:
    budget = RateBudget(rpm, clock)
    start = clock.monotonic()
    times = acquire_times(budget, clock, 50)
    for first in times:
        in_window = [t for t in times if first <= t < first + 60 - 1e-9]
        assert len(in_window) <= rpm
    # Not slower than needed either: the 50th request goes at 49 intervals.
    assert times[-1] - start == pytest.approx(49 * 60 / rpm)


def test_no_burst_after_idle_time(clock: FakeClock) -> None:
    """Idle time earns no credit: the free host bans bursts judged over ~10 s."""
    budget = RateBudget(3, clock)
    budget.acquire()
    clock.advance(600)
    start = clock.monotonic()
    assert [t - start for t in acquire_times(budget, clock, 3)] == [0, 20, 40]


def test_first_request_and_requests_after_the_interval_do_not_wait(clock: FakeClock) -> None:
    budget = RateBudget(6, clock)  # 10 s apart
    budget.acquire()
    clock.advance(10)
    budget.acquire()
    clock.advance(25)
    budget.acquire()
    assert [s for s in clock.sleeps if s > 0] == []


def test_work_between_requests_counts_towards_the_interval(clock: FakeClock) -> None:
    budget = RateBudget(3, clock)
    budget.acquire()
    clock.advance(15)  # a slow answer
    budget.acquire()
    assert clock.sleeps[-1] == pytest.approx(5)


def test_pause_pushes_the_next_slot(clock: FakeClock) -> None:
    budget = RateBudget(60, clock)  # 1 s apart
    start = clock.monotonic()
    budget.acquire()
    budget.pause(30)
    budget.acquire()
    assert clock.monotonic() - start == 30
    budget.acquire()  # then the normal spacing again
    assert clock.monotonic() - start == 31


def test_pause_shorter_than_the_interval_does_not_shorten_it(clock: FakeClock) -> None:
    budget = RateBudget(1, clock)  # 60 s apart
    start = clock.monotonic()
    budget.acquire()
    budget.pause(5)
    budget.acquire()
    assert clock.monotonic() - start == 60


def test_pause_counts_from_now(clock: FakeClock) -> None:
    budget = RateBudget(60, clock)
    budget.acquire()
    clock.advance(100)
    start = clock.monotonic()
    budget.pause(10)
    budget.acquire()
    assert clock.monotonic() - start == 10


def test_changing_the_pace_applies_to_slots_not_yet_reserved(clock: FakeClock) -> None:
    budget = RateBudget(60, clock)  # 1 s apart
    start = clock.monotonic()
    budget.acquire()
    budget.acquire()  # reserved at 1 s, and the next slot at 2 s
    budget.set_requests_per_minute(6)  # now 10 s apart
    assert budget.interval == 10
    assert [t - start for t in acquire_times(budget, clock, 3)] == [2, 12, 22]


@pytest.mark.parametrize("rpm", [0, -1])
def test_changed_pace_must_be_positive(clock: FakeClock, rpm: float) -> None:
    budget = RateBudget(60, clock)
    with pytest.raises(ValueError, match="positive"):
        budget.set_requests_per_minute(rpm)
    assert budget.interval == 1


def test_stopped_clock_cancels_acquire(clock: FakeClock) -> None:
    budget = RateBudget(60, clock)
    budget.acquire()
    clock.stop()
    with pytest.raises(Cancelled):
        budget.acquire()


def test_stopped_clock_cancels_even_the_first_acquire(clock: FakeClock) -> None:
    clock.stop()
    with pytest.raises(Cancelled):
        RateBudget(60, clock).acquire()


class SharedTimelineClock:
    """A fake clock for several threads: ``sleep`` waits until (last reading + seconds).

    Like real time, a thread wakes at the instant it was told to wait for, and the shared clock
    never goes backwards. Each thread's wake-up instant (its monotonic time right after the wait)
    is kept in ``woke``. Reading the clock yields the processor briefly so that threads interleave
    inside the budget's critical section if it were not locked.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mono = 1000.0
        self._local = threading.local()
        self.stopped = False

    def now(self) -> datetime:
        return datetime(2026, 11, 24, tzinfo=UTC)

    def monotonic(self) -> float:
        with self._lock:
            value = self._mono
        self._local.read = value
        time.sleep(0.0002)
        return value

    def sleep(self, seconds: float) -> None:
        if self.stopped:
            raise Cancelled("stopping")
        woke = self._local.read + max(0.0, seconds)
        with self._lock:
            self._mono = max(self._mono, woke)
        self._local.woke = woke

    def woke(self) -> float:
        value: float = self._local.woke
        return value


def test_concurrent_acquires_get_distinct_slots_spaced_an_interval_apart() -> None:
    clock = SharedTimelineClock()
    budget = RateBudget(12, clock)  # 5 s apart
    threads_count, per_thread = 8, 6
    start_line = threading.Barrier(threads_count)
    slots: list[float] = []
    failures: list[BaseException] = []
    slots_lock = threading.Lock()

    def worker() -> None:
        try:
            start_line.wait()
            for _ in range(per_thread):
                budget.acquire()
                with slots_lock:
                    slots.append(clock.woke())
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert len(slots) == threads_count * per_thread
    ordered = sorted(slots)
    gaps = [later - earlier for earlier, later in pairwise(ordered)]
    assert min(gaps) >= budget.interval - 1e-9
    # And no slot is wasted: the slots are exactly the first 48 of an even 5 s grid.
    assert ordered == pytest.approx([1000.0 + 5 * i for i in range(threads_count * per_thread)])


# ---------------------------------------------------------------------------------------------
# RetryPolicy


def test_default_backoff_doubles_from_two_seconds() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 4
    assert [policy.backoff(attempt) for attempt in (1, 2, 3, 4, 5)] == [2, 4, 8, 16, 32]


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(base_seconds=3, max_seconds=20)
    assert [policy.backoff(attempt) for attempt in (1, 2, 3, 4, 10)] == [3, 6, 12, 20, 20]
    assert RetryPolicy().backoff(30) == 120
    assert RetryPolicy().backoff(5000) == 120  # no OverflowError for absurd attempt numbers


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(7, 7), (0, 0), (0.5, 0.5), (299.5, 299.5), (300, 300), (301, 300), (1e9, 300),
     (float("inf"), 300), (-5, 0)],
)  # fmt: skip
def test_retry_after_is_honoured_and_capped(retry_after: float, expected: float) -> None:
    # Honoured even when shorter or longer than the exponential backoff for that attempt.
    assert RetryPolicy().backoff(3, retry_after) == expected


def test_retry_after_cap_is_configurable() -> None:
    policy = RetryPolicy(max_hint_seconds=60, max_seconds=10)
    assert policy.backoff(1, 45) == 45
    assert policy.backoff(1, 90) == 60


def test_multiplier_is_configurable() -> None:
    policy = RetryPolicy(base_seconds=1, multiplier=3, max_seconds=100)
    assert [policy.backoff(attempt) for attempt in (1, 2, 3, 4, 5, 6)] == [1, 3, 9, 27, 81, 100]


@pytest.mark.parametrize(
    ("attempt", "hint", "expected"),
    [(1, None, False), (3, None, False), (4, None, True), (9, None, True),
     (1, 300, False), (1, 300.5, True), (1, float("inf"), True), (4, 1, True)],
)  # fmt: skip
def test_gives_up_after_max_attempts_or_a_hint_beyond_the_cap(
    attempt: int, hint: float | None, expected: bool
) -> None:
    assert RetryPolicy().gives_up(attempt, hint) is expected


def test_unlimited_attempts_never_give_up_except_for_a_long_hint() -> None:
    policy = RetryPolicy(max_attempts=None)
    assert not policy.gives_up(10**6)
    assert policy.gives_up(1, 10**6)


# ---------------------------------------------------------------------------------------------
# RetryPolicy.run


class Flaky(Exception):
    def __init__(self, hint: float | None = None) -> None:
        super().__init__("flaky")
        self.hint = hint


class Broken(Exception):
    pass


def failing(
    failures: list[BaseException], result: str = "done"
) -> tuple[list[int], Callable[[int], str]]:
    """Work that raises ``failures`` in turn, then returns ``result``; records each attempt."""
    attempts: list[int] = []

    def work(attempt: int) -> str:
        attempts.append(attempt)
        if failures:
            raise failures.pop(0)
        return result

    return attempts, work


def run(
    policy: RetryPolicy,
    work: Callable[[int], str],
    clock: FakeClock,
    on_retry: Callable[[int, Exception, float], None] | None = None,
) -> str:
    return policy.run(
        work,
        clock,
        retryable=lambda exc: isinstance(exc, Flaky),
        hint=lambda exc: exc.hint if isinstance(exc, Flaky) else None,
        on_retry=on_retry,
    )


def test_run_returns_at_once_when_the_work_succeeds(clock: FakeClock) -> None:
    attempts, work = failing([])
    assert run(RetryPolicy(), work, clock) == "done"
    assert attempts == [1]
    assert clock.sleeps == []


def test_run_retries_with_backoff_and_numbers_the_attempts(clock: FakeClock) -> None:
    attempts, work = failing([Flaky(), Flaky()])
    heard: list[tuple[int, str, float]] = []
    result = run(
        RetryPolicy(), work, clock, on_retry=lambda n, exc, wait: heard.append((n, str(exc), wait))
    )
    assert result == "done"
    assert attempts == [1, 2, 3]
    assert clock.sleeps == [2, 4]
    assert heard == [(1, "flaky", 2), (2, "flaky", 4)]


def test_run_gives_up_with_the_last_exception(clock: FakeClock) -> None:
    last = Flaky()
    attempts, work = failing([Flaky(), Flaky(), last, Flaky()])
    with pytest.raises(Flaky) as info:
        run(RetryPolicy(max_attempts=3), work, clock)
    assert info.value is last
    assert attempts == [1, 2, 3]
    assert clock.sleeps == [2, 4]


def test_run_does_not_retry_what_is_not_retryable(clock: FakeClock) -> None:
    attempts, work = failing([Broken("no")])
    heard: list[int] = []
    with pytest.raises(Broken):
        run(RetryPolicy(), work, clock, on_retry=lambda n, _exc, _wait: heard.append(n))
    assert attempts == [1]
    assert clock.sleeps == []
    assert heard == []


def test_run_waits_as_long_as_the_failure_asks(clock: FakeClock) -> None:
    attempts, work = failing([Flaky(hint=45), Flaky(hint=0)])
    assert run(RetryPolicy(), work, clock) == "done"
    assert clock.sleeps == [45, 0]
    assert attempts == [1, 2, 3]


def test_run_gives_up_at_once_when_asked_to_wait_too_long(clock: FakeClock) -> None:
    attempts, work = failing([Flaky(hint=3600)])
    with pytest.raises(Flaky):
        run(RetryPolicy(max_hint_seconds=60), work, clock)
    assert attempts == [1]
    assert clock.sleeps == []


def test_run_with_unlimited_attempts_keeps_going(clock: FakeClock) -> None:
    attempts, work = failing([Flaky() for _ in range(30)])
    assert run(RetryPolicy(max_attempts=None, max_seconds=5), work, clock) == "done"
    assert len(attempts) == 31
    assert max(clock.sleeps) == 5


def test_run_on_a_stopped_clock_is_cancelled_at_the_first_wait(clock: FakeClock) -> None:
    clock.stop()
    attempts, work = failing([Flaky(), Flaky()])
    with pytest.raises(Cancelled):
        run(RetryPolicy(), work, clock)
    assert attempts == [1]


def test_run_lets_base_exceptions_through_without_retrying(clock: FakeClock) -> None:
    attempts, work = failing([KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        run(RetryPolicy(), work, clock)
    assert attempts == [1]
    assert clock.sleeps == []


# ---------------------------------------------------------------------------------------------
# SystemClock


def test_system_clock_after_stop_cancels_sleep_at_once() -> None:
    clock = SystemClock()
    assert not clock.stopped
    clock.stop()
    assert clock.stopped
    started = time.monotonic()
    with pytest.raises(Cancelled):
        clock.sleep(60)
    with pytest.raises(Cancelled):
        clock.sleep(0)
    assert time.monotonic() - started < 10  # not the 60 s it was asked to wait


def test_system_clock_stop_wakes_a_sleeping_thread() -> None:
    clock = SystemClock()
    outcome: list[str] = []

    def sleeper() -> None:
        try:
            clock.sleep(60)
            outcome.append("slept")
        except Cancelled:
            outcome.append("cancelled")

    started = time.monotonic()
    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.05)
    clock.stop()
    thread.join(timeout=5)
    assert outcome == ["cancelled"]
    assert time.monotonic() - started < 10  # not the 60 s it was asked to wait


def test_system_clock_short_sleeps_and_readings() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    clock.sleep(0)
    clock.sleep(-1)
    clock.sleep(0.01)
    assert clock.monotonic() - before >= 0.01
    assert clock.now().tzinfo is UTC


def test_system_clock_stop_cancels_a_retry_backoff_in_another_thread() -> None:
    clock = SystemClock()
    outcome: list[BaseException] = []
    attempts: list[int] = []

    def work(attempt: int) -> None:
        attempts.append(attempt)
        raise Flaky()

    def retrier() -> None:
        try:
            RetryPolicy(base_seconds=30).run(work, clock, retryable=lambda _exc: True)
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=retrier)
    thread.start()
    time.sleep(0.05)
    clock.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert [type(exc) for exc in outcome] == [Cancelled]
    assert attempts == [1]
    assert time.monotonic() - started < 10


def test_budget_on_a_stopped_system_clock_cancels() -> None:
    clock = SystemClock()
    budget = RateBudget(1, clock)
    budget.acquire()  # the first slot is free
    clock.stop()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        budget.acquire()  # would otherwise wait 60 s
    assert time.monotonic() - started < 10  # not the 60 s it was asked to wait
