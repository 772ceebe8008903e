"""api.prefer: which `Prefer: wait=N` a request asks for (RFC 7240)."""

from __future__ import annotations

import pytest

from api.prefer import MAX_WAIT_S, wait_seconds


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("wait=5", 5),
        ("respond-async, wait=10", 10),
        ('WAIT = "7"', 7),
        ("wait=0", 0),
        ("wait=3; foo=bar", 3),
        ("wait=3600", MAX_WAIT_S),
    ],
)
def test_a_wait_in_seconds_is_taken_capped(header, wait):
    assert wait_seconds(header) == wait


@pytest.mark.parametrize("header", [None, "", "respond-async", "wait=", "wait=-1", "wait=1.5"])
def test_no_wait_or_one_not_in_digits_is_no_wait(header):
    assert wait_seconds(header) is None
