"""Waiting for something a worker or a fake server does in the background."""

import time


def wait_until(condition, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Call ``condition`` until it returns a truthy value; return that value or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")
