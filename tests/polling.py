"""The one poll helper of the test tree: wait for something the platform does in the background.

A test asserts on the result (`assert eventually(lambda: ...), "what did not happen"`), so a timeout
fails where the expectation is written, with the test's own message.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.2) -> T:
    """The first truthy result of check() within `timeout` seconds, else the last (falsy) one."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(interval)


def wait_for(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.2, what: str = "condition") -> T:
    """eventually(), failing the test when the time is up."""
    got = eventually(check, timeout, interval)
    assert got, f"timed out after {timeout} s waiting for {what}"
    return got
