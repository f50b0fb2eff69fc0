"""The HTTP both remote clients share (bitrix24/client.py, idgtl/client.py), written once.

Like django-anymail's ``backends/base_requests.py``: the base owns the session, one request with its
(connect, read) timeout and no redirect followed, the duration of each exchange, and the retry loop
with exponential backoff and jitter; a client module only builds requests, translates answers into
its typed errors, and says which of those errors are retried after how long
(:meth:`HttpClient.retry_delay`) and how an exchange is logged (:meth:`HttpClient.exchange_logged`).

Nothing here logs a URL, a header or a body: the clients' log lines name the remote method or path,
the status and the duration only, so no secret (tokens in a query, an ``Authorization`` header)
reaches a log.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import requests

T = TypeVar("T")


def backoff_delay(base: float, attempt: int) -> float:
    """``base`` × 2^attempt, with ±50 % jitter (so workers retrying together spread out)."""
    return base * (2**attempt) * random.uniform(0.5, 1.5)


class HttpClient:
    """A session and the rules every call of a remote client follows."""

    def __init__(self, session: requests.Session):
        self.session = session
        self._sleep = time.sleep  # tests replace it

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # --- one exchange ------------------------------------------------------------------------------
    def send(
        self, http_method: str, url: str, *, timeout: tuple[float, float], what: tuple, **kwargs
    ) -> requests.Response:
        """One request, no redirect followed. ``what`` names it in the log (never the URL).

        The exchange is logged through :meth:`exchange_logged` with the response, or with the
        exception that ended it, which is raised unchanged for the client to translate.
        """
        started = time.monotonic()
        try:
            response = self.session.request(http_method, url, timeout=timeout, allow_redirects=False, **kwargs)
        except Exception as exc:
            self.exchange_logged(what, None, exc, (time.monotonic() - started) * 1000)
            raise
        self.exchange_logged(what, response, None, (time.monotonic() - started) * 1000)
        return response

    def exchange_logged(
        self, what: tuple, response: requests.Response | None, error: Exception | None, duration_ms: float
    ) -> None:
        """Log one exchange (the client's format). ``error`` is set when no response came."""

    # --- retries -----------------------------------------------------------------------------------
    def retry_delay(self, error: Exception, attempt: int) -> float | None:
        """Seconds to wait before trying again after ``error`` ended try number ``attempt`` (0 first),
        or None: ``error`` is raised. The client's policy (retryable errors, its limit, a deadline)."""
        return None

    def with_retries(self, attempt_call: Callable[[], T]) -> T:
        """``attempt_call()``, tried again as long as :meth:`retry_delay` gives a delay."""
        attempt = 0
        while True:
            try:
                return attempt_call()
            except Exception as exc:
                delay = self.retry_delay(exc, attempt)
                if delay is None:
                    raise
            self._sleep(delay)
            attempt += 1
