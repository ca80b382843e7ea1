"""Waiting on a condition with a deadline, the one way tests wait for something to happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "the condition",
             interval: float = 0.01) -> float:
    """Poll `condition` until it answers something true; fail the test after `timeout` seconds.
    Returns how long it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start
