"""The only module that speaks HTTP to Bitrix24 (contract: docs/contracts/bitrix24.md).

The client knows HTTP and Bitrix24, nothing of our models: the portal's address and tokens come from a
token store its owner passes in (bitrix24/tokens.py; providers implements it over an Installation), and
the session, timeouts, retry loop and backoff are the shared HTTP base's (common/http.py).

Every REST call is a JSON ``POST`` to ``client_endpoint + method`` with the access token in
``auth``, after taking a slot from the portal's shared leaky bucket (common/ratelimit.py), always
with a timeout. The §1.3 error envelope becomes a typed error, matched on the ``error`` code
case-insensitively (bitrix24/contract.py says which code is which kind):

* ``expired_token`` / ``invalid_token``: the tokens are refreshed once (one refresh per portal at a
  time across all workers, which the store ensures; a worker that finds them already rotated reuses
  them), then the call is retried once.
* ``invalid_grant`` on refresh, ``APPLICATION_NOT_FOUND``, ``PORTAL_DELETED``: the store is told (it
  marks the installation "needs reinstall") and :class:`Bitrix24NeedsReinstall` is raised.
* ``302`` (portal renamed): re-POSTed to ``Location`` (never turned into a GET); the new domain
  and client_endpoint are handed to the store. The new address must pass the install endpoint's rules
  (bitrix24/urls.py: B24_ALLOWED_PORTAL_DOMAINS, https when B24_REQUIRE_HTTPS, no userinfo, nothing
  two URL parsers read differently), else :class:`Bitrix24RedirectRefused`: nothing is sent there
  nor saved. A client_endpoint in a refresh answer is taken under the same rules.
* Every connection to a portal goes through ``urls.portal_session()``: a host that resolves to a
  private, loopback or link-local address is refused at connect time (:class:`Bitrix24AddressRefused`).
* Inside ``call_deadline(seconds)`` (the install endpoint) timeouts, retries and rate-limit waits
  all end by the deadline: a web request never waits longer than its budget.
* ``QUERY_LIMIT_EXCEEDED``, 5xx, timeouts, network errors: retried with exponential backoff
  (settings.B24_MAX_RETRIES, settings.B24_RETRY_BACKOFF), then :class:`Bitrix24TransientError`.
* ``OPERATION_TIME_LIMIT``: the method is paused for this portal until ``operating_reset_at``; the
  pause is kept in the shared cache so every worker skips the call (no HTTP) and raises
  :class:`Bitrix24OperationTimeLimit` until then.

Tokens and the client secret are never logged nor put in exception texts: a call logs its method,
portal domain, HTTP status and duration.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from requests_hardened.ip_filter import InvalidIPAddress

from bitrix24 import contract
from bitrix24.contract import ErrorKind
from bitrix24.tokens import PortalAccess, RefreshCredentials, TokenGrant, TokenStore
from bitrix24.urls import portal_session, portal_url_refusal
from common import metrics, ratelimit
from common.http import HttpClient, backoff_delay

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_MAX = 5.0  # seconds; the read timeout is settings.B24_TIMEOUT


# --- Errors ----------------------------------------------------------------------------------------
class Bitrix24Error(Exception):
    """A Bitrix24 call failed. ``error`` is Bitrix24's code verbatim (e.g. ERROR_SENDER_NOT_FOUND)."""

    def __init__(self, error: str, description: str = "", *, http_status: int | None = None, method: str | None = None):
        super().__init__(error, description)
        self.error = error or ""
        self.description = description or ""
        self.http_status = http_status
        self.method = method

    def __str__(self):
        where = f"{self.method}: " if self.method else ""
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        desc = f": {self.description}" if self.description else ""
        return f"{where}{self.error}{status}{desc}"

    def __repr__(self):
        return (
            f"{type(self).__name__}(error={self.error!r}, description={self.description!r}, "
            f"http_status={self.http_status!r}, method={self.method!r})"
        )

    def __reduce__(self):  # pickles (Celery, multiprocessing) with every attribute, whatever the subclass
        return _rebuild_error, (type(self), self.args, self.__dict__.copy())


def _rebuild_error(cls, args, state):
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class Bitrix24AuthError(Bitrix24Error):
    """NO_AUTH_FOUND, invalid_token after a failed refresh, authorization_error, invalid_client..."""


class Bitrix24NeedsReinstall(Bitrix24AuthError):
    """invalid_grant on refresh, APPLICATION_NOT_FOUND, PORTAL_DELETED: the installation is marked."""


class Bitrix24AccessDenied(Bitrix24Error):
    """ACCESS_DENIED, insufficient_scope, user_access_error, INVALID_CREDENTIALS..."""


class Bitrix24MethodError(Bitrix24Error):
    """Method-specific 4xx (ERROR_SENDER_*, ERROR_MESSAGE_*, ERROR_METHOD_NOT_FOUND...): permanent."""


class Bitrix24TransientError(Bitrix24Error):
    """QUERY_LIMIT_EXCEEDED, 5xx, timeouts, network errors: raised after the bounded retries.

    ``retryable`` is False for temporary errors that must not be retried at once (OVERLOAD_LIMIT,
    OPERATION_TIME_LIMIT): a task should reschedule instead.
    """

    def __init__(self, error: str, description: str = "", *, retryable: bool = True, **kwargs):
        super().__init__(error, description, **kwargs)
        self.retryable = retryable


class Bitrix24OperationTimeLimit(Bitrix24TransientError):
    """OPERATION_TIME_LIMIT: ``method`` is paused for this portal until ``reset_at``."""

    def __init__(self, error: str, description: str = "", *, reset_at: datetime | None = None, **kwargs):
        super().__init__(error, description, retryable=False, **kwargs)
        self.reset_at = reset_at or _operating_reset_at(None)


class InstallationInactive(Bitrix24Error):
    """The installation is removed or needs a reinstall: no call was made."""


class Bitrix24RedirectRefused(Bitrix24Error):
    """A 302 pointed outside the portals we may call (B24_ALLOWED_PORTAL_DOMAINS, B24_REQUIRE_HTTPS).

    Permanent: no request was sent to the new address and nothing was saved.
    """


class Bitrix24AddressRefused(Bitrix24Error):
    """The portal's host resolved to a private, loopback or link-local address: no connection made."""


_KIND_CLASSES = {
    ErrorKind.AUTH: Bitrix24AuthError,
    ErrorKind.REFRESH: Bitrix24AuthError,
    ErrorKind.NEEDS_REINSTALL: Bitrix24NeedsReinstall,
    ErrorKind.ACCESS_DENIED: Bitrix24AccessDenied,
    ErrorKind.METHOD: Bitrix24MethodError,
    ErrorKind.QUERY_LIMIT: Bitrix24TransientError,
    ErrorKind.TRANSIENT: Bitrix24TransientError,
    ErrorKind.NO_RETRY_TRANSIENT: Bitrix24TransientError,
}


def error_from_envelope(
    error: str,
    description: str = "",
    *,
    http_status: int | None = None,
    method: str | None = None,
    payload: dict | None = None,
) -> Bitrix24Error:
    """The typed error for one §1.3 envelope (also used for batch ``result_error`` entries)."""
    kind = contract.error_kind(error, http_status)
    if kind is ErrorKind.OPERATION_TIME_LIMIT:
        return Bitrix24OperationTimeLimit(
            error, description, reset_at=_operating_reset_at(payload), http_status=http_status, method=method
        )
    if kind is ErrorKind.NO_RETRY_TRANSIENT:
        return Bitrix24TransientError(error, description, retryable=False, http_status=http_status, method=method)
    return _KIND_CLASSES[kind](error, description, http_status=http_status, method=method)


def _operating_reset_at(payload: dict | None) -> datetime:
    """``operating_reset_at`` of an OPERATION_TIME_LIMIT answer, or now + the default pause [A]."""
    value = None
    if isinstance(payload, dict):
        value = payload.get("operating_reset_at")
        if value is None and isinstance(payload.get("time"), dict):
            value = payload["time"].get("operating_reset_at")
    now = timezone.now()
    try:
        reset_at = datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return now + timedelta(seconds=contract.OPERATION_TIME_LIMIT_DEFAULT_PAUSE)
    return reset_at if reset_at > now else now + timedelta(seconds=1)


# --- Small helpers ----------------------------------------------------------------------------------
_deadline: ContextVar[float | None] = ContextVar("bitrix24_call_deadline", default=None)


@contextmanager
def call_deadline(seconds: float):
    """Every Bitrix24 call inside ends within ``seconds`` (monotonic), retries and waits included."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _remaining(method: str = "") -> float | None:
    """Seconds left before the current deadline (None: no deadline); past it, a non-retryable error."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0.05:
        raise Bitrix24TransientError(
            "DEADLINE_EXCEEDED", "out of time for this request", retryable=False, method=method or None
        )
    return left


def _timeouts(method: str = "") -> tuple[float, float]:
    connect, read = min(CONNECT_TIMEOUT_MAX, settings.B24_TIMEOUT), settings.B24_TIMEOUT
    left = _remaining(method)
    if left is not None:
        connect, read = min(connect, left), min(read, left)
    return connect, read


def _parse_json(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        return None


def _netloc(url: str) -> str:
    return urlsplit(url).netloc


def _redirect_target(url: str, location: str, *, method: str, domain: str) -> str:
    """The absolute URL a 302 sends us to, or Bitrix24RedirectRefused (nothing sent there)."""
    target = urljoin(url, location)
    refusal = portal_url_refusal(target)
    if refusal is not None:
        logger.warning(
            "bitrix24 %s @ %s: redirect refused: %s",
            method,
            domain,
            refusal,
            extra={"b24_method": method, "b24_domain": domain},
        )
        raise Bitrix24RedirectRefused(
            "REDIRECT_REFUSED", f"redirect refused: {refusal}", http_status=302, method=method
        )
    return target


def php_query(params: dict | None) -> str:
    """URL-encode params PHP-style (``NAME[en]=...``, ``list[0]=...``) for batch command strings."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}[{k}]", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        elif value is not None:
            if isinstance(value, bool):
                value = "1" if value else "0"
            pairs.append((prefix, str(value)))

    for key, value in (params or {}).items():
        walk(str(key), value)
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs)


def _as_map(value) -> dict:
    """A PHP map from JSON: ``{}`` or ``[]`` when empty, a list when the keys were 0..n-1."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _pause_key(portal_key: str, method: str) -> str:
    # The operating limit is per application and method (docs/contracts/bitrix24.md §1.4): the store's key names
    # one (application, portal) pair (an installation), so two applications on one portal do not pause each other.
    return f"b24:optime:{portal_key}:{method.lower()}"


def _log_call(method: str, domain: str, status, duration_ms: float, note: str = ""):
    level = logging.INFO if isinstance(status, int) and status < 400 else logging.WARNING
    logger.log(
        level,
        "bitrix24 %s @ %s -> %s%s in %.0f ms",
        method,
        domain,
        status,
        f" ({note})" if note else "",
        duration_ms,
        extra={"b24_method": method, "b24_domain": domain, "b24_status": status, "duration_ms": round(duration_ms)},
    )


# --- One HTTP exchange ------------------------------------------------------------------------------
@dataclass
class _Answer:
    status: int
    payload: Any
    location: str | None = None


RATE_LIMIT_ERRORS = {contract.QUERY_LIMIT_EXCEEDED, contract.OPERATION_TIME_LIMIT, "OVERLOAD_LIMIT"}


class _Bitrix24Http(HttpClient):
    """Bitrix24's rules over the shared HTTP base: its errors, what is retried, the deadline, its log lines."""

    def exchange(self, http_method: str, url: str, *, method: str, domain: str, **kwargs) -> requests.Response:
        """One request with timeouts, no redirects followed, logged without secrets.

        Network failures become Bitrix24TransientError; the requests exception is neither chained nor
        shown, because its text holds the URL (the OAuth query has the client secret and refresh token).
        """
        try:
            return self.send(
                http_method,
                url,
                timeout=_timeouts(method),
                what=(method, domain),
                headers={"Accept": "application/json"},
                **kwargs,
            )
        except InvalidIPAddress:
            raise Bitrix24AddressRefused(
                "ADDRESS_REFUSED", f"{domain} resolves to a private or special address", method=method
            ) from None
        except requests.RequestException as exc:
            kind = "timeout" if isinstance(exc, requests.Timeout) else "connection error"
            raise Bitrix24TransientError("NETWORK_ERROR", f"{kind} ({type(exc).__name__})", method=method) from None

    def exchange_logged(self, what, response, error, duration_ms):
        method, domain = what
        if response is not None:
            _log_call(method, domain, response.status_code, duration_ms)
        elif isinstance(error, InvalidIPAddress):
            _log_call(method, domain, "refused", duration_ms, "private or special address")
        elif isinstance(error, requests.RequestException):
            kind = "timeout" if isinstance(error, requests.Timeout) else "connection error"
            _log_call(method, domain, kind, duration_ms, type(error).__name__)

    def post(self, url: str, body: dict, *, method: str, domain: str) -> _Answer:
        """One JSON POST, no redirects followed. Network failures become Bitrix24TransientError."""
        response = self.exchange("POST", url, method=method, domain=domain, json=body)
        location = response.headers.get("Location") if response.is_redirect else None
        return _Answer(response.status_code, _parse_json(response), location)

    def retry_delay(self, error, attempt):
        """QUERY_LIMIT_EXCEEDED, 5xx, network errors: B24_MAX_RETRIES more tries with backoff, within the deadline."""
        if not isinstance(error, Bitrix24TransientError):
            return None
        if error.error in RATE_LIMIT_ERRORS:
            metrics.record_bitrix24_rate_limit_hit(error.error)
        if not error.retryable or attempt >= settings.B24_MAX_RETRIES:
            return None
        pause = backoff_delay(settings.B24_RETRY_BACKOFF, attempt)
        left = _remaining(error.method or "")
        if left is not None and pause >= left:
            return None
        metrics.record_bitrix24_retry(error.error)
        return pause


def _result_or_error(answer: _Answer, method: str):
    """The ``result`` of a success envelope, or the typed error (not raised) of any other answer."""
    payload = answer.payload
    if isinstance(payload, dict) and payload.get("error"):
        return None, error_from_envelope(
            str(payload["error"]),
            str(payload.get("error_description") or ""),
            http_status=answer.status,
            method=method,
            payload=payload,
        )
    if 200 <= answer.status < 300 and isinstance(payload, dict) and "result" in payload:
        return payload["result"], None
    if answer.status >= 500 or answer.status == 429 or 200 <= answer.status < 300:
        return None, Bitrix24TransientError(
            "UNEXPECTED_ANSWER",
            f"HTTP {answer.status} without a JSON envelope",
            http_status=answer.status,
            method=method,
        )
    return None, Bitrix24MethodError(
        "UNEXPECTED_ANSWER", f"HTTP {answer.status} without a JSON envelope", http_status=answer.status, method=method
    )


def ratelimit_acquire(key: str, burst: int, drain_per_second: float):
    left = _remaining()
    try:
        ratelimit.acquire(
            key,
            burst,
            drain_per_second,
            timeout=settings.B24_TIMEOUT if left is None else min(left, settings.B24_TIMEOUT),
        )
    except ratelimit.RateLimitTimeout as exc:
        # Not retried here: the wait was already as long as a call may take; the caller reschedules.
        raise Bitrix24TransientError(
            contract.QUERY_LIMIT_EXCEEDED,
            f"local rate limit: no room within {settings.B24_TIMEOUT:.0f}s",
            retryable=False,
        ) from exc


# --- Token refresh ----------------------------------------------------------------------------------
_refresh_locks_guard = threading.Lock()
_refresh_locks: dict[str, threading.Lock] = {}


def _refresh_lock(portal_key: str) -> threading.Lock:
    """One refresh per portal at a time among the threads of a process (the store covers processes)."""
    with _refresh_locks_guard:
        return _refresh_locks.setdefault(portal_key, threading.Lock())


def oauth_token_refresh(
    *, client_id: str, client_secret: str, refresh_token: str, domain: str = "", session: requests.Session | None = None
) -> dict:
    """GET B24_OAUTH_URL?grant_type=refresh_token... -> the token payload. Typed errors; secrets never shown.

    The OAuth server is the one party that can say which portal (``member_id``, ``client_endpoint``)
    a refresh token belongs to, and that it was issued to our application (docs/contracts/bitrix24.md §4.3). Each
    success rotates the refresh token: the one sent is dead afterwards.
    """
    params = {
        "grant_type": contract.GRANT_REFRESH_TOKEN,
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    oauth_url = settings.B24_OAUTH_URL or contract.DEFAULT_OAUTH_URL
    http = _Bitrix24Http(session or requests.Session())  # the OAuth server is configured, not named by a portal
    domain = domain or _netloc(oauth_url)

    def attempt():
        response = http.exchange("GET", oauth_url, method="oauth.refresh", domain=domain, params=params)
        payload = _parse_json(response)
        if isinstance(payload, dict) and payload.get("error"):
            error = error_from_envelope(
                str(payload["error"]),
                str(payload.get("error_description") or ""),
                http_status=response.status_code,
                method="oauth.refresh",
            )
            if isinstance(error, Bitrix24MethodError):  # invalid_request and unknown OAuth codes
                error = Bitrix24AuthError(
                    error.error, error.description, http_status=error.http_status, method="oauth.refresh"
                )
            raise error
        if response.status_code == 200 and isinstance(payload, dict) and payload.get("access_token"):
            return payload
        cls = (
            Bitrix24TransientError if response.status_code >= 500 or response.status_code == 200 else Bitrix24AuthError
        )
        raise cls(
            "UNEXPECTED_ANSWER",
            f"HTTP {response.status_code} without tokens",
            http_status=response.status_code,
            method="oauth.refresh",
        )

    return http.with_retries(attempt)


def token_grant(payload: dict, credentials: RefreshCredentials) -> TokenGrant:
    """What a refresh answer gives the store to save: the rotated tokens and their expiry, and the portal's
    addresses and scope when the answer names them (a client_endpoint only under bitrix24/urls.py's rules)."""
    now = timezone.now()
    expires_at = None
    try:
        if payload.get("expires"):
            expires_at = datetime.fromtimestamp(float(payload["expires"]), tz=UTC)
        elif payload.get("expires_in"):
            expires_at = now + timedelta(seconds=float(payload["expires_in"]))
    except (TypeError, ValueError, OverflowError, OSError):
        expires_at = None
    client_endpoint = domain = None
    endpoint = payload.get("client_endpoint")
    if isinstance(endpoint, str) and endpoint and endpoint != credentials.client_endpoint:
        refusal = portal_url_refusal(endpoint)
        if refusal is None:
            client_endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
            domain = _netloc(endpoint)
        else:  # the rotated tokens are still stored; the portal keeps its address
            logger.warning(
                "bitrix24 oauth.refresh @ %s: client_endpoint not taken: %s",
                credentials.domain,
                refusal,
                extra={"b24_method": "oauth.refresh", "b24_domain": credentials.domain},
            )
    server_endpoint, scope = payload.get("server_endpoint"), payload.get("scope")
    return TokenGrant(
        access_token=str(payload["access_token"]),
        refresh_token=str(payload["refresh_token"]) if payload.get("refresh_token") else None,
        expires_at=expires_at or now + timedelta(seconds=contract.ACCESS_TOKEN_LIFETIME),
        client_endpoint=client_endpoint,
        domain=domain,
        server_endpoint=server_endpoint if isinstance(server_endpoint, str) and server_endpoint else None,
        scope=scope if isinstance(scope, str) and scope else None,
    )


# --- The client -------------------------------------------------------------------------------------
@dataclass
class BatchResult:
    """``results[key]`` for commands that succeeded, ``errors[key]`` (typed) for those that failed."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Bitrix24Error] = field(default_factory=dict)


class Bitrix24Client(_Bitrix24Http):
    """REST calls to one portal with its OAuth tokens, which ``store`` keeps (bitrix24/tokens.py)."""

    def __init__(self, store: TokenStore, *, session: requests.Session | None = None):
        super().__init__(session or portal_session())
        self.store = store

    def __repr__(self):
        return f"Bitrix24Client(domain={self.store.load().domain!r})"

    # --- calls -------------------------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None) -> Any:
        """Call ``method`` and return the ``result`` value (see the module docstring for the rules)."""
        self._ensure_active(method)
        self._check_paused(method)
        return self._call(method, params or {})

    def batch(self, commands: dict[str, tuple[str, dict]], *, halt: bool = False) -> BatchResult:
        """Up to 50 commands in one request (one hit on the leaky bucket).

        Commands of a method paused by OPERATION_TIME_LIMIT are not sent; they get that error.
        """
        if len(commands) > contract.BATCH_MAX_COMMANDS:
            raise ValueError(f"batch takes at most {contract.BATCH_MAX_COMMANDS} commands, got {len(commands)}")
        self._ensure_active(contract.METHOD_BATCH)
        outcome = BatchResult()
        cmd: dict[str, str] = {}
        pauses: dict[str, Bitrix24OperationTimeLimit | None] = {}  # one look per method, not per command
        for key, (method, params) in commands.items():
            if method not in pauses:
                pauses[method] = self._paused_error(method)
            paused = pauses[method]
            if paused is not None:
                outcome.errors[str(key)] = paused
                continue
            query = php_query(params)
            cmd[str(key)] = f"{method}?{query}" if query else method
        if not cmd:
            return outcome
        result = self._call(contract.METHOD_BATCH, {"halt": 1 if halt else 0, "cmd": cmd})
        result = _as_map(result)
        methods = {str(k): m for k, (m, _p) in commands.items()}
        for key, value in _as_map(result.get("result")).items():
            outcome.results[str(key)] = value
        for key, value in _as_map(result.get("result_error")).items():
            value = value if isinstance(value, dict) else {"error": str(value)}
            error = error_from_envelope(
                str(value.get("error") or "UNKNOWN_ERROR"),
                str(value.get("error_description") or ""),
                method=methods.get(str(key)),
                payload=value,
            )
            if isinstance(error, Bitrix24OperationTimeLimit) and error.method:
                self._pause(error.method, error.reset_at)
            outcome.errors[str(key)] = error
        return outcome

    # --- conveniences ------------------------------------------------------------------------------
    def sender_add(self, code: str, handler: str, name, description=None, type: str = contract.SENDER_TYPE_SMS):
        params = {"CODE": code, "TYPE": type, "HANDLER": handler, "NAME": name}
        if description:
            params["DESCRIPTION"] = description
        return self.call(contract.METHOD_SENDER_ADD, params)

    def sender_update(self, code: str, **fields):
        """``fields``: handler, name, description (any case)."""
        params = {"CODE": code}
        params.update({k.upper(): v for k, v in fields.items() if v is not None})
        return self.call(contract.METHOD_SENDER_UPDATE, params)

    def sender_delete(self, code: str):
        return self.call(contract.METHOD_SENDER_DELETE, {"CODE": code})

    def sender_list(self) -> list[str]:
        result = self.call(contract.METHOD_SENDER_LIST)
        if isinstance(result, dict):
            result = list(result.values())
        return [str(code) for code in (result or [])]

    def message_status_update(self, code: str, message_id: str, status: str):
        if status not in contract.MESSAGE_STATUSES:
            raise ValueError(f"unknown Bitrix24 message status {status!r}")
        return self.call(
            contract.METHOD_MESSAGE_STATUS_UPDATE, {"CODE": code, "MESSAGE_ID": message_id, "STATUS": status}
        )

    def app_info(self) -> dict:
        return self.call(contract.METHOD_APP_INFO)

    def event_bind(self, event: str, handler: str, **extra):
        return self.call(contract.METHOD_EVENT_BIND, {"event": event, "handler": handler, **extra})

    def event_get(self) -> list[dict]:
        result = self.call(contract.METHOD_EVENT_GET)
        return list(result.values()) if isinstance(result, dict) else list(result or [])

    # --- internals ---------------------------------------------------------------------------------
    def _ensure_active(self, method: str):
        inactive = self.store.load().inactive
        if inactive:
            raise InstallationInactive("INSTALLATION_INACTIVE", inactive, method=method)

    def _paused_error(self, method: str) -> Bitrix24OperationTimeLimit | None:
        until = cache.get(_pause_key(self.store.load().key, method))
        if until is None:
            return None
        reset_at = datetime.fromtimestamp(float(until), tz=UTC)
        if reset_at <= timezone.now():
            return None
        return Bitrix24OperationTimeLimit(
            contract.OPERATION_TIME_LIMIT, "paused until operating_reset_at", reset_at=reset_at, method=method
        )

    def _check_paused(self, method: str):
        error = self._paused_error(method)
        if error is not None:
            raise error

    def _pause(self, method: str, reset_at: datetime):
        seconds = (reset_at - timezone.now()).total_seconds()
        if seconds > 0:
            cache.set(_pause_key(self.store.load().key, method), reset_at.timestamp(), timeout=seconds + 1)

    def _call(self, method: str, params: dict) -> Any:
        refreshed = False
        while True:
            try:
                return self.with_retries(lambda: self._attempt(method, params))
            except Bitrix24AuthError as exc:
                if contract.error_kind(exc.error, exc.http_status) is not ErrorKind.REFRESH:
                    raise
                if refreshed:
                    raise Bitrix24AuthError(
                        exc.error, exc.description, http_status=exc.http_status, method=method
                    ) from None
                self.refresh_tokens(failed_access_token=self._token_used)
                refreshed = True

    def refresh_tokens(self, *, failed_access_token: str | None = None) -> None:
        """Rotate the portal's tokens at the OAuth server through the store (one refresh per portal at a
        time; a token already rotated by another worker is reused without a request).
        ``failed_access_token``: the token that was refused (default: the store's current one)."""
        access = self.store.load()
        failed = access.access_token if failed_access_token is None else failed_access_token
        with _refresh_lock(access.key):  # threads of one process; the store's lock covers processes
            self.store.refresh(failed_access_token=failed, exchange=self._exchange_refresh_token)

    def _exchange_refresh_token(self, credentials: RefreshCredentials) -> TokenGrant:
        payload = oauth_token_refresh(
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            refresh_token=credentials.refresh_token,
            domain=credentials.domain,
            session=self.session,
        )
        return token_grant(payload, credentials)

    def _attempt(self, method: str, params: dict) -> Any:
        access = self.store.load()
        url = access.client_endpoint.rstrip("/") + "/" + method
        self._token_used = access.access_token
        body = {**params, contract.AUTH_PARAM: access.access_token}
        for _hop in range(contract.MAX_REDIRECTS + 1):
            ratelimit_acquire(access.rate_limit_key, access.rate_limit_burst, access.rate_limit_drain_per_second)
            answer = self.post(url, body, method=method, domain=access.domain)
            if answer.location:
                try:
                    url = _redirect_target(url, answer.location, method=method, domain=access.domain)
                except Bitrix24RedirectRefused as exc:
                    self.store.call_failed(exc)
                    raise
                access = self._save_new_endpoint(url, access)
                continue
            result, error = _result_or_error(answer, method)
            if error is None:
                return result
            if isinstance(error, Bitrix24OperationTimeLimit):
                self._pause(method, error.reset_at)
            elif isinstance(error, Bitrix24NeedsReinstall):
                self.store.call_failed(error)
            raise error
        raise Bitrix24TransientError("TOO_MANY_REDIRECTS", "", method=method)

    def _save_new_endpoint(self, new_url: str, access: PortalAccess) -> PortalAccess:
        """The portal moved: the endpoint's path on the new scheme and host; the store saves domain and endpoint."""
        new = urlsplit(new_url)
        old = urlsplit(access.client_endpoint)
        endpoint = urlunsplit((new.scheme, new.netloc, old.path, "", ""))  # _redirect_target: absolute, no userinfo
        if endpoint == access.client_endpoint:
            return access
        self.store.endpoint_moved(client_endpoint=endpoint, domain=new.netloc)
        logger.info("bitrix24 portal moved to %s", new.netloc, extra={"b24_domain": new.netloc})
        return self.store.load()
