"""The restart policy: growing jittered delays, a reset after a good run, and the crash loop."""

from __future__ import annotations

import random

import pytest

from resilience.backoff import Backoff
from settings import Settings
from stack.restarts import CrashLoop, Restart, RestartPolicy, RestartTracker, describe_exit

POLICY = RestartPolicy(Backoff(0.5, 8.0), reset_after_s=30.0, loop_exits=5, loop_window_s=60.0)


def crash_every(tracker: RestartTracker, up_s: float, times: int) -> list[Restart | CrashLoop]:
    """`times` runs of `up_s` seconds each, restarted after the delay asked for."""
    now, decisions = 0.0, []
    for _ in range(times):
        tracker.started(now)
        now += up_s
        decision = tracker.exited(now)
        decisions.append(decision)
        if isinstance(decision, Restart):
            now += decision.delay_s
    return decisions


def test_delays_double_from_the_initial_one_and_each_is_jittered() -> None:
    tracker = RestartTracker(POLICY, random.Random(1))

    decisions = crash_every(tracker, up_s=1.0, times=4)

    assert [d.attempt for d in decisions if isinstance(d, Restart)] == [1, 2, 3, 4]
    for decision, ceiling in zip(decisions, (0.5, 1.0, 2.0, 4.0), strict=True):
        assert isinstance(decision, Restart)
        assert ceiling / 2 <= decision.delay_s <= ceiling


def test_delays_stop_growing_at_the_cap() -> None:
    slow_loop = RestartPolicy(Backoff(0.5, 8.0), 30.0, loop_exits=100, loop_window_s=60.0)
    tracker = RestartTracker(slow_loop, random.Random(2))

    decisions = crash_every(tracker, up_s=10.0, times=9)

    assert all(isinstance(d, Restart) for d in decisions)
    assert max(d.delay_s for d in decisions if isinstance(d, Restart)) <= 8.0
    assert all(d.delay_s >= 4.0 for d in decisions[-3:] if isinstance(d, Restart))


def test_a_child_that_stayed_up_long_enough_starts_the_backoff_over() -> None:
    tracker = RestartTracker(POLICY, random.Random(3))
    crash_every(tracker, up_s=1.0, times=3)

    tracker.started(1000.0)
    after_a_good_run = tracker.exited(1000.0 + POLICY.reset_after_s)

    assert isinstance(after_a_good_run, Restart)
    assert after_a_good_run.attempt == 1
    assert after_a_good_run.delay_s <= 0.5


def test_the_fifth_exit_within_the_window_is_a_crash_loop() -> None:
    tracker = RestartTracker(POLICY, random.Random(4))

    decisions = crash_every(tracker, up_s=2.0, times=5)

    assert all(isinstance(d, Restart) for d in decisions[:4])
    loop = decisions[4]
    assert isinstance(loop, CrashLoop)
    assert loop.exits == 5
    assert 0 < loop.within_s <= POLICY.loop_window_s


def test_exits_spread_wider_than_the_window_are_no_crash_loop() -> None:
    tracker = RestartTracker(POLICY, random.Random(5))

    # One exit every 20 s: never five in any 60 s, however long it goes on.
    decisions = crash_every(tracker, up_s=20.0, times=12)

    assert all(isinstance(d, Restart) for d in decisions)


def test_one_allowed_exit_makes_any_crash_stop_everything() -> None:
    strict = RestartPolicy(Backoff(0.5, 8.0), 30.0, loop_exits=1, loop_window_s=60.0)

    assert RestartTracker(strict).exited(5.0) == CrashLoop(exits=1, within_s=0.0)


def test_the_policy_reads_its_settings() -> None:
    settings = Settings(
        restart_backoff_initial_s=0.1,
        restart_backoff_cap_s=2,
        restart_reset_after_s=7,
        crash_loop_exits=3,
        crash_loop_window_s=9,
    )

    policy = RestartPolicy.from_settings(settings)

    assert policy == RestartPolicy(Backoff(0.1, 2.0), 7.0, 3, 9.0)


def test_a_cap_below_the_initial_delay_is_refused_naming_both_variables() -> None:
    with pytest.raises(ValueError, match=r"SAGA_RESTART_BACKOFF_CAP_S.*INITIAL_S"):
        Settings(restart_backoff_initial_s=5, restart_backoff_cap_s=1)


@pytest.mark.parametrize(
    ("code", "said"), [(0, "exit code 0"), (2, "exit code 2"), (-9, "signal SIGKILL")]
)
def test_exits_are_described_by_code_or_signal(code: int, said: str) -> None:
    assert describe_exit(code) == said
