"""The circuit breaker opens on a failure rate, fails fast, and probes its way back."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle

import pytest

from resilience.breaker import BreakerState, CircuitBreaker, CircuitOpen

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kwargs) -> CircuitBreaker:
    settings = {
        "failure_rate_threshold": 50.0,
        "sliding_window_size": 10,
        "minimum_calls": 4,
        "wait_in_open_s": 60.0,
        "half_open_calls": 2,
    } | kwargs
    return CircuitBreaker("payments", clock=clock, **settings)


def call(breaker: CircuitBreaker, outcomes: str) -> None:
    """One call per letter: F fails, S succeeds, I is ignored."""
    for outcome in outcomes:
        permit = breaker.acquire()
        {"F": permit.failure, "S": permit.success, "I": permit.ignore}[outcome]()


def trip(breaker: CircuitBreaker) -> None:
    call(breaker, "FFFF")
    assert breaker.state is OPEN


def test_does_not_open_before_minimum_calls_even_at_full_failure_rate(clock):
    breaker = make(clock)

    call(breaker, "FFF")

    assert breaker.state is CLOSED
    assert breaker.snapshot()["failure_rate"] is None


def test_opens_exactly_when_minimum_calls_reached_at_threshold(clock):
    breaker = make(clock)
    call(breaker, "FSF")

    call(breaker, "S")  # 2 of 4 = 50%, the threshold itself

    assert breaker.state is OPEN
    assert breaker.snapshot()["failure_rate"] == 50.0


def test_stays_closed_just_below_threshold(clock):
    breaker = make(clock, failure_rate_threshold=50.1)

    call(breaker, "FSFS")

    assert breaker.state is CLOSED
    assert breaker.snapshot()["failure_rate"] == 50.0


def test_old_failures_fall_out_of_the_window(clock):
    breaker = make(clock, sliding_window_size=4, failure_rate_threshold=60.0)

    call(breaker, "FFSSSS")

    snap = breaker.snapshot()
    assert breaker.state is CLOSED
    assert (snap["failure_rate"], snap["calls"], snap["failures"]) == (0.0, 4, 0)


def test_old_successes_fall_out_of_the_window(clock):
    breaker = make(clock, sliding_window_size=4, failure_rate_threshold=75.0)

    call(breaker, "SSFF")
    assert breaker.state is CLOSED

    call(breaker, "F")  # window is now S F F F: 75%

    assert breaker.state is OPEN


def test_fails_fast_while_open_with_shrinking_retry_after(clock):
    breaker = make(clock)
    trip(breaker)

    clock.advance(10)
    with pytest.raises(CircuitOpen) as first:
        breaker.acquire()
    clock.advance(35)
    with pytest.raises(CircuitOpen) as second:
        breaker.acquire()

    assert first.value.name == "payments"
    assert first.value.retry_after == pytest.approx(50.0)
    assert second.value.retry_after == pytest.approx(15.0)
    assert str(second.value) == "circuit 'payments' is open; next trial in 15.0 s"


def test_half_opens_only_when_observed_after_the_wait(clock):
    changes: list[tuple[str, BreakerState, BreakerState]] = []
    breaker = make(clock, on_state_change=lambda *change: changes.append(change))
    trip(breaker)

    clock.advance(59.9)
    assert breaker.state is OPEN
    clock.advance(0.1)
    assert changes == [("payments", CLOSED, OPEN)]  # nothing happens until someone looks

    assert breaker.state is HALF_OPEN
    assert changes[-1] == ("payments", OPEN, HALF_OPEN)
    breaker.acquire()


def test_acquire_after_the_wait_hands_out_a_trial_permit(clock):
    breaker = make(clock)
    trip(breaker)
    clock.advance(60)

    breaker.acquire()

    assert breaker.state is HALF_OPEN


def test_half_open_hands_out_at_most_half_open_calls_permits(clock):
    breaker = make(clock, half_open_calls=3, wait_in_open_s=5.0)
    trip(breaker)
    clock.advance(5)
    permits = [breaker.acquire() for _ in range(3)]

    with pytest.raises(CircuitOpen) as refused:
        breaker.acquire()

    assert len(permits) == 3
    assert refused.value.retry_after == pytest.approx(0.5)  # wait / 10, within [0.1, 1]


@pytest.mark.parametrize(("wait", "hint"), [(0.5, 0.1), (3600.0, 1.0)])
def test_full_half_open_retry_hint_is_bounded(clock, wait, hint):
    breaker = make(clock, half_open_calls=1, wait_in_open_s=wait)
    trip(breaker)
    clock.advance(wait)
    breaker.acquire()

    with pytest.raises(CircuitOpen) as refused:
        breaker.acquire()

    assert refused.value.retry_after == pytest.approx(hint)


def test_trials_that_succeed_close_with_an_empty_window(clock):
    breaker = make(clock)
    trip(breaker)
    clock.advance(60)

    call(breaker, "SF")  # 1 of 2 trials failed: 50% is the threshold ...
    assert breaker.state is OPEN
    clock.advance(60)
    call(breaker, "SS")  # ... so it takes clean trials to close

    snap = breaker.snapshot()
    assert breaker.state is CLOSED
    assert (snap["calls"], snap["failures"], snap["failure_rate"]) == (0, 0, None)


def test_trials_below_threshold_close(clock):
    breaker = make(clock, half_open_calls=4)
    trip(breaker)
    clock.advance(60)

    call(breaker, "FSSS")

    assert breaker.state is CLOSED


def test_a_failed_trial_reopens_with_a_fresh_wait(clock):
    breaker = make(clock)
    trip(breaker)
    clock.advance(100)

    call(breaker, "FF")

    assert breaker.state is OPEN
    assert breaker.snapshot()["open_remaining_s"] == pytest.approx(60.0)
    clock.advance(59)
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    clock.advance(1)
    assert breaker.state is HALF_OPEN


def test_trial_outcome_is_not_judged_until_all_trials_report(clock):
    breaker = make(clock, half_open_calls=3)
    trip(breaker)
    clock.advance(60)

    call(breaker, "FF")

    assert breaker.state is HALF_OPEN


def test_ignore_frees_a_half_open_slot_and_counts_nothing(clock):
    breaker = make(clock)
    trip(breaker)
    clock.advance(60)
    first, second = breaker.acquire(), breaker.acquire()

    first.ignore()
    third = breaker.acquire()

    assert breaker.snapshot()["calls"] == 0
    second.failure()
    assert breaker.state is HALF_OPEN  # one outcome of two, the ignored one didn't count
    third.failure()
    assert breaker.state is OPEN


def test_ignore_counts_nothing_while_closed(clock):
    breaker = make(clock)

    call(breaker, "IIII")

    assert breaker.snapshot()["calls"] == 0


def test_only_the_first_outcome_of_a_permit_counts(clock):
    breaker = make(clock)
    permit = breaker.acquire()

    permit.failure()
    permit.success()
    permit.failure()
    permit.ignore()

    assert (breaker.snapshot()["calls"], breaker.snapshot()["failures"]) == (1, 1)


def test_a_permit_from_before_the_opening_does_not_count(clock):
    breaker = make(clock, half_open_calls=1)
    stale = breaker.acquire()
    trip(breaker)
    before = breaker.snapshot()

    stale.success()

    assert breaker.snapshot() == before
    clock.advance(60)
    assert breaker.state is HALF_OPEN


def test_a_permit_from_before_the_opening_does_not_count_as_a_trial(clock):
    breaker = make(clock, half_open_calls=1)
    stale = breaker.acquire()
    trip(breaker)
    clock.advance(60)
    assert breaker.state is HALF_OPEN

    stale.success()

    assert breaker.state is HALF_OPEN
    assert breaker.snapshot()["calls"] == 0


def test_ignoring_a_stale_permit_does_not_free_a_trial_slot(clock):
    breaker = make(clock, half_open_calls=1)
    stale = breaker.acquire()
    trip(breaker)
    clock.advance(60)
    breaker.acquire()

    stale.ignore()

    with pytest.raises(CircuitOpen):
        breaker.acquire()


def test_ignoring_twice_frees_one_trial_slot(clock):
    breaker = make(clock)
    trip(breaker)
    clock.advance(60)
    permit = breaker.acquire()

    permit.ignore()
    permit.ignore()
    breaker.acquire()
    breaker.acquire()

    with pytest.raises(CircuitOpen):
        breaker.acquire()


def test_context_manager_counts_a_clean_exit_as_success(clock):
    breaker = make(clock)

    with breaker.acquire():
        pass

    assert (breaker.snapshot()["calls"], breaker.snapshot()["failures"]) == (1, 0)


def test_context_manager_ignores_an_escaping_exception(clock):
    breaker = make(clock)

    with pytest.raises(asyncio.CancelledError), breaker.acquire():
        raise asyncio.CancelledError

    assert breaker.snapshot()["calls"] == 0


def test_context_manager_keeps_an_explicit_failure(clock):
    breaker = make(clock)

    with pytest.raises(RuntimeError), breaker.acquire() as permit:
        permit.failure()
        raise RuntimeError("downstream said 503")
    with breaker.acquire() as permit:
        permit.failure()

    assert (breaker.snapshot()["calls"], breaker.snapshot()["failures"]) == (2, 2)


def test_context_manager_hands_back_a_trial_slot_on_exception(clock):
    breaker = make(clock, half_open_calls=1)
    trip(breaker)
    clock.advance(60)

    with pytest.raises(asyncio.CancelledError), breaker.acquire():
        raise asyncio.CancelledError

    with breaker.acquire():
        pass
    assert breaker.state is CLOSED


def test_on_state_change_sees_every_transition_in_order(clock):
    changes: list[tuple[str, BreakerState, BreakerState]] = []
    breaker = make(clock, on_state_change=lambda *change: changes.append(change))

    trip(breaker)
    clock.advance(60)
    call(breaker, "FF")
    clock.advance(60)
    call(breaker, "SS")

    assert changes == [
        ("payments", CLOSED, OPEN),
        ("payments", OPEN, HALF_OPEN),
        ("payments", HALF_OPEN, OPEN),
        ("payments", OPEN, HALF_OPEN),
        ("payments", HALF_OPEN, CLOSED),
    ]
    assert breaker.snapshot()["transitions"] == 5


def test_a_failing_listener_does_not_fail_the_call(clock, caplog):
    def listener(name: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("metrics backend down")

    breaker = make(clock, on_state_change=listener)

    call(breaker, "FFFF")

    assert breaker.state is OPEN
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_transitions_are_logged_warning_to_open_and_info_otherwise(clock, caplog):
    caplog.set_level(logging.INFO, logger="resilience.breaker")
    breaker = make(clock)

    trip(breaker)
    clock.advance(60)
    call(breaker, "SS")

    logged = [(r.name, r.levelno) for r in caplog.records]
    assert logged == [
        ("resilience.breaker", logging.WARNING),
        ("resilience.breaker", logging.INFO),
        ("resilience.breaker", logging.INFO),
    ]
    assert "payments" in caplog.records[0].getMessage()
    assert "100.0% over 4 calls, window 10" in caplog.records[0].getMessage()


def test_reset_closes_with_an_empty_window_and_forgets_permits(clock):
    breaker = make(clock)
    trip(breaker)
    breaker.reset()
    in_flight = breaker.acquire()
    call(breaker, "FF")

    breaker.reset()
    in_flight.failure()

    assert breaker.state is CLOSED
    assert breaker.snapshot()["calls"] == 0


def test_reset_of_an_open_breaker_reports_no_remaining_wait(clock):
    breaker = make(clock)
    trip(breaker)

    breaker.reset()

    assert breaker.snapshot()["open_remaining_s"] == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"name": ""},
        {"failure_rate_threshold": 0.0},
        {"failure_rate_threshold": -5.0},
        {"failure_rate_threshold": 100.1},
        {"failure_rate_threshold": float("nan")},
        {"sliding_window_size": 0},
        {"minimum_calls": 0},
        {"minimum_calls": 11},  # more than the window of 10 can hold
        {"wait_in_open_s": 0.0},
        {"wait_in_open_s": -1.0},
        {"wait_in_open_s": float("inf")},
        {"wait_in_open_s": float("nan")},
        {"half_open_calls": 0},
    ],
)
def test_invalid_settings_are_rejected(clock, bad):
    settings = {
        "name": "payments",
        "failure_rate_threshold": 50.0,
        "sliding_window_size": 10,
        "minimum_calls": 4,
        "wait_in_open_s": 60.0,
        "half_open_calls": 2,
    } | bad

    with pytest.raises(ValueError, match=f"^{next(iter(bad))} "):  # names the culprit
        CircuitBreaker(clock=clock, **settings)


def test_defaults_are_valid():
    snap = CircuitBreaker("payments").snapshot()

    assert snap["settings"] == {
        "failure_rate_threshold": 50.0,
        "sliding_window_size": 100,
        "minimum_calls": 10,
        "wait_in_open_s": 60.0,
        "half_open_calls": 10,
    }


def test_snapshot_is_json_in_every_state(clock):
    breaker = make(clock)
    call(breaker, "S")
    snapshots = [breaker.snapshot()]
    call(breaker, "FFF")
    clock.advance(20)
    snapshots.append(breaker.snapshot())
    clock.advance(40)
    snapshots.append(breaker.snapshot())

    for snap in snapshots:
        assert json.loads(json.dumps(snap)) == snap
    assert [s["state"] for s in snapshots] == ["closed", "open", "half_open"]
    assert [s["open_remaining_s"] for s in snapshots] == [0.0, 40.0, 0.0]
    assert snapshots[1]["failure_rate"] == 75.0


def test_circuit_open_survives_pickling():
    err = pickle.loads(pickle.dumps(CircuitOpen("payments", 1.5)))

    assert (err.name, err.retry_after) == ("payments", 1.5)


def test_circuit_open_never_suggests_a_negative_wait():
    assert CircuitOpen("payments", -0.25).retry_after == 0.0
