"""The shared request budget, the retry policy and the clocks' cancellation."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from fakeclock import FakeClock

from tracker.clock import Cancelled, SystemClock
from tracker.ratelimit import RateBudget, RetryPolicy


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
    policy = RetryPolicy(max_retry_after=60, max_seconds=10)
    assert policy.backoff(1, 45) == 45
    assert policy.backoff(1, 90) == 60


# ---------------------------------------------------------------------------------------------
# SystemClock


def test_system_clock_after_stop_cancels_sleep_at_once() -> None:
    clock = SystemClock()
    assert not clock.stopped
    clock.stop()
    assert clock.stopped
    started = time.monotonic()
    with pytest.raises(Cancelled):
        clock.sleep(10)
    with pytest.raises(Cancelled):
        clock.sleep(0)
    assert time.monotonic() - started < 1


def test_system_clock_stop_wakes_a_sleeping_thread() -> None:
    clock = SystemClock()
    outcome: list[str] = []

    def sleeper() -> None:
        try:
            clock.sleep(10)
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
    assert time.monotonic() - started < 1


def test_system_clock_short_sleeps_and_readings() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    clock.sleep(0)
    clock.sleep(-1)
    clock.sleep(0.01)
    assert clock.monotonic() - before >= 0.01
    assert clock.now().tzinfo is UTC


def test_budget_on_a_stopped_system_clock_cancels() -> None:
    clock = SystemClock()
    budget = RateBudget(1, clock)
    budget.acquire()  # the first slot is free
    clock.stop()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        budget.acquire()  # would otherwise wait 60 s
    assert time.monotonic() - started < 1
