"""The only module that speaks HTTP to i-dgtl (contract: docs/contracts/idgtl.md).

Every call: ``Authorization: Basic KEY`` (the key sent unchanged), a (connect, read) timeout, the
§1.2 error envelope mapped to a typed error, and bounded retries with exponential backoff plus
jitter for transient failures only, honouring ``Retry-After``:

* GET is retried on every transient failure (429, 5xx, timeouts, connection errors).
* POST is retried only when the request surely was not processed: a connection that was never
  established, 429 or 503. Any other transient failure of a POST (read timeout, connection dropped
  after sending, 500/502/504, a 2xx body that is not JSON) raises :class:`IdgtlOutcomeUnknown` at
  once: the caller must look the result up before sending again.

Every attempt first takes room in the account's rate limit (docs/contracts/idgtl.md §4 [A]: a token bucket,
``settings.IDGTL_RATE_LIMIT_PER_SECOND`` requests per second, 10 by default), shared by all workers
through ``common.ratelimit`` (Redis when configured, the Django cache otherwise). A limit that gives
no room within the read timeout raises :class:`IdgtlTransientError` without sending anything.

The key never appears in logs, exception messages or reprs. Each call is logged with method,
path, status and duration only. The session, the retry loop and its backoff are the shared HTTP
base's (common/http.py); this module says what is retried and translates i-dgtl's answers.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import IO, Any

import requests
from django.conf import settings
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from common import metrics, ratelimit
from common.http import HttpClient, backoff_delay
from common.logging import mask_secret
from idgtl import contract

logger = logging.getLogger(__name__)

# [A] The longest Retry-After we wait for inside one call; a longer one ends the retries and is
# handed to the caller on the error (``retry_after``) so a task can reschedule instead of blocking.
RETRY_AFTER_MAX_SECONDS = 30.0
# [A] Statuses after which a POST surely was not processed and may be resent.
POST_SAFE_RETRY_STATUSES = {429, 503}
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}


class IdgtlError(Exception):
    """An i-dgtl call failed. ``message`` is i-dgtl's ``msg`` when it sent one."""

    def __init__(self, message: str, *, http_status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code

    def __str__(self):
        parts = [p for p in (self.http_status and f"HTTP {self.http_status}", self.code and f"code {self.code}") if p]
        return f"i-dgtl error ({', '.join(parts)}): {self.message}" if parts else f"i-dgtl error: {self.message}"

    def __repr__(self):
        return f"{type(self).__name__}(message={self.message!r}, http_status={self.http_status!r}, code={self.code!r})"


class IdgtlConfigurationError(IdgtlError):
    """401 (4010/4012) or 403 (4030): the key is missing, wrong, or of the wrong type. Never retried."""


class IdgtlValidationError(IdgtlError):
    """422 (4220): i-dgtl refused the request; ``message`` is its text verbatim. Permanent."""


class IdgtlNotFound(IdgtlError):
    """404 (4040): unknown id."""


class IdgtlTransientError(IdgtlError):
    """429, 5xx, timeouts, connection errors: raised after the bounded retries.

    ``retry_after`` is the delay in seconds the server asked for, when it asked (Retry-After).
    ``retry_reason`` is set when the client may send the request again (the reason its retry is counted
    under): a failure the client must not repeat (a POST that may have been processed, a rate limit
    that gave no room, a 2xx it could not read) has none.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
        retry_reason: str | None = None,
    ):
        super().__init__(message, http_status=http_status, code=code)
        self.retry_after = retry_after
        self.retry_reason = retry_reason


class IdgtlOutcomeUnknown(IdgtlTransientError):
    """A POST that may have been processed: look it up before sending again."""


def _format_time(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(contract.TIMESTAMP_FORMAT)


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None  # "inf"/"nan" are not delays
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_from_body(response: requests.Response) -> tuple[int | None, str]:
    """(code, msg) from the §1.2 envelope; tolerates bodies that are not JSON or not the envelope."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        code = error.get("code")
        msg = error.get("msg")
        return (code if isinstance(code, int) else None), (str(msg) if msg is not None else response.reason or "")
    text = (response.text or "").strip()
    return None, (text[:200] if text else (response.reason or f"HTTP {response.status_code}"))


def _connection_surely_not_made(exc: requests.RequestException) -> bool:
    """True when the request never reached the server (nothing can have been processed)."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return True  # the TLS handshake comes before any byte of the request
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.ReadTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3 MaxRetryError wraps the cause
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError, NameResolutionError))


def _file_content(content: bytes | IO) -> bytes:
    if isinstance(content, (bytes, bytearray)):
        return bytes(content)
    if hasattr(content, "seek"):
        content.seek(0)
    data = content.read()
    return data.encode() if isinstance(data, str) else data


def _account_rate_limit_key(account) -> str | None:
    """The bucket of a saved account (both its keys share it); None lets the client name one by its key."""
    pk = getattr(account, "pk", None)
    return f"idgtl:account:{pk}" if pk is not None else None


class IdgtlClient(HttpClient):
    """One i-dgtl key at one API URL. Use :meth:`for_sender_names` / :meth:`for_messages`."""

    def __init__(
        self,
        api_url: str,
        key: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        session: requests.Session | None = None,
        rate_limit_key: str | None = None,
    ):
        super().__init__(session or requests.Session())
        self.api_url = (api_url or contract.DEFAULT_API_URL).rstrip("/")
        self._key = (key or "").strip()
        self.timeout = (settings.IDGTL_CONNECT_TIMEOUT, timeout if timeout is not None else settings.IDGTL_TIMEOUT)
        self.max_retries = settings.IDGTL_MAX_RETRIES if max_retries is None else max_retries
        self.backoff = settings.IDGTL_RETRY_BACKOFF
        self.rate_per_second = settings.IDGTL_RATE_LIMIT_PER_SECOND
        # The bucket's name: the account's (both of its keys share it), else a digest, never the key itself.
        self.rate_limit_key = (
            rate_limit_key or "idgtl:" + hashlib.sha256(f"{self.api_url} {self._key}".encode()).hexdigest()[:24]
        )

    @classmethod
    def for_sender_names(cls, account, **kwargs) -> IdgtlClient:
        """The client for sender names: the account's TOKEN_2."""
        return cls(account.api_url, account.sender_names_key, rate_limit_key=_account_rate_limit_key(account), **kwargs)

    @classmethod
    def for_messages(cls, account, **kwargs) -> IdgtlClient:
        """The client for messages: the account's TOKEN_1."""
        return cls(account.api_url, account.messages_key, rate_limit_key=_account_rate_limit_key(account), **kwargs)

    def __repr__(self):
        return f"IdgtlClient(api_url={self.api_url!r}, key={mask_secret(self._key)!r})"

    # --- sender names (TOKEN_2) --------------------------------------------------------------------
    def create_sender_name(self, body: dict, files: Iterable[tuple[str, bytes | IO, str]] = ()) -> dict:
        """POST /sender-names as multipart: part ``body`` (application/json) and ``file1..fileN``."""
        parts: list[tuple[str, tuple]] = [
            (
                contract.BODY_PART_NAME,
                (None, json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json"),
            )
        ]
        for n, (filename, content, content_type) in enumerate(files, start=1):
            parts.append((contract.FILE_PART_NAME.format(n=n), (filename, _file_content(content), content_type)))
        return self._request("POST", contract.SENDER_NAMES_PATH, files=parts)

    def get_sender_name(self, remote_id: int) -> dict:
        """[A] GET /sender-names/{id} (§2.4)."""
        return self._request("GET", contract.SENDER_NAME_PATH.format(id=int(remote_id)))

    def list_sender_names(self, *, sender_name=None, status=None, brand=None, page=1, per_page=100) -> dict:
        """[A] GET /sender-names (§2.4) -> {"total", "items"}."""
        params = {
            contract.PAGE_PARAM: page,
            contract.PER_PAGE_PARAM: per_page,
            "sender_name": sender_name,
            "status": status,
            "brand": brand,
        }
        return self._request(
            "GET", contract.SENDER_NAMES_PATH, params={k: v for k, v in params.items() if v is not None}
        )

    # --- messages (TOKEN_1) ------------------------------------------------------------------------
    def send_messages(self, messages: list[dict], *, before_attempt: Callable[[], None] | None = None) -> dict:
        """POST /message with a JSON array of 1..1000 objects -> {"errors": bool, "items": [...]}.

        ``before_attempt`` runs right before each HTTP attempt (the first and every retry); whatever
        it raises ends the call there, with nothing sent by that attempt (the sender's lease check).
        """
        if not 1 <= len(messages) <= contract.SEND_BATCH_MAX:
            raise ValueError(f"send_messages takes 1..{contract.SEND_BATCH_MAX} messages, got {len(messages)}")
        return self._request("POST", contract.MESSAGES_PATH, json=list(messages), before_attempt=before_attempt)

    def get_messages(
        self,
        *,
        message_uuids=None,
        external_message_ids=None,
        statuses=None,
        time_from=None,
        time_to=None,
        page=1,
        per_page=100,
    ) -> dict:
        """GET /message (§3.3); multi-value filters repeat the key. ``external_message_id`` is [A]."""
        params: list[tuple[str, Any]] = [(contract.PAGE_PARAM, page), (contract.PER_PAGE_PARAM, per_page)]
        params += [("message_uuid", v) for v in message_uuids or ()]
        params += [("external_message_id", v) for v in external_message_ids or ()]
        params += [("status", v) for v in statuses or ()]
        if time_from is not None:
            params.append(("time_from", _format_time(time_from)))
        if time_to is not None:
            params.append(("time_to", _format_time(time_to)))
        return self._request("GET", contract.MESSAGES_PATH, params=params)

    def stop_messages(self, uuids: list[str]) -> dict:
        """POST /message/stop {"uuids": [...]} -> {"errors", "items": [{"messageUuid", "code"}]}."""
        return self._request("POST", contract.MESSAGES_STOP_PATH, json={"uuids": list(uuids)})

    def get_balance(self) -> dict:
        """GET /balance (any key type) -> {"RUB": amount}."""
        return self._request("GET", contract.BALANCE_PATH)

    # --- transport ---------------------------------------------------------------------------------
    def _headers(self) -> dict:
        if not self._key:
            raise IdgtlConfigurationError("No i-dgtl API key is configured for this account.")
        if any(ch in self._key for ch in "\r\n\t ") or not self._key.isascii() or not self._key.isprintable():
            raise IdgtlConfigurationError("The i-dgtl API key contains characters not allowed in an HTTP header.")
        return {"Authorization": f"Basic {self._key}", "Accept": "application/json"}

    def _throttle(self, method: str, path: str) -> None:
        """Wait for room in the account's token bucket (all workers share it); nothing is sent otherwise."""
        if self.rate_per_second <= 0:
            return
        try:
            ratelimit.acquire(
                self.rate_limit_key,
                burst=max(1, math.ceil(self.rate_per_second)),
                drain_per_second=self.rate_per_second,
                timeout=self.timeout[1],
            )
        except ratelimit.RateLimitTimeout:
            raise IdgtlTransientError(
                f"{method} {path}: the i-dgtl rate limit ({self.rate_per_second:g}/s) gave no room within "
                f"{self.timeout[1]:g} s; nothing was sent.",
                code=contract.ErrorCode.TOO_MANY_REQUESTS,
            ) from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        params=None,
        json=None,
        files=None,
        before_attempt: Callable[[], None] | None = None,
    ) -> Any:
        headers = self._headers()
        return self.with_retries(
            lambda: self._attempt(
                method, path, headers=headers, params=params, json=json, files=files, before_attempt=before_attempt
            )
        )

    def retry_delay(self, error, attempt):
        """Transient failures the request may be sent again after: up to ``max_retries`` more tries, after
        the server's Retry-After (at most RETRY_AFTER_MAX_SECONDS) or the backoff."""
        reason = getattr(error, "retry_reason", None)
        if not isinstance(error, IdgtlTransientError) or reason is None or attempt >= self.max_retries:
            return None
        if error.retry_after is not None and error.retry_after > RETRY_AFTER_MAX_SECONDS:
            return None
        metrics.record_idgtl_retry(reason)
        return error.retry_after if error.retry_after is not None else backoff_delay(self.backoff, attempt)

    def exchange_logged(self, what, response, error, duration_ms):
        method, path = what
        if response is None:
            if isinstance(error, requests.RequestException):
                kind = "timeout" if isinstance(error, requests.Timeout) else "connection error"
                logger.warning(
                    "i-dgtl %s %s -> %s (%s) in %.0f ms",
                    method,
                    path,
                    kind,
                    type(error).__name__,
                    duration_ms,
                    extra={
                        "idgtl_method": method,
                        "idgtl_path": path,
                        "idgtl_status": None,
                        "duration_ms": round(duration_ms),
                    },
                )
            return
        status = response.status_code
        # Successful reads (status polling: thousands per cycle) are DEBUG; writes and errors are kept.
        log = logger.warning if status >= 400 else logger.debug if method == "GET" else logger.info
        log(
            "i-dgtl %s %s -> %s in %.0f ms",
            method,
            path,
            status,
            duration_ms,
            extra={
                "idgtl_method": method,
                "idgtl_path": path,
                "idgtl_status": status,
                "duration_ms": round(duration_ms),
            },
        )

    def _attempt(
        self, method: str, path: str, *, headers: dict, params, json, files, before_attempt: Callable[[], None] | None
    ) -> Any:
        """One try: room in the rate limit, ``before_attempt``, the exchange, its answer or typed error."""
        is_post = method != "GET"
        self._throttle(method, path)
        if before_attempt is not None:
            before_attempt()
        try:
            response = self.send(
                method,
                self.api_url + path,
                timeout=self.timeout,
                what=(method, path),
                params=params,
                json=json,
                files=files,
                headers=headers,
            )
        except requests.RequestException as exc:
            kind = "timeout" if isinstance(exc, requests.Timeout) else "connection error"
            metrics.record_idgtl_error("timeout" if isinstance(exc, requests.Timeout) else "connection")
            if is_post and not _connection_surely_not_made(exc):
                raise IdgtlOutcomeUnknown(
                    f"{method} {path}: {kind} after the request was sent; it may have been processed."
                ) from exc
            raise IdgtlTransientError(f"{method} {path}: {kind} ({type(exc).__name__}).", retry_reason=kind) from exc

        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError:
                error_cls = IdgtlOutcomeUnknown if is_post else IdgtlTransientError
                raise error_cls(
                    f"{method} {path}: HTTP {status} with a body that is not JSON.", http_status=status
                ) from None

        code, msg = _error_from_body(response)
        metrics.record_idgtl_error(code, http_status=status)
        if status in (401, 403):
            raise IdgtlConfigurationError(msg, http_status=status, code=code)
        if status == 422:
            raise IdgtlValidationError(msg, http_status=status, code=code)
        if status == 404:
            raise IdgtlNotFound(msg, http_status=status, code=code)
        if status not in TRANSIENT_STATUSES and status < 500:
            raise IdgtlError(msg, http_status=status, code=code)

        retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        if is_post and status not in POST_SAFE_RETRY_STATUSES:
            raise IdgtlOutcomeUnknown(msg, http_status=status, code=code, retry_after=retry_after)
        raise IdgtlTransientError(msg, http_status=status, code=code, retry_after=retry_after, retry_reason=str(status))
