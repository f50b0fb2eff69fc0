"""A contract-faithful fake of Bitrix24 portals and their OAuth server (docs/contracts/bitrix24.md §6).

Real HTTP on 127.0.0.1 (stdlib ThreadingHTTPServer), thread-safe. One main server (``url``) serves the
OAuth token endpoint (``oauth_url``) and sandbox controls under ``/__fake__/``; every portal gets a
listener of its own, so its ``client_endpoint`` is ``http://127.0.0.1:<port>/rest/`` and its
``domain`` is that endpoint's host:port (what a client saves after a rename) unless a domain label is
given to :meth:`FakeBitrix24.add_portal`.

Portal routes: ``POST|GET /rest/{method}`` and ``/rest/{method}.json`` (OAuth, token from ``auth``,
``access_token`` or ``Authorization: Bearer``; JSON, form and query parameters, PHP-style keys;
method and parameter names case-insensitive) and ``/rest/{user_id}/{code}/{method}`` (incoming
webhook: messageservice answers 403 ACCESS_DENIED "Application context required").

Checks, in order, for an OAuth call: leaky bucket (burst 50, 2/s by default -> 503
QUERY_LIMIT_EXCEEDED), ``fail_next`` injections, token (401 NO_AUTH_FOUND / invalid_token /
expired_token), method exists (404 ERROR_METHOD_NOT_FOUND), scope (403 insufficient_scope),
OPERATION_TIME_LIMIT switch (429), then the method's own validation (§2.1–§2.5, exact strings).

Application lifecycle as Bitrix24 runs it: :meth:`FakeBitrix24.update_application` deletes every
provider of the application on the portal, then posts ONAPPUPDATE to the handlers bound to it
(§4.6); :meth:`FakeBitrix24.uninstall` posts ONAPPUNINSTALL. A legacy portal
(``add_portal(legacy=True)`` or ``portal.has_sender_update = False``: before April 2026, on-premise)
answers ``messageservice.sender.update`` as an unknown method (404 ERROR_METHOD_NOT_FOUND).

Assumptions where the contract is silent [A]: a second ``event.bind`` of the same event and handler
answers 400 ``ERROR_EVENT_ALREADY_BOUND`` "Handler already binded" (the contract says: treat an error
on a re-bind as success after event.get); HANDLER hosts named ``localhost`` are accepted unless
``strict_handler_host=True`` (pytest-django's live server is http://localhost:PORT); the old access
token stays valid until it expires after a refresh; ``sender.update`` validates after finding the
sender. Multipart bodies: text fields only (files are read as text).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import policy as email_policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode, urlsplit

import qs_codec
import requests
from qs_codec import DecodeOptions, Duplicates

# The fake reads Bitrix24's facts from the contract module; it needs no Django settings for that.
try:  # pragma: no cover - both paths are exercised depending on how the fake is started
    from bitrix24 import contract as c
except Exception:  # noqa: BLE001 - Django not configured: configure a minimal one
    import django
    from django.conf import settings as _settings

    if not _settings.configured:
        _settings.configure(USE_I18N=False)
        django.setup()
    from bitrix24 import contract as c

D = c.Descriptions
E = c.MethodErrors
_DECODE = DecodeOptions(duplicates=Duplicates.LAST, list_limit=1000, depth=10)
_ids = itertools.count(1)

KNOWN_EVENTS = {"ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONAPPPAYMENT", "ONCRMLEADADD", "ONCRMDEALADD"}
METHOD_SCOPES = {
    "app.info": None,
    "event.bind": None,
    "event.get": None,
    "event.unbind": None,
    "batch": None,
    "messageservice.sender.add": "messageservice",
    "messageservice.sender.update": "messageservice",
    "messageservice.sender.list": "messageservice",
    "messageservice.sender.delete": "messageservice",
    "messageservice.message.status.update": "messageservice",
}


class RestError(Exception):
    def __init__(self, status: int, error: str, description: str = "", extra: dict | None = None):
        super().__init__(error)
        self.status, self.error, self.description, self.extra = status, error, description, extra or {}

    def envelope(self) -> dict:
        return {"error": self.error, "error_description": self.description, **self.extra}


@dataclass
class Token:
    value: str
    portal: FakePortal
    user_id: int
    is_admin: bool
    expires_at: float
    scope: set
    revoked: bool = False


@dataclass
class FakePortal:
    domain: str
    member_id: str
    client_id: str
    client_secret: str
    app_code: str
    client_endpoint: str = ""
    admin_access_token: str = ""
    admin_refresh_token: str = ""
    application_token: str = ""
    admin_user_id: int = 1
    scope: str = "crm,messageservice"
    status: str = "L"
    installed: bool = True
    has_sender_update: bool = True  # False: a legacy portal, sender.update is an unknown method (§2.2)
    app_version: int = 1  # the installed application's version (data[VERSION] of ONAPPUPDATE)
    providers: dict = field(default_factory=dict)  # CODE -> {"CODE","TYPE","HANDLER","NAME","DESCRIPTION"}
    messages: dict = field(default_factory=dict)  # message_id -> {"code","author_user_id","status"}
    message_statuses: dict = field(default_factory=dict)  # message_id -> [statuses accepted, in order]
    calls: list = field(default_factory=list)  # (method, params without the token)
    event_bindings: list = field(default_factory=list)  # {"event","handler","auth_type","event_type"}
    domain_is_label: bool = False
    server: Any = None  # the portal's listener
    old_servers: list = field(default_factory=list)  # listeners of former domains (answer 302)
    bucket_level: float = 0.0
    bucket_ts: float = 0.0
    blocked_methods: dict = field(default_factory=dict)  # method -> operating_reset_at (unix)

    def __repr__(self):
        return f"FakePortal(domain={self.domain!r}, member_id={self.member_id!r})"


@dataclass
class RecordedRequest:
    portal: str | None
    http_method: str
    path: str
    method: str | None
    params: dict
    status: int


def _hex(n=16) -> str:
    return secrets.token_hex(n)


def _ci_get(params: dict, name: str, default=None):
    """A top-level parameter, name matched case-insensitively."""
    if name in params:
        return params[name]
    lower = name.lower()
    for key, value in params.items():
        if str(key).lower() == lower:
            return value
    return default


def _php_map(items: dict):
    """PHP json_encode of an array: [] when empty, a list when keys are 0..n-1, else an object."""
    if not items:
        return []
    keys = list(items)
    if keys == [str(i) for i in range(len(keys))]:
        return list(items.values())
    return dict(items)


def _is_dotted_or_local(host: str | None, strict: bool) -> bool:
    if not host:
        return False
    if "." in host:
        return True
    return not strict and host == "localhost"


def _time_block(now: float, extra: dict | None = None) -> dict:
    block = {
        "start": now,
        "finish": time.time(),
        "duration": time.time() - now,
        "processing": 0,
        "date_start": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now)),
        "date_finish": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "operating_reset_at": int(now) + 600,
        "operating": 0,
    }
    block.update(extra or {})
    return block


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, fake: FakeBitrix24, portal: FakePortal | None):
        self.fake = fake
        self.portal = portal
        self.moved_to: FakePortal | None = None  # set when this listener belongs to a former domain
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _params(self, body: bytes) -> dict:
        url = urlsplit(self.path)
        params: dict = dict(qs_codec.decode(url.query, _DECODE)) if url.query else {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body:
            if ctype == "application/json":
                try:
                    data = json.loads(body.decode("utf-8"))
                except ValueError:
                    raise RestError(400, "INVALID_REQUEST", "Invalid JSON body") from None
                if isinstance(data, dict):
                    params.update(data)
            elif ctype in ("application/x-www-form-urlencoded", ""):
                params.update(qs_codec.decode(body.decode("utf-8", "replace"), _DECODE))
            elif ctype == "multipart/form-data":
                params.update(qs_codec.decode(urlencode(self._multipart_pairs(body)), _DECODE))
        return params

    def _multipart_pairs(self, body: bytes) -> list[tuple[str, str]]:
        """The fields of a multipart/form-data body (PHP-style names kept for qs decoding)."""
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        message = BytesParser(policy=email_policy.HTTP).parsebytes(head + body)
        pairs = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True) or b""
                pairs.append((str(name), payload.decode(part.get_content_charset() or "utf-8", "replace")))
        return pairs

    def send_json(self, status: int, payload, headers: dict | None = None):
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8") if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, http_method: str):
        body = self._body()
        fake = self.server.fake
        try:
            if self.server.moved_to is not None:
                target = self.server.moved_to
                location = target.client_endpoint.rstrip("/").rsplit("/rest", 1)[0] + self.path
                fake._record(RecordedRequest(None, http_method, self.path, None, {}, 302))
                return self.send_json(302, None, {"Location": location})
            params = self._params(body)
            path = urlsplit(self.path).path
            if self.server.portal is None:
                status, payload = fake._main_route(http_method, path, params)
            else:
                status, payload = fake._portal_route(self.server.portal, http_method, path, params, self.headers)
        except RestError as exc:
            status, payload = exc.status, exc.envelope()
        self.send_json(status, payload)


class FakeBitrix24:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        enforce_rate_limit: bool = True,
        burst: int = 50,
        drain_per_second: float = 2.0,
        strict_handler_host: bool = False,
        outbound_timeout: float = 15.0,
        record_limit: int | None = None,
    ):
        self.host = host
        self.port = port
        self._initial_rate_limit = (enforce_rate_limit, burst, drain_per_second)
        self.strict_handler_host = strict_handler_host
        self.outbound_timeout = outbound_timeout
        self.record_limit = record_limit  # None: keep every recorded request (tests)
        self.lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._reset_state()

    # --- lifecycle ---------------------------------------------------------------------------------
    def _reset_state(self):
        self.enforce_rate_limit, self.burst, self.drain_per_second = self._initial_rate_limit
        self.portals: dict[str, FakePortal] = {}  # member_id -> portal
        self.applications: set[tuple[str, str]] = set()  # (client_id, client_secret) the OAuth server knows
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, dict] = {}  # value -> {"portal","user_id","used"}
        # Logs for assertions (bounded by record_limit for a long-running sandbox).
        self.requests: deque[RecordedRequest] = deque(maxlen=self.record_limit)
        self.oauth_requests: deque[dict] = deque(maxlen=self.record_limit)  # every /oauth/token/ call + status
        self.outbound: deque[dict] = deque(maxlen=self.record_limit)  # every POST the fake made: url, form, status
        self._failures: list[dict] = []
        self.method_delays: dict[str, float] = {}  # method -> seconds a REST call of it takes
        self.oauth_delay = 0.0  # seconds the OAuth server takes to answer
        self.operation_time_limited: dict[str, float] = {}  # method -> reset_at, for every portal

    def start(self) -> FakeBitrix24:
        self._server = _Server((self.host, self.port), self, None)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-bitrix24", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        self._stop_portal_servers()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self):
        """Forget every portal, token, request and switch (rate limit settings are restored too)."""
        with self.lock:
            self._stop_portal_servers()
            self._reset_state()

    def _stop_portal_servers(self):
        for portal in list(getattr(self, "portals", {}).values()):
            for server in [portal.server, *portal.old_servers]:
                if server is not None:
                    server.shutdown()
                    server.server_close()
            portal.server, portal.old_servers = None, []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def oauth_url(self) -> str:
        return self.url + "/oauth/token/"

    @property
    def server_endpoint(self) -> str:
        return self.url + "/rest/"

    @property
    def refresh_count(self) -> int:
        """Successful refresh_token grants so far."""
        return sum(1 for r in self.oauth_requests if r.get("grant_type") == "refresh_token" and r["status"] == 200)

    def _listen(self, portal: FakePortal, port: int = 0) -> _Server:
        server = _Server((self.host, port), self, portal)
        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-bitrix24-{portal.member_id}",
            daemon=True,
        ).start()
        return server

    # --- portals and tokens ------------------------------------------------------------------------
    def add_portal(
        self,
        *,
        domain: str | None = None,
        member_id: str | None = None,
        client_id: str,
        client_secret: str,
        app_code: str | None = None,
        scope: str = "crm,messageservice",
        port: int = 0,
        legacy: bool = False,
    ) -> FakePortal:
        """A portal with our app installed: admin (user 1) tokens, application_token, an empty provider list.

        ``legacy``: the portal predates messageservice.sender.update (answered as an unknown method).
        """
        with self.lock:
            portal = FakePortal(
                domain=domain or "",
                member_id=member_id or _hex(16),
                client_id=client_id,
                client_secret=client_secret,
                app_code=app_code or client_id,
                scope=scope,
                domain_is_label=bool(domain),
                application_token=_hex(16),
                has_sender_update=not legacy,
                calls=deque(maxlen=self.record_limit),
            )
            portal.server = self._listen(portal, port)
            self._set_endpoint(portal, portal.server)
            portal.admin_access_token, portal.admin_refresh_token = self._issue_pair(portal, portal.admin_user_id)
            portal.bucket_ts = time.monotonic()
            self.portals[portal.member_id] = portal
            return portal

    def add_application(self, *, client_id: str, client_secret: str):
        """An application registered with Bitrix24 (its OAuth credentials work) even before any portal has it."""
        with self.lock:
            self.applications.add((client_id, client_secret))

    def _set_endpoint(self, portal: FakePortal, server: _Server):
        netloc = f"{self.host}:{server.server_address[1]}"
        portal.client_endpoint = f"http://{netloc}/rest/"
        if not portal.domain_is_label:
            portal.domain = netloc

    def _issue_pair(self, portal: FakePortal, user_id: int, *, with_refresh: bool = True) -> tuple[str, str]:
        access = _hex(24)
        self.tokens[access] = Token(
            access,
            portal,
            user_id,
            user_id == portal.admin_user_id,
            time.time() + c.ACCESS_TOKEN_LIFETIME,
            set(portal.scope.split(",")),
        )
        refresh = ""
        if with_refresh:
            refresh = _hex(24)
            self.refresh_tokens[refresh] = {"portal": portal, "user_id": user_id, "used": False}
        return access, refresh

    def user_token(
        self, portal: FakePortal, user_id: int, *, admin: bool | None = None, scope: str | None = None
    ) -> str:
        """An access token of another user (non-admin unless told), e.g. to test ACCESS_DENIED."""
        with self.lock:
            access, _ = self._issue_pair(portal, user_id, with_refresh=False)
            token = self.tokens[access]
            if admin is not None:
                token.is_admin = admin
            if scope is not None:
                token.scope = set(scope.split(","))
            return access

    def expire_access_tokens(self, portal: FakePortal):
        with self.lock:
            for token in self.tokens.values():
                if token.portal is portal:
                    token.expires_at = time.time() - 1

    def revoke_refresh_tokens(self, portal: FakePortal):
        """Every refresh token of the portal now gets invalid_grant."""
        with self.lock:
            for entry in self.refresh_tokens.values():
                if entry["portal"] is portal:
                    entry["used"] = True

    def set_scope(self, portal: FakePortal, scope: str):
        """Change the scope of the portal's app and of every token already issued (insufficient_scope)."""
        with self.lock:
            portal.scope = scope
            for token in self.tokens.values():
                if token.portal is portal:
                    token.scope = set(scope.split(","))

    def rename_portal(self, portal: FakePortal, new_domain: str | None = None) -> FakePortal:
        """The portal moves to a new listener; the old one answers 302 with the new Location."""
        with self.lock:
            old = portal.server
            old.moved_to = portal
            portal.old_servers.append(old)
            portal.server = self._listen(portal)
            if new_domain:
                portal.domain, portal.domain_is_label = new_domain, True
            self._set_endpoint(portal, portal.server)
            return portal

    def fail_next(
        self,
        n: int,
        error: str = c.QUERY_LIMIT_EXCEEDED,
        status: int = 503,
        method: str | None = None,
        description: str | None = None,
    ):
        """The next ``n`` REST calls (of ``method``, if given) answer this error envelope."""
        with self.lock:
            self._failures.append(
                {
                    "n": n,
                    "error": error,
                    "status": status,
                    "method": method.lower() if method else None,
                    "description": description
                    if description is not None
                    else (D.QUERY_LIMIT if error == c.QUERY_LIMIT_EXCEEDED else error),
                }
            )

    def set_delay(self, method: str, seconds: float):
        """REST calls of ``method`` take ``seconds`` before they are answered (0 clears): a slow portal."""
        with self.lock:
            if seconds > 0:
                self.method_delays[method.lower()] = seconds
            else:
                self.method_delays.pop(method.lower(), None)

    def set_operation_time_limit(self, method: str, reset_in: float = 60.0, portal: FakePortal | None = None):
        """``method`` answers 429 OPERATION_TIME_LIMIT until ``reset_in`` seconds from now (0 clears)."""
        with self.lock:
            target = portal.blocked_methods if portal is not None else self.operation_time_limited
            if reset_in <= 0:
                target.pop(method.lower(), None)
            else:
                target[method.lower()] = time.time() + reset_in

    def set_rate_limit(
        self, burst: int | None = None, drain_per_second: float | None = None, enforce: bool | None = None
    ):
        with self.lock:
            self.burst = self.burst if burst is None else burst
            self.drain_per_second = self.drain_per_second if drain_per_second is None else drain_per_second
            self.enforce_rate_limit = self.enforce_rate_limit if enforce is None else enforce

    def _record(self, rec: RecordedRequest):
        with self.lock:
            self.requests.append(rec)

    # --- outbound: what Bitrix24 POSTs to the app --------------------------------------------------
    def _post_form(self, url: str, pairs: list[tuple[str, str]], kind: str) -> requests.Response:
        response = requests.post(
            url,
            data=urlencode(pairs).encode(),
            timeout=self.outbound_timeout,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
        )
        with self.lock:
            self.outbound.append({"kind": kind, "url": url, "form": dict(pairs), "status": response.status_code})
        return response

    def _auth_pairs(
        self,
        portal: FakePortal,
        access: str | None,
        user_id: int | None,
        *,
        refresh: str | None = None,
        application_token: str | None = None,
    ) -> list[tuple[str, str]]:
        pairs = []
        if access:
            token = self.tokens[access]
            pairs += [
                ("auth[access_token]", access),
                ("auth[expires]", str(int(token.expires_at))),
                ("auth[expires_in]", str(c.ACCESS_TOKEN_LIFETIME)),
                ("auth[scope]", portal.scope),
            ]
        pairs += [
            ("auth[domain]", portal.domain),
            ("auth[server_endpoint]", self.server_endpoint),
            ("auth[status]", portal.status),
            ("auth[client_endpoint]", portal.client_endpoint),
            ("auth[member_id]", portal.member_id),
        ]
        if user_id is not None:
            pairs.append(("auth[user_id]", str(user_id)))
        if refresh:
            pairs.append(("auth[refresh_token]", refresh))
        pairs.append(("auth[application_token]", application_token or portal.application_token))
        return pairs

    def install(
        self, portal: FakePortal, install_url: str, *, mode: str = "event", application_token: str | None = None
    ) -> requests.Response:
        """POST the install callback: ``event`` = ONAPPINSTALL form (§4.2), ``page`` = install-page POST (§4.1).

        Fresh admin tokens are issued (portal.admin_access_token / admin_refresh_token).
        """
        query, pairs = self.install_form(portal, mode=mode, application_token=application_token)
        sep = "&" if "?" in install_url else "?"
        return self._post_form(install_url + (sep + query if query else ""), pairs, "install")

    def install_form(
        self, portal: FakePortal, *, mode: str = "event", application_token: str | None = None
    ) -> tuple[str, list[tuple[str, str]]]:
        """The query string and form pairs of an install callback, with fresh admin tokens issued."""
        with self.lock:
            portal.installed = True
            portal.admin_access_token, portal.admin_refresh_token = self._issue_pair(portal, portal.admin_user_id)
            access, refresh = portal.admin_access_token, portal.admin_refresh_token
        if mode == "event":
            pairs = [
                ("event", c.EVENT_ONAPPINSTALL),
                ("data[VERSION]", "1"),
                ("data[ACTIVE]", "Y"),
                ("data[INSTALLED]", "Y"),
                ("data[LANGUAGE_ID]", "en"),
                ("ts", str(int(time.time()))),
            ]
            pairs += self._auth_pairs(
                portal, access, portal.admin_user_id, refresh=refresh, application_token=application_token
            )
            return "", pairs
        if mode != "page":
            raise ValueError("mode is 'event' or 'page'")
        query = urlencode({"DOMAIN": portal.domain, "PROTOCOL": "0", "LANG": "en", "APP_SID": _hex(16)})
        pairs = [
            ("AUTH_ID", access),
            ("AUTH_EXPIRES", str(c.ACCESS_TOKEN_LIFETIME)),
            ("REFRESH_ID", refresh),
            ("SERVER_ENDPOINT", self.server_endpoint),
            ("APPLICATION_TOKEN", application_token or portal.application_token),
            ("APPLICATION_SCOPE", portal.scope),
            ("member_id", portal.member_id),
            ("status", portal.status),
            ("PLACEMENT", "DEFAULT"),
        ]
        return query, pairs

    def uninstall(
        self, portal: FakePortal, *, clean: bool = True, application_token: str | None = None
    ) -> requests.Response:
        """POST ONAPPUNINSTALL (§4.5) to the handler bound with event.bind, then forget providers and tokens."""
        with self.lock:
            bound = [b for b in portal.event_bindings if b["event"] == c.EVENT_ONAPPUNINSTALL]
            if not bound:
                raise AssertionError(f"ONAPPUNINSTALL is not bound on {portal.domain}: the app never called event.bind")
        pairs = [
            ("event", c.EVENT_ONAPPUNINSTALL),
            ("data[LANGUAGE_ID]", "en"),
            ("data[CLEAN]", "1" if clean else "0"),
            ("ts", str(int(time.time()))),
        ]
        pairs += self._auth_pairs(portal, None, None, application_token=application_token)
        response = None
        for binding in bound:
            response = self._post_form(binding["handler"], pairs, "uninstall")
        if application_token is None or application_token == portal.application_token:
            with self.lock:
                portal.installed = False
                portal.providers.clear()
                portal.event_bindings.clear()
                for token in self.tokens.values():
                    if token.portal is portal:
                        token.revoked = True
                self.revoke_refresh_tokens(portal)
        return response

    def update_application(
        self, portal: FakePortal, *, application_token: str | None = None, unbind_events: bool = False
    ) -> requests.Response | None:
        """The application is updated on the portal (§4.6), as Bitrix24's messageservice module does it:
        every provider of the application is deleted, then ONAPPUPDATE (``data[VERSION]`` the new
        version, ``auth`` with the application_token, admin tokens) is POSTed to every handler bound
        to that event. Returns the last handler's response (None when none is bound).

        ``unbind_events``: every event binding is removed as well, as the documentation says an update
        does (§2.7); ONAPPUPDATE still goes to the handlers bound before, and the application has to
        bind its events again.
        """
        with self.lock:
            portal.app_version += 1
            portal.providers.clear()
            bound = [b for b in portal.event_bindings if b["event"] == c.EVENT_ONAPPUPDATE]
            if unbind_events:
                portal.event_bindings.clear()
            access = self._issue_pair(portal, portal.admin_user_id, with_refresh=False)[0]
        pairs = [
            ("event", c.EVENT_ONAPPUPDATE),
            ("data[VERSION]", str(portal.app_version)),
            ("data[LANGUAGE_ID]", "en"),
            ("ts", str(int(time.time()))),
        ]
        pairs += self._auth_pairs(portal, access, portal.admin_user_id, application_token=application_token)
        response = None
        for binding in bound:
            response = self._post_form(binding["handler"], pairs, "update")
        return response

    def send_sms(
        self,
        portal: FakePortal,
        code: str,
        message_to: str,
        text: str,
        *,
        module_id: str = "crm",
        with_auth: bool = True,
        application_token: str | None = None,
        message_id: str | None = None,
        handler_url: str | None = None,
        author_user_id: int | None = None,
        bindings=None,
        extra: dict | None = None,
    ) -> tuple[str, requests.Response]:
        """POST the §3 form body to the provider's HANDLER (or ``handler_url``) as Bitrix24 does.

        The message is recorded (status ``sent``, author = ``author_user_id`` or the admin), so
        message.status.update for it is accepted.
        """
        with self.lock:
            provider = portal.providers.get(code)
            if handler_url is None:
                if provider is None:
                    raise AssertionError(f"provider {code!r} is not registered on {portal.domain}")
                handler_url = provider["HANDLER"]
            message_id = self.record_message(portal, code, message_id=message_id, author_user_id=author_user_id)
            author = portal.messages[message_id]["author_user_id"]
            access = self._issue_pair(portal, author, with_refresh=False)[0] if with_auth else None
        pairs = [("module_id", module_id)]
        if module_id == "crm":
            for i, (type_id, owner_id) in enumerate(bindings if bindings is not None else [(3, 123)]):
                pairs += [(f"bindings[{i}][OWNER_TYPE_ID]", str(type_id)), (f"bindings[{i}][OWNER_ID]", str(owner_id))]
        else:
            pairs += [
                ("workflow_id", f"{_hex(6)}.{next(_ids):08d}"),
                ("document_id[0]", "crm"),
                ("document_id[1]", "CCrmDocumentLead"),
                ("document_id[2]", "LEAD_98"),
                ("document_type[0]", "crm"),
                ("document_type[1]", "CCrmDocumentLead"),
                ("document_type[2]", "LEAD"),
            ]
        pairs += [
            ("properties[phone_number]", message_to),
            ("properties[message_text]", text),
            ("type", "SMS"),
            ("code", code),
            ("message_id", message_id),
            ("message_to", message_to),
            ("message_body", text),
            ("ts", str(int(time.time()))),
        ]
        pairs += [(k, str(v)) for k, v in (extra or {}).items()]
        if with_auth:
            pairs += self._auth_pairs(portal, access, author, application_token=application_token)
        return message_id, self._post_form(handler_url, pairs, "send_sms")

    def record_message(
        self, portal: FakePortal, code: str, *, message_id: str | None = None, author_user_id: int | None = None
    ) -> str:
        """A message "sent through" provider ``code`` without POSTing it anywhere (status.update accepts it)."""
        with self.lock:
            message_id = message_id or _hex(16)
            author = portal.admin_user_id if author_user_id is None else author_user_id
            portal.messages[message_id] = {"code": code, "author_user_id": author, "status": "sent"}
            portal.message_statuses.setdefault(message_id, [])
            return message_id

    # --- main server: OAuth and sandbox controls ----------------------------------------------------
    def _main_route(self, http_method: str, path: str, params: dict):
        if path.rstrip("/") == "/oauth/token":
            return self._oauth(params)
        match = re.fullmatch(r"/__fake__/portals/([^/]+)(/send_sms|/update_application)?/?", path)
        if match:
            portal = self.portals.get(match.group(1))
            if portal is None:
                return 404, {"error": "not_found"}
            if match.group(2) == "/update_application" and http_method == "POST":
                response = self.update_application(portal)
                return 200, {
                    "version": portal.app_version,
                    "handler_status": response.status_code if response is not None else None,
                }
            if match.group(2) and http_method == "POST":
                message_id, response = self.send_sms(
                    portal,
                    str(params.get("code")),
                    str(params.get("message_to")),
                    str(params.get("text", "")),
                    module_id=str(params.get("module_id") or "crm"),
                )
                return 200, {"message_id": message_id, "handler_status": response.status_code}
            return 200, self.portal_state(portal)
        if path.rstrip("/") == "/__fake__/portals":
            return 200, [self.portal_state(p) for p in self.portals.values()]
        return 404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": D.METHOD_NOT_FOUND}

    def portal_state(self, portal: FakePortal) -> dict:
        with self.lock:
            return {
                "domain": portal.domain,
                "member_id": portal.member_id,
                "client_endpoint": portal.client_endpoint,
                "client_id": portal.client_id,
                "installed": portal.installed,
                "has_sender_update": portal.has_sender_update,
                "app_version": portal.app_version,
                "providers": dict(portal.providers),
                "message_statuses": dict(portal.message_statuses),
                "event_bindings": list(portal.event_bindings),
            }

    def _oauth(self, params: dict):
        grant = str(params.get("grant_type") or "")
        record = {
            "grant_type": grant,
            "client_id": params.get("client_id"),
            "refresh_token": params.get("refresh_token"),
            "time": time.time(),
        }
        if self.oauth_delay:
            time.sleep(self.oauth_delay)  # a slow OAuth server widens race windows in tests
        with self.lock:
            status, payload = self._oauth_locked(grant, params)
            record["status"] = status
            self.oauth_requests.append(record)
        return status, payload

    def _oauth_locked(self, grant: str, params: dict):
        if grant != "refresh_token":
            return 400, {"error": "invalid_request", "error_description": "Unsupported grant_type"}
        client_id, secret = params.get("client_id"), params.get("client_secret")
        entry = self.refresh_tokens.get(str(params.get("refresh_token") or ""))
        apps = self.applications | {(p.client_id, p.client_secret) for p in self.portals.values()}
        if (client_id, secret) not in apps:
            return 401, {"error": "invalid_client", "error_description": D.INVALID_CLIENT}
        if entry is None or entry["used"] or entry["portal"].client_id != client_id:
            return 400, {"error": "invalid_grant", "error_description": D.INVALID_GRANT}
        entry["used"] = True
        portal = entry["portal"]
        access, refresh = self._issue_pair(portal, entry["user_id"])
        if entry["user_id"] == portal.admin_user_id:
            portal.admin_access_token, portal.admin_refresh_token = access, refresh
        return 200, {
            "access_token": access,
            "client_endpoint": portal.client_endpoint,
            "domain": urlsplit(self.url).netloc,
            "expires": int(self.tokens[access].expires_at),
            "expires_in": c.ACCESS_TOKEN_LIFETIME,
            "member_id": portal.member_id,
            "refresh_token": refresh,
            "scope": portal.scope,
            "server_endpoint": self.server_endpoint,
            "status": portal.status,
            "user_id": entry["user_id"],
        }

    # --- portal REST ---------------------------------------------------------------------------------
    def _portal_route(self, portal: FakePortal, http_method: str, path: str, params: dict, headers):
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2 or parts[0] != "rest":
            return 404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": D.METHOD_NOT_FOUND}
        method = parts[-1]
        for suffix in (".json", ".xml"):
            if method.lower().endswith(suffix):
                method = method[: -len(suffix)]
        method = method.lower()
        public_params = {k: v for k, v in params.items() if str(k).lower() not in ("auth", "access_token")}
        status, payload = 200, None
        try:
            if len(parts) == 4:  # /rest/{user_id}/{code}/{method}: incoming webhook
                self._bucket(portal)
                if method.startswith("messageservice."):
                    raise RestError(403, c.ACCESS_DENIED, D.APPLICATION_CONTEXT_REQUIRED)
                raise RestError(401, c.NO_AUTH_FOUND, D.NO_AUTH_FOUND)
            if len(parts) != 2:
                raise RestError(404, c.ERROR_METHOD_NOT_FOUND, D.METHOD_NOT_FOUND)
            delay = self.method_delays.get(method)
            if delay:
                time.sleep(delay)
            now = time.time()
            self._bucket(portal)
            self._injected_failure(method)
            token = self._authenticate(portal, params, headers)
            result = self._run(portal, token, method, public_params, nested=False)
            payload = {"result": result, "time": _time_block(now)}
            if method == "messageservice.sender.list":
                payload["total"] = len(result)
            return status, payload
        except RestError as exc:
            status, payload = exc.status, exc.envelope()
            return status, payload
        finally:
            with self.lock:
                portal.calls.append((method, public_params))
                self.requests.append(RecordedRequest(portal.domain, http_method, path, method, public_params, status))

    def _bucket(self, portal: FakePortal):
        with self.lock:
            if not self.enforce_rate_limit:
                return
            now = time.monotonic()
            level = max(0.0, portal.bucket_level - (now - portal.bucket_ts) * self.drain_per_second)
            portal.bucket_ts = now
            if level + 1 > self.burst:
                portal.bucket_level = level
                raise RestError(503, c.QUERY_LIMIT_EXCEEDED, D.QUERY_LIMIT)
            portal.bucket_level = level + 1

    def _injected_failure(self, method: str):
        with self.lock:
            for failure in self._failures:
                if failure["n"] > 0 and failure["method"] in (None, method):
                    failure["n"] -= 1
                    raise RestError(failure["status"], failure["error"], failure["description"])

    def _authenticate(self, portal: FakePortal, params: dict, headers) -> Token:
        value = _ci_get(params, "auth") or _ci_get(params, "access_token")
        bearer = headers.get("Authorization") or ""
        if not value and bearer.lower().startswith("bearer "):
            value = bearer[7:].strip()
        if not value:
            raise RestError(401, c.NO_AUTH_FOUND, D.NO_AUTH_FOUND)
        with self.lock:
            token = self.tokens.get(str(value))
            if token is None or token.portal is not portal or token.revoked:
                raise RestError(401, c.INVALID_TOKEN, D.INVALID_TOKEN)
            if token.expires_at <= time.time():
                raise RestError(401, c.EXPIRED_TOKEN, D.EXPIRED_TOKEN)
            return token

    def _run(self, portal: FakePortal, token: Token, method: str, params: dict, *, nested: bool):
        if method not in METHOD_SCOPES or (method == c.METHOD_SENDER_UPDATE and not portal.has_sender_update):
            raise RestError(404, c.ERROR_METHOD_NOT_FOUND, D.METHOD_NOT_FOUND)
        scope = METHOD_SCOPES[method]
        if scope and scope not in token.scope:
            raise RestError(403, c.INSUFFICIENT_SCOPE, D.INSUFFICIENT_SCOPE)
        with self.lock:
            reset_at = portal.blocked_methods.get(method) or self.operation_time_limited.get(method)
        if reset_at and reset_at > time.time() and method != "batch":
            raise RestError(
                429,
                c.OPERATION_TIME_LIMIT,
                D.OPERATION_TIME_LIMIT,
                {"time": {"operating_reset_at": int(reset_at) + 1, "operating": c.OPERATING_LIMIT_SECONDS}},
            )
        if method == "batch":
            if nested:
                raise RestError(405, c.ERROR_BATCH_METHOD_NOT_ALLOWED, D.BATCH_METHOD_NOT_ALLOWED)
            return self._batch(portal, token, params)
        handler = getattr(self, "_m_" + method.replace(".", "_"))
        with self.lock:
            return handler(portal, token, params)

    # --- methods ---------------------------------------------------------------------------------------
    def _m_app_info(self, portal, token, params):
        return {
            "ID": "1",
            "CODE": portal.app_code,
            "VERSION": 1,
            "STATUS": portal.status,
            "INSTALLED": portal.installed,
            "PAYMENT_EXPIRED": "N",
            "DAYS": None,
            "LICENSE": "com_project",
        }

    def _require_admin(self, token: Token):
        if not token.is_admin:
            raise RestError(403, c.ACCESS_DENIED, D.ACCESS_DENIED)

    def _m_event_bind(self, portal, token, params):
        self._require_admin(token)
        event = str(_ci_get(params, "event") or "").upper()
        handler = str(_ci_get(params, "handler") or "")
        if event not in KNOWN_EVENTS:
            raise RestError(400, E.EVENT_NOT_FOUND, D.EVENT_NOT_FOUND)
        url = urlsplit(handler)
        if url.scheme not in c.HANDLER_SCHEMES or not url.hostname:
            raise RestError(400, "ERROR_HANDLER_URL", "Wrong handler URL")
        if any(b["event"] == event and b["handler"] == handler for b in portal.event_bindings):
            raise RestError(400, "ERROR_EVENT_ALREADY_BOUND", "Handler already binded")
        portal.event_bindings.append(
            {
                "event": event,
                "handler": handler,
                "auth_type": str(_ci_get(params, "auth_type") or "0"),
                "event_type": str(_ci_get(params, "event_type") or "online"),
            }
        )
        return True

    def _m_event_unbind(self, portal, token, params):
        self._require_admin(token)
        event = str(_ci_get(params, "event") or "").upper()
        handler = str(_ci_get(params, "handler") or "")
        before = len(portal.event_bindings)
        portal.event_bindings[:] = [
            b for b in portal.event_bindings if not (b["event"] == event and (not handler or b["handler"] == handler))
        ]
        return {"count": before - len(portal.event_bindings)}

    def _m_event_get(self, portal, token, params):
        self._require_admin(token)
        return [
            {
                "event": b["event"],
                "handler": b["handler"],
                "auth_type": b["auth_type"],
                "offline": 1 if b["event_type"] == "offline" else 0,
            }
            for b in portal.event_bindings
        ]

    @staticmethod
    def _lang_map(value) -> dict | None:
        """NAME / DESCRIPTION as stored: {"": text} for a string, lower-cased language keys for a map."""
        if isinstance(value, dict):
            return {str(k).lower(): str(v) for k, v in value.items() if v not in (None, "")} or None
        if isinstance(value, list):
            return {str(i): str(v) for i, v in enumerate(value) if v not in (None, "")} or None
        return {"": str(value)} if value not in (None, "") else None

    def _check_handler(self, handler) -> str:
        handler = str(handler or "")
        url = urlsplit(handler)
        if not handler or not url.scheme or not _is_dotted_or_local(url.hostname, self.strict_handler_host):
            raise RestError(400, E.WRONG_HANDLER_URL, D.WRONG_HANDLER_URL)
        if url.scheme.lower() not in c.HANDLER_SCHEMES:
            raise RestError(400, E.UNSUPPORTED_PROTOCOL, D.UNSUPPORTED_PROTOCOL)
        return handler

    @staticmethod
    def _check_code(params) -> str:
        code = str(_ci_get(params, "CODE") or "")
        if not code:
            raise RestError(400, E.SENDER_VALIDATION_FAILURE, D.EMPTY_CODE)
        if not c.CODE_RE.match(code):
            raise RestError(400, E.SENDER_VALIDATION_FAILURE, D.WRONG_CODE)
        return code

    @staticmethod
    def _too_long(texts: dict | None, limit: int) -> bool:
        return any(len(v) > limit for v in (texts or {}).values())

    def _m_messageservice_sender_add(self, portal, token, params):
        self._require_admin(token)
        if not params:
            raise RestError(400, E.SENDER_VALIDATION_FAILURE, D.EMPTY_DATA)
        code = self._check_code(params)
        handler = self._check_handler(_ci_get(params, "HANDLER"))
        name = self._lang_map(_ci_get(params, "NAME"))
        if not name:
            raise RestError(400, E.SENDER_VALIDATION_FAILURE, D.EMPTY_NAME)
        type_ = _ci_get(params, "TYPE")
        if not type_:
            raise RestError(400, E.SENDER_VALIDATION_FAILURE, D.EMPTY_TYPE)
        if type_ != c.SENDER_TYPE_SMS:
            raise RestError(400, E.SENDER_VALIDATION_FAILURE, D.UNKNOWN_TYPE)
        if code in portal.providers:
            raise RestError(400, E.SENDER_ALREADY_INSTALLED, D.ALREADY_INSTALLED)
        description = self._lang_map(_ci_get(params, "DESCRIPTION"))
        if (
            len(code) > c.CODE_MAX_LENGTH
            or len(handler) > c.HANDLER_MAX_LENGTH
            or self._too_long(name, c.NAME_MAX_LENGTH)
            or self._too_long(description, c.DESCRIPTION_MAX_LENGTH)
        ):
            raise RestError(400, E.SENDER_ADD_FAILURE, D.ADD_FAILURE)
        portal.providers[code] = {
            "CODE": code,
            "TYPE": type_,
            "HANDLER": handler,
            "NAME": name,
            "DESCRIPTION": description or {},
        }
        return True

    def _m_messageservice_sender_update(self, portal, token, params):
        self._require_admin(token)
        code = str(_ci_get(params, "CODE") or "")
        if not code:
            raise RestError(400, E.SENDER_CODE_REQUIRED, D.CODE_REQUIRED)
        fields = {
            k: _ci_get(params, k) for k in ("HANDLER", "NAME", "DESCRIPTION") if _ci_get(params, k) not in (None, "")
        }
        if not fields:
            raise RestError(400, E.SENDER_OTHER_PARAMS_REQUIRED, D.OTHER_PARAMS_REQUIRED)
        provider = portal.providers.get(code)
        if provider is None:
            raise RestError(400, E.SENDER_NOT_FOUND, D.SENDER_NOT_FOUND)
        changes = {}
        if "HANDLER" in fields:
            changes["HANDLER"] = self._check_handler(fields["HANDLER"])
        for key in ("NAME", "DESCRIPTION"):
            if key in fields:
                changes[key] = self._lang_map(fields[key]) or {}
        if (
            len(changes.get("HANDLER", "")) > c.HANDLER_MAX_LENGTH
            or self._too_long(changes.get("NAME"), c.NAME_MAX_LENGTH)
            or self._too_long(changes.get("DESCRIPTION"), c.DESCRIPTION_MAX_LENGTH)
        ):
            raise RestError(400, E.SENDER_UPDATE_FAILURE, D.UPDATE_FAILURE)
        provider.update(changes)
        return True

    def _m_messageservice_sender_list(self, portal, token, params):
        self._require_admin(token)
        return list(portal.providers)

    def _m_messageservice_sender_delete(self, portal, token, params):
        self._require_admin(token)
        code = self._check_code(params)
        if code not in portal.providers:
            raise RestError(400, E.SENDER_NOT_FOUND, D.SENDER_NOT_FOUND)
        del portal.providers[code]
        return True

    def _m_messageservice_message_status_update(self, portal, token, params):
        code = self._check_code(params)
        message_id = str(_ci_get(params, "MESSAGE_ID") or "")
        if not message_id:
            raise RestError(400, E.MESSAGE_NOT_FOUND, D.MESSAGE_NOT_FOUND)
        status = _ci_get(params, "STATUS")
        if status not in c.MESSAGE_STATUSES:
            raise RestError(400, E.MESSAGE_STATUS_INCORRECT, D.STATUS_INCORRECT)
        message = portal.messages.get(message_id)
        if message is None or message["code"] != code:
            raise RestError(400, E.MESSAGE_NOT_FOUND, D.MESSAGE_NOT_FOUND)
        if not token.is_admin and token.user_id != message["author_user_id"]:
            raise RestError(403, c.ACCESS_DENIED, D.ACCESS_DENIED)
        message["status"] = status
        portal.message_statuses.setdefault(message_id, []).append(status)
        return True

    def _batch(self, portal: FakePortal, token: Token, params: dict):
        cmd = _ci_get(params, "cmd") or {}
        if isinstance(cmd, list):
            cmd = {str(i): v for i, v in enumerate(cmd)}
        if not isinstance(cmd, dict):
            raise RestError(400, "ERROR_ARGUMENT", "cmd must be a map of commands")
        if len(cmd) > c.BATCH_MAX_COMMANDS:
            raise RestError(400, c.ERROR_BATCH_LENGTH_EXCEEDED, D.BATCH_LENGTH_EXCEEDED)
        halt = str(_ci_get(params, "halt") or "0") not in ("0", "", "false", "False")
        results, errors, times = {}, {}, {}
        for key, command in cmd.items():
            command = str(command)
            method, _, query = command.partition("?")
            sub_params = dict(qs_codec.decode(query, _DECODE)) if query else {}
            started = time.time()
            try:
                results[str(key)] = self._run(portal, token, method.strip().lower(), sub_params, nested=True)
                times[str(key)] = _time_block(started)
            except RestError as exc:
                errors[str(key)] = {"error": exc.error, "error_description": exc.description}
                if halt:
                    break
            finally:
                with self.lock:
                    portal.calls.append((method.strip().lower(), sub_params))
        return {
            "result": _php_map(results),
            "result_error": _php_map(errors),
            "result_total": [],
            "result_next": [],
            "result_time": _php_map(times),
        }


def main(argv=None):  # pragma: no cover - sandbox tool
    parser = argparse.ArgumentParser(description="Fake Bitrix24 portal(s) + OAuth server for the b24sms sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--portal-port", type=int, default=0, help="port of the first portal (0: any)")
    parser.add_argument("--client-id", default="local.sandbox00000000.00000001")
    parser.add_argument("--client-secret", default="sandbox-client-secret")
    parser.add_argument("--install-url", default="", help="POST ONAPPINSTALL here at start (e.g. .../b24/install/)")
    parser.add_argument("--burst", type=int, default=c.RATE_LIMIT_BURST)
    parser.add_argument("--drain", type=float, default=c.RATE_LIMIT_DRAIN_PER_SECOND)
    parser.add_argument("--no-rate-limit", action="store_true")
    parser.add_argument("--legacy", action="store_true", help="a portal without messageservice.sender.update")
    args = parser.parse_args(argv)
    fake = FakeBitrix24(
        args.host,
        args.port,
        burst=args.burst,
        drain_per_second=args.drain,
        enforce_rate_limit=not args.no_rate_limit,
        record_limit=2000,
    ).start()
    portal = fake.add_portal(
        client_id=args.client_id, client_secret=args.client_secret, port=args.portal_port, legacy=args.legacy
    )
    print(f"fake Bitrix24: {fake.url}  (B24_OAUTH_URL={fake.oauth_url})", flush=True)
    print(f"portal {portal.domain}: client_endpoint={portal.client_endpoint} member_id={portal.member_id}", flush=True)
    print(f"  app: B24_CLIENT_ID={args.client_id} B24_CLIENT_SECRET={args.client_secret}", flush=True)
    print(
        f"  send an SMS: curl -X POST {fake.url}/__fake__/portals/{portal.member_id}/send_sms "
        '-H \'Content-Type: application/json\' -d \'{"code": "CODE", "message_to": "+79990000000", "text": "hi"}\'',
        flush=True,
    )
    print(f"  state: {fake.url}/__fake__/portals/{portal.member_id}", flush=True)
    print(
        f"  update the application (providers deleted, ONAPPUPDATE posted): curl -X POST "
        f"{fake.url}/__fake__/portals/{portal.member_id}/update_application",
        flush=True,
    )
    if args.install_url:
        response = fake.install(portal, args.install_url)
        print(f"  ONAPPINSTALL -> {args.install_url}: HTTP {response.status_code}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
