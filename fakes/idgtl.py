"""A contract-faithful fake of the i-dgtl Direct API (docs/contracts/idgtl.md), real HTTP on 127.0.0.1.

Use it in tests (fixtures in tests/fixtures/idgtl.py) or as a sandbox:

    python -m fakes.idgtl --host 127.0.0.1 --port 8101 --auto-review-after 5 --auto-deliver-after 2

What it does (docs/contracts/idgtl.md §6):

* Auth (§1.1, §1.2): ``Authorization: Basic KEY`` (``Bearer KEY`` is accepted too [A]). The
  sender-names key is a TOKEN_2, the messages key a TOKEN_1; no header -> 401/4010, an unknown key
  -> 401/4012, a key of the wrong type -> 403/4030. ``GET /balance`` takes either key.
* Every error uses the §1.2 envelope, unknown routes too (404/4040); PUT/PATCH/DELETE on sender
  names -> 405/4050.
* ``POST /sender-names``: multipart; the ``body`` part may carry ``Content-Type: application/json``
  or be a plain form field; files are the ``file1..fileN`` parts. Checked in the contract's order
  (channel, brand, type, name pattern for the brand, dateFrom later than now, INN, PROMO files and
  their limits, duplicates) with the texts of ``idgtl.contract.Text``. Creates ``PRE_REVIEW`` with
  a fee from ``fee_table`` and records each file's name, size, content type and sha256.
* ``GET /sender-names/{id}`` and ``GET /sender-names`` (paging; filters sender_name, status, brand).
  ``sender_name_reads=False`` (CLI ``--no-sender-name-reads``) plays an i-dgtl without them (§2.4 is
  an assumption): ``GET /sender-names/{id}`` is an unknown route (404/4040, before auth) and
  ``GET /sender-names`` a route that only takes POST (405/4050).
* ``POST /message``: a JSON array of 1..1000; every item is checked on its own: the senderName
  must be APPROVED with dateFrom <= now or be in ``allowed_sender_names``; ``destination`` must be
  10-15 digits (otherwise item ``{"code": 7401, "msg": "Invalid destination"}``, no messageUuid);
  a failed item makes ``errors`` true. Accepted messages start as ``sending``.
* ``GET /message`` (repeatable ``message_uuid``, ``status``, ``external_message_id`` [A],
  ``destination``, ``sender_name``, ``time_from``/``time_to`` on the creation time, paging),
  ``POST /message/stop`` (a ``sending`` message becomes ``unsent`` shortly after), ``GET /balance``.
* Callbacks (§3.4): each status change that matches the message's ``callbackEvents`` (default
  ``delivered``) is POSTed to its ``callbackUrl`` as a JSON array of one snake_case event, waiting
  up to 5 s, retried up to ``callback_retries`` times with backoff on a non-2xx answer or an error,
  from a background thread, in order. ``callbacks`` records every delivery and its attempts.
  With ``callback_batch_max=N`` (default 1) events waiting for the same URL go out together, up to
  N in one array.
* Test switches: ``fail_next(n, status)`` (the next n API calls answer 429/5xx), the hooks
  ``set_sender_name_status`` (also ``POST /__fake__/sender-names/{id}/status``) and
  ``set_message_status`` (also ``POST /__fake__/messages/{uuid}/status``).
  ``callbacks_before_answer=True``: ``POST /message`` delivers what it accepted at once and posts
  the callbacks (``sent``, then ``delivered`` or ``undelivered``) before it answers, as the real
  service may when the operator is quick and the answer slow: the client learns statuses of uuids
  it has not recorded yet.

Sandbox options:

* ``auto_review_after=S``: a created name moves PRE_REVIEW -> REVIEW after S seconds and on to
  ``auto_review_status`` (APPROVED by default) S seconds later.
* ``auto_deliver_after=S``: an accepted message moves sending -> sent after S seconds and S seconds
  later to ``delivered``, or to ``undelivered`` (error_code 6969) when its number is undeliverable:
  any number in ``undeliverable_destinations``, and by default **every number ending in 0000**
  (``undeliverable_suffixes``), e.g. 79990000000.

State is guarded by one lock; the server is a stdlib ThreadingHTTPServer; delayed steps (auto
review, auto delivery, stop) run on one scheduler thread, so a burst costs no thread per message.
"""

from __future__ import annotations

import argparse
import copy
import email.parser
import email.policy
import hashlib
import heapq
import itertools
import json
import logging
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from idgtl import contract
from idgtl.contract import Text

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
TOKEN_1, TOKEN_2 = "TOKEN_1", "TOKEN_2"
CALLBACK_TIMEOUT = 5.0  # [A] docs/contracts/idgtl.md §3.4
CALLBACK_EVENT_FOR_STATUS = {
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "delivered",
    "unsent": "delivered",
    "read": "read",
    "unread": "read",
}
FILE_MAGIC = {b"%PDF": "application/pdf", b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg"}
_SENDER_NAME_INTERNAL = {"files", "createdAt"}
_MESSAGE_INTERNAL = {"callbackUrl", "callbackEvents", "content", "createdAt", "history", "ttl"}


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(contract.TIMESTAMP_FORMAT)


def parse_iso(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, contract.TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict  # name -> [values]
    headers: dict  # raw, Authorization included (tests only)
    json: object = None  # the parsed JSON body, when the body was JSON
    body_part: object = None  # the parsed "body" part of a multipart request (dict, or the raw text)
    files: list = field(default_factory=list)  # [{"name","filename","size","content_type","sha256"}]
    json_error: bool = False  # the body was sent but is not valid JSON
    status: int | None = None  # what the fake answered
    raw_body: bytes = b""


class FakeError(Exception):
    def __init__(self, status: int, code: int | None, msg: str, headers: dict | None = None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


def _validation(msg: str) -> FakeError:
    return FakeError(422, contract.ErrorCode.VALIDATION, msg)


def _not_found() -> FakeError:
    return FakeError(404, contract.ErrorCode.NOT_FOUND, Text.NOT_FOUND)


class FakeIdgtl:
    def __init__(
        self,
        host="127.0.0.1",
        port=0,
        *,
        sender_names_key="c2VuZGVyOm5hbWVz",
        messages_key="bWVzc2FnZXM6a2V5",
        callback_retries=3,
        auto_review_after: float | None = None,
        auto_review_status="APPROVED",
        auto_deliver_after: float | None = None,
        accept_bearer=True,
        callback_backoff=0.2,
        fee_table: dict | None = None,
        undeliverable_suffixes=("0000",),
        balance=10000.0,
        callback_batch_max=1,
        max_recorded_requests: int | None = None,
        callbacks_before_answer=False,
        sender_name_reads=True,
    ):
        self.host, self.port = host, port
        self.sender_names_key, self.messages_key = sender_names_key, messages_key
        self.accept_bearer = accept_bearer
        self.max_recorded_requests = max_recorded_requests  # a long-running sandbox keeps only the latest
        self._config = {
            "callback_retries": callback_retries,
            "auto_review_after": auto_review_after,
            "auto_review_status": auto_review_status,
            "auto_deliver_after": auto_deliver_after,
            "callback_backoff": callback_backoff,
            "callback_batch_max": callback_batch_max,
            "fee_table": dict(fee_table or contract.FAKE_FEE_TABLE),
            "undeliverable_suffixes": tuple(undeliverable_suffixes),
            "balance": balance,
            "allowed_sender_names": set(),
            "undeliverable_destinations": set(),
            "callbacks_before_answer": callbacks_before_answer,
            "sender_name_reads": sender_name_reads,
        }
        self.lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._callback_queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._schedule: list = []  # heap of (when, seq, generation, func, args): one thread runs them all
        self._schedule_cv = threading.Condition(self.lock)
        self._schedule_seq = itertools.count()
        self._running = False
        self._generation = 0
        self._callbacks_queued = self._callbacks_done = 0  # callback items put on the queue / posted (or dropped)
        self._callbacks_cv = threading.Condition(self.lock)
        self.url = ""
        self.reset()

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> FakeIdgtl:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}{API_PREFIX}"
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-idgtl-http"
            ),
            threading.Thread(target=self._deliver_callbacks, daemon=True, name="fake-idgtl-callbacks"),
            threading.Thread(target=self._run_schedule, daemon=True, name="fake-idgtl-schedule"),
        ]
        self._running = True
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        with self._schedule_cv:
            self._running = False
            self._schedule.clear()
            self._schedule_cv.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self._callback_queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def reset(self):
        """Forget everything and restore the constructor's options."""
        with self.lock:
            self._schedule.clear()
            self._generation += 1
            for name, value in self._config.items():
                setattr(self, name, copy.copy(value))
            self.requests: list[RecordedRequest] = []
            self.sender_names: dict[int, dict] = {}
            self.messages: dict[str, dict] = {}
            self.callbacks: list[dict] = []
            self._failures: list[dict] = []
            self._ids = itertools.count(1)
            # POST /message takes the messages at once, then holds its answer this long (a call can take
            # up to 70 s at the real service): a worker killed meanwhile never learns the uuids.
            self.send_answer_delay = 0.0

    def _later(self, delay: float, func, *args):
        """Run func(*args) after delay seconds on the scheduler thread, unless reset() comes first."""
        with self._schedule_cv:
            heapq.heappush(
                self._schedule, (time.monotonic() + delay, next(self._schedule_seq), self._generation, func, args)
            )
            self._schedule_cv.notify()

    def _run_schedule(self):
        while True:
            with self._schedule_cv:
                while self._running and (not self._schedule or self._schedule[0][0] > time.monotonic()):
                    self._schedule_cv.wait(self._schedule[0][0] - time.monotonic() if self._schedule else None)
                if not self._running:
                    return
                _, _, generation, func, args = heapq.heappop(self._schedule)
                if generation != self._generation:
                    continue
            try:
                func(*args)
            except Exception:  # keep the scheduler alive whatever one step does
                logger.exception("fake i-dgtl: scheduled %s failed", getattr(func, "__name__", func))

    # --- switches and hooks ----------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503, path_prefix: str | None = None, retry_after: float | None = None):
        """The next n API calls (whose path starts with path_prefix, with or without /api/v1) fail."""
        with self.lock:
            self._failures.append(
                {"remaining": n, "status": status, "path_prefix": path_prefix, "retry_after": retry_after}
            )

    def set_sender_name_status(self, remote_id, status, comment=None) -> dict:
        with self.lock:
            record = self.sender_names.get(int(remote_id))
            if record is None:
                raise KeyError(remote_id)
            record["status"] = status
            record["comment"] = comment
            return self.public_sender_name(record)

    def set_message_status(self, uuid_, status, error_code=None) -> dict:
        """Move a message to ``status`` and fire the callback its callbackEvents ask for."""
        with self.lock:
            message = self.messages.get(uuid_)
            if message is None:
                raise KeyError(uuid_)
            now = utcnow()
            message.update(status=status, statusTime=iso(now), errorCode=error_code)
            message["history"].append((status, iso(now)))
            event = CALLBACK_EVENT_FOR_STATUS.get(status)
            url = message.get("callbackUrl")
            if url and event and event in message["callbackEvents"]:
                payload = {
                    "message_uuid": uuid_,
                    "channel_type": message["channelType"],
                    "callback_event": event,
                    "status": status,
                    "status_time": message["statusTime"],
                }
                if error_code is not None:
                    payload["error_code"] = int(error_code)
                self._callback_queue.put((url, [payload], self._generation))
                self._callbacks_queued += 1
            return self.public_message(message)

    def is_undeliverable(self, destination: str) -> bool:
        return destination in self.undeliverable_destinations or destination.endswith(self.undeliverable_suffixes)

    # --- views of the state ------------------------------------------------------------------------------
    @staticmethod
    def public_sender_name(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in _SENDER_NAME_INTERNAL}

    @staticmethod
    def public_message(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in _MESSAGE_INTERNAL}

    def sendable_sender_names(self) -> set[str]:
        now = utcnow()
        with self.lock:
            approved = {
                r["senderName"]
                for r in self.sender_names.values()
                if r["status"] == contract.SenderNameStatus.APPROVED and parse_iso(r["dateFrom"]) <= now
            }
            return approved | set(self.allowed_sender_names)

    # --- callbacks -------------------------------------------------------------------------------------------
    def _deliver_callbacks(self):
        import requests  # the project's HTTP library handles login:password@ in callbackUrl

        session = requests.Session()
        carried = None
        while True:
            item, carried = carried or self._callback_queue.get(), None
            if item is None:
                return
            url, payload, generation = item
            taken = 1
            while len(payload) < self.callback_batch_max:  # [I] one POST may carry several events
                try:
                    following = self._callback_queue.get_nowait()
                except queue.Empty:
                    break
                if following is None or following[0] != url or following[2] != generation:
                    carried = following
                    break
                payload = payload + following[1]
                taken += 1
            try:
                self._post_callback(session, url, payload, generation)
            finally:
                with self._callbacks_cv:
                    self._callbacks_done += taken
                    self._callbacks_cv.notify_all()

    def _post_callback(self, session, url: str, payload: list, generation: int):
        import requests

        record = {"url": url, "payload": payload, "attempts": [], "delivered": False, "answer": None}
        with self.lock:
            if generation != self._generation:
                return
            self.callbacks.append(record)
        for attempt in range(1 + self.callback_retries):
            if attempt:
                time.sleep(self.callback_backoff * (2 ** (attempt - 1)))
            answer = None
            try:
                response = session.post(url, json=payload, timeout=CALLBACK_TIMEOUT)
                outcome, answer = response.status_code, response.text[:1000]
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            with self.lock:
                record["attempts"].append(outcome)
                record["answer"] = answer  # the body of the last answer (tests read what the client said)
                if isinstance(outcome, int) and 200 <= outcome < 300:
                    record["delivered"] = True
            if record["delivered"]:
                return

    def _callbacks_posted_before_answer(self, message_uuids: list[str]):
        """Deliver the accepted messages now and post their callbacks (sent, then the final status),
        answered or given up, before the answer to POST /message leaves: what the real service does
        when the operator is quick and the answer is slow, so a client may learn the statuses of
        uuids it has not recorded yet."""
        with self.lock:
            for message_uuid in message_uuids:
                self.set_message_status(message_uuid, "sent")
                if self.is_undeliverable(self.messages[message_uuid]["destination"]):
                    self.set_message_status(message_uuid, "undelivered", contract.UNDELIVERED_ERROR_CODE)
                else:
                    self.set_message_status(message_uuid, "delivered")
            target = self._callbacks_queued
        give_up_at = time.monotonic() + (1 + self.callback_retries) * (CALLBACK_TIMEOUT + 1) + 5
        with self._callbacks_cv:
            while self._callbacks_done < target and time.monotonic() < give_up_at:
                self._callbacks_cv.wait(max(0.0, give_up_at - time.monotonic()))

    # --- request handling (called by the HTTP handler) --------------------------------------------------------
    def handle(self, request: RecordedRequest):
        """Return (status, payload, headers) for one request; raise FakeError for errors."""
        path = request.path
        if path.startswith("/__fake__/"):
            return self._handle_hook(request)
        if not path.startswith(API_PREFIX + "/") and path != API_PREFIX:
            raise _not_found()
        route = path[len(API_PREFIX) :].rstrip("/") or "/"
        self._maybe_fail(route)
        method = request.method
        if route == contract.BALANCE_PATH:
            self._auth(request, TOKEN_1, TOKEN_2)
            self._allow(method, "GET")
            return 200, {"RUB": self.balance}
        if route == contract.SENDER_NAMES_PATH or re.fullmatch(r"/sender-names/[^/]+", route):
            if not self.sender_name_reads and route != contract.SENDER_NAMES_PATH:
                raise _not_found()  # no such route at all
            self._auth(request, TOKEN_2)
            if route == contract.SENDER_NAMES_PATH:
                self._allow(method, "POST") if not self.sender_name_reads else self._allow(method, "GET", "POST")
                return self._create_sender_name(request) if method == "POST" else self._list_sender_names(request)
            self._allow(method, "GET")
            return self._get_sender_name(route.rsplit("/", 1)[1])
        if route == contract.MESSAGES_PATH:
            self._auth(request, TOKEN_1)
            self._allow(method, "GET", "POST")
            return self._send_messages(request) if method == "POST" else self._get_messages(request)
        if route == contract.MESSAGES_STOP_PATH:
            self._auth(request, TOKEN_1)
            self._allow(method, "POST")
            return self._stop_messages(request)
        raise _not_found()

    def _maybe_fail(self, route: str):
        with self.lock:
            for failure in self._failures:
                prefix = failure["path_prefix"]
                if prefix and not (route.startswith(prefix) or (API_PREFIX + route).startswith(prefix)):
                    continue
                failure["remaining"] -= 1
                if failure["remaining"] <= 0:
                    self._failures.remove(failure)
                status = failure["status"]
                headers = {"Retry-After": str(failure["retry_after"])} if failure["retry_after"] is not None else {}
                msg = Text.TOO_MANY_REQUESTS if status == 429 else "Service failure"
                raise FakeError(status, status * 10, msg, headers)

    def _auth(self, request: RecordedRequest, *types: str):
        header = request.headers.get("Authorization") or request.headers.get("authorization")
        if not header:
            raise FakeError(401, contract.ErrorCode.NOT_AUTHENTICATED, Text.NOT_AUTHENTICATED)
        scheme, _, key = header.partition(" ")
        schemes = ("basic", "bearer") if self.accept_bearer else ("basic",)
        key_types = {self.sender_names_key: TOKEN_2, self.messages_key: TOKEN_1}
        key_type = key_types.get(key.strip()) if scheme.lower() in schemes else None
        if key_type is None:
            raise FakeError(401, contract.ErrorCode.BAD_CREDENTIALS, Text.BAD_CREDENTIALS)
        if key_type not in types:
            raise FakeError(403, contract.ErrorCode.ACCESS_DENIED, Text.ACCESS_DENIED)

    @staticmethod
    def _allow(method: str, *methods: str):
        if method not in methods:
            raise FakeError(405, 4050, Text.METHOD_NOT_ALLOWED, {"Allow": ", ".join(methods)})

    @staticmethod
    def _paging(request: RecordedRequest) -> tuple[int, int]:
        try:
            page = int(request.query.get("page", ["1"])[0])
            per_page = int(request.query.get("per_page", ["100"])[0])
        except ValueError:
            raise _validation(Text.PAGE_WINDOW) from None
        if page < 1 or per_page < 1 or page * per_page > contract.GET_MESSAGES_MAX_WINDOW:
            raise _validation(Text.PAGE_WINDOW)
        return page, per_page

    def _page(self, request: RecordedRequest, items: list) -> tuple[int, dict]:
        page, per_page = self._paging(request)
        start = (page - 1) * per_page
        return 200, {"total": len(items), "items": items[start : start + per_page]}

    # --- sender names ------------------------------------------------------------------------------------------
    def _create_sender_name(self, request: RecordedRequest):
        body = request.body_part
        if not isinstance(body, dict):
            raise _validation(Text.BODY_REQUIRED)
        channel = body.get("channelType")
        if channel != contract.ChannelType.SMS:
            raise _validation(Text.INVALID_CHANNEL_TYPE)
        brand = body.get("brand")
        if brand in (None, ""):
            raise _validation(Text.FIELD_REQUIRED.format(field="brand"))
        if brand not in contract.Brand.values:
            raise _validation(Text.UNKNOWN_BRAND.format(value=brand))
        common_type = body.get("commonType")
        if common_type in (None, ""):
            raise _validation(Text.FIELD_REQUIRED.format(field="commonType"))
        if common_type not in contract.CommonType.values:
            raise _validation(Text.UNKNOWN_COMMON_TYPE.format(value=common_type))
        name = body.get("senderName")
        if name in (None, ""):
            raise _validation(Text.FIELD_REQUIRED.format(field="senderName"))
        if not isinstance(name, str) or not re.fullmatch(contract.sender_name_pattern(brand), name):
            raise _validation(Text.NAME_PATTERN)
        if body.get("dateFrom") in (None, ""):
            raise _validation(Text.FIELD_REQUIRED.format(field="dateFrom"))
        date_from = parse_iso(body.get("dateFrom"))
        if date_from is None:
            raise _validation(Text.INVALID_DATE_FROM)
        if date_from <= utcnow():
            raise _validation(Text.DATE_FROM_NOT_FUTURE)
        for required in ("counteragentName", "counteragentInn"):
            if body.get(required) in (None, ""):
                raise _validation(Text.FIELD_REQUIRED.format(field=required))
        if not re.fullmatch(contract.INN_PATTERN, str(body["counteragentInn"])):
            raise _validation(Text.INVALID_INN)
        files = request.files
        if common_type in contract.COMMON_TYPES_REQUIRING_DOCUMENTS and not files:
            raise _validation(Text.FILES_REQUIRED)
        if len(files) > contract.DOCUMENT_MAX_COUNT:
            raise _validation(Text.TOO_MANY_FILES)
        for info in files:
            if info["size"] > contract.DOCUMENT_MAX_BYTES:
                raise _validation(Text.FILE_TOO_LARGE.format(name=info["filename"]))
            if info["detected_type"] is None:
                raise _validation(Text.FILE_TYPE.format(name=info["filename"]))
        with self.lock:
            for existing in self.sender_names.values():
                if (
                    existing["senderName"].casefold() == name.casefold()
                    and existing["brand"] == brand
                    and existing["channelType"] == channel
                    and existing["status"] not in contract.SENDER_NAME_DEAD_STATUSES
                ):
                    raise _validation(Text.DUPLICATE.format(id=existing["id"]))
            remote_id = next(self._ids)
            record = {
                **body,
                "id": remote_id,
                "status": contract.SenderNameStatus.PRE_REVIEW.value,
                "fee": self.fee_table.get(brand, 2000),
                "comment": None,
                "files": [dict(f) for f in files],
                "createdAt": iso(utcnow()),
            }
            self.sender_names[remote_id] = record
            answer = {k: v for k, v in record.items() if k not in _SENDER_NAME_INTERNAL and k != "comment"}
        if self.auto_review_after is not None:
            self._later(self.auto_review_after, self._auto_review, remote_id, contract.SenderNameStatus.REVIEW.value)
        return 200, answer

    def _auto_review(self, remote_id: int, status: str):
        with self.lock:
            if remote_id not in self.sender_names:
                return
            self.set_sender_name_status(remote_id, status)
        if status == contract.SenderNameStatus.REVIEW:
            self._later(self.auto_review_after, self._auto_review, remote_id, self.auto_review_status)

    def _get_sender_name(self, raw_id: str):
        with self.lock:
            record = self.sender_names.get(int(raw_id)) if raw_id.isdigit() else None
            if record is None:
                raise _not_found()
            return 200, self.public_sender_name(record)

    def _list_sender_names(self, request: RecordedRequest):
        q = request.query
        with self.lock:
            items = [self.public_sender_name(r) for _, r in sorted(self.sender_names.items())]
        if "sender_name" in q:
            wanted = {v.casefold() for v in q["sender_name"]}
            items = [r for r in items if r["senderName"].casefold() in wanted]
        if "status" in q:
            items = [r for r in items if r["status"] in q["status"]]
        if "brand" in q:
            items = [r for r in items if r["brand"] in q["brand"]]
        return self._page(request, items)

    # --- messages -------------------------------------------------------------------------------------------------
    def _send_messages(self, request: RecordedRequest):
        if request.json_error:
            raise _validation(Text.INVALID_JSON)
        messages = request.json
        if not isinstance(messages, list) or not 1 <= len(messages) <= contract.SEND_BATCH_MAX:
            raise _validation(Text.ARRAY_SIZE)
        sendable = self.sendable_sender_names()
        items, accepted = [], []
        with self.lock:
            for message in messages:
                problem = self._message_problem(message, sendable)
                if problem:
                    items.append({"code": problem[0], "msg": problem[1]})
                    continue
                message_uuid = str(uuid.uuid4())
                now = utcnow()
                events = message.get("callbackEvents") or ["delivered"]
                self.messages[message_uuid] = {
                    "messageUuid": message_uuid,
                    "channelType": message["channelType"],
                    "senderName": message["senderName"],
                    "destination": message["destination"],
                    "status": contract.MessageStatus.SENDING.value,
                    "statusTime": iso(now),
                    "errorCode": None,
                    "externalMessageId": message.get("externalMessageId"),
                    "tags": list(message.get("tags") or []),
                    "content": message["content"],
                    "ttl": message.get("ttl"),
                    "callbackUrl": message.get("callbackUrl"),
                    "callbackEvents": list(events),
                    "createdAt": now,
                    "history": [(contract.MessageStatus.SENDING.value, iso(now))],
                }
                items.append({"messageUuid": message_uuid, "code": contract.MESSAGE_CREATED_ITEM_CODE})
                accepted.append(message_uuid)
        if self.auto_deliver_after is not None:
            for message_uuid in accepted:
                self._later(self.auto_deliver_after, self._auto_deliver, message_uuid, "sent")
        if self.callbacks_before_answer and accepted:
            self._callbacks_posted_before_answer(accepted)
        if self.send_answer_delay:
            time.sleep(self.send_answer_delay)
        return 200, {"errors": len(accepted) != len(items), "items": items}

    @staticmethod
    def _message_problem(message, sendable: set[str]) -> tuple[int, str] | None:
        invalid = contract.ITEM_CODE_INVALID
        if not isinstance(message, dict):
            return invalid, Text.INVALID_JSON
        if message.get("channelType") != contract.ChannelType.SMS:
            return invalid, Text.UNSUPPORTED_CHANNEL
        if message.get("senderName") not in sendable:
            return invalid, Text.SENDER_NAME_NOT_APPROVED
        destination = message.get("destination")
        if not isinstance(destination, str) or not re.fullmatch(contract.DESTINATION_PATTERN, destination):
            return contract.ITEM_CODE_INVALID_DESTINATION, Text.INVALID_DESTINATION
        if not isinstance(message.get("content"), str) or not message["content"]:
            return invalid, Text.CONTENT_REQUIRED
        ttl = message.get("ttl")
        if ttl is not None and (not isinstance(ttl, int) or not contract.TTL_MIN <= ttl <= contract.TTL_MAX):
            return invalid, Text.TTL_RANGE
        external_id = message.get("externalMessageId")
        if external_id is not None and len(str(external_id)) > contract.EXTERNAL_MESSAGE_ID_MAX_LENGTH:
            return invalid, Text.EXTERNAL_ID_TOO_LONG
        return None

    def _auto_deliver(self, message_uuid: str, status: str):
        with self.lock:
            message = self.messages.get(message_uuid)
            if message is None or message["status"] in contract.MESSAGE_FINAL_STATUSES:
                return
            if status == "sent":
                self.set_message_status(message_uuid, "sent")
            elif self.is_undeliverable(message["destination"]):
                self.set_message_status(message_uuid, "undelivered", contract.UNDELIVERED_ERROR_CODE)
            else:
                self.set_message_status(message_uuid, "delivered")
        if status == "sent":
            self._later(self.auto_deliver_after, self._auto_deliver, message_uuid, "final")

    def _get_messages(self, request: RecordedRequest):
        q = request.query
        self._paging(request)
        with self.lock:
            records = sorted(self.messages.values(), key=lambda m: m["createdAt"])
        filters = {
            "message_uuid": "messageUuid",
            "status": "status",
            "external_message_id": "externalMessageId",
            "destination": "destination",
            "sender_name": "senderName",
            "channel_type": "channelType",
        }
        for param, key in filters.items():
            if param in q:
                records = [m for m in records if str(m[key]) in q[param]]
        for param, keep in (("time_from", lambda t, b: t >= b), ("time_to", lambda t, b: t <= b)):
            if param in q:
                bound = parse_iso(q[param][0])
                if bound is None:
                    raise _validation(f"Invalid {param}")
                records = [m for m in records if keep(m["createdAt"], bound)]
        return self._page(request, [self.public_message(m) for m in records])

    def _stop_messages(self, request: RecordedRequest):
        if request.json_error:
            raise _validation(Text.INVALID_JSON)
        body = request.json
        uuids = body.get("uuids") if isinstance(body, dict) else None
        if not isinstance(uuids, list) or len(uuids) > contract.STOP_MAX:
            raise _validation(Text.UUIDS_REQUIRED)
        items = []
        with self.lock:
            for message_uuid in uuids:
                message = self.messages.get(message_uuid)
                if message is None:
                    code = 404
                elif message["status"] == contract.MessageStatus.SENDING:
                    code = 200
                    self._later(0.1, self._stop, message_uuid)
                else:
                    code = 403
                items.append({"messageUuid": message_uuid, "code": code})
        return 200, {"errors": any(i["code"] in (403, 404) for i in items), "items": items}

    def _stop(self, message_uuid: str):
        with self.lock:
            if self.messages[message_uuid]["status"] == contract.MessageStatus.SENDING:
                self.set_message_status(message_uuid, "unsent")

    # --- test hooks over HTTP ------------------------------------------------------------------------------------
    def _handle_hook(self, request: RecordedRequest):
        self._allow(request.method, "POST")
        body = request.json if isinstance(request.json, dict) else {}
        if not isinstance(body.get("status"), str) or not body["status"]:
            raise _validation(Text.FIELD_REQUIRED.format(field="status"))
        match = re.fullmatch(r"/__fake__/sender-names/(\d+)/status", request.path)
        if match:
            try:
                return 200, self.set_sender_name_status(int(match[1]), body.get("status"), body.get("comment"))
            except KeyError:
                raise _not_found() from None
        match = re.fullmatch(r"/__fake__/messages/([^/]+)/status", request.path)
        if match:
            try:
                return 200, self.set_message_status(match[1], body.get("status"), body.get("error_code"))
            except KeyError:
                raise _not_found() from None
        raise _not_found()


def _parse_multipart(content_type: str, raw: bytes) -> tuple[object, list[dict]]:
    """(body part, files) of a multipart/form-data request. The body part may be JSON or a form field."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + raw
    )
    body, files = None, []
    if not message.is_multipart():
        return body, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == contract.BODY_PART_NAME:
            text = payload.decode("utf-8", errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        elif name and re.fullmatch(r"file\d+", name):
            detected = next((t for magic, t in FILE_MAGIC.items() if payload.startswith(magic)), None)
            files.append(
                {
                    "name": name,
                    "filename": part.get_filename(),
                    "size": len(payload),
                    "content_type": part.get_content_type() if part.get("Content-Type") else None,
                    "sha256": hashlib.sha256(payload).hexdigest(),
                    "detected_type": detected,
                }
            )
    return body, files


class _Handler(BaseHTTPRequestHandler):
    fake: FakeIdgtl
    protocol_version = "HTTP/1.1"
    server_version = "FakeIdgtl/1.0"
    disable_nagle_algorithm = True  # headers and body go in separate writes: avoid the 40 ms delayed-ACK stall

    def log_message(self, fmt, *args):
        logger.debug("fake i-dgtl: " + fmt, *args)  # noqa: G003 (http.server hands over a %-format and its args)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command, path=split.path, query=parse_qs(split.query), headers=dict(self.headers), raw_body=raw
        )
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            request.body_part, request.files = _parse_multipart(content_type, raw)
        elif raw:
            try:
                request.json = json.loads(raw.decode("utf-8"))
            except ValueError:
                request.json_error = True
        with self.fake.lock:
            self.fake.requests.append(request)
            limit = self.fake.max_recorded_requests
            if limit is not None and len(self.fake.requests) > limit:
                del self.fake.requests[: len(self.fake.requests) - limit]
        headers = {}
        try:
            status, payload = self.fake.handle(request)
        except FakeError as exc:
            status, headers = exc.status, exc.headers
            payload = {"error": {"code": exc.code, "msg": exc.msg}}
        except Exception:  # a bug in the fake must still answer with the envelope
            logger.exception("fake i-dgtl failed on %s %s", request.method, request.path)
            status, payload = 500, {"error": {"code": 5000, "msg": "Internal Server Error"}}
        request.status = status
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fakes.idgtl", description="Fake i-dgtl Direct API (sandbox).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument(
        "--auto-review-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="move new sender names PRE_REVIEW -> REVIEW -> APPROVED after this delay each",
    )
    parser.add_argument("--auto-review-status", default="APPROVED")
    parser.add_argument(
        "--auto-deliver-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="move accepted messages sending -> sent -> delivered (undelivered for numbers "
        "ending in 0000) after this delay each",
    )
    parser.add_argument("--sender-names-key", default="c2VuZGVyOm5hbWVz")
    parser.add_argument("--messages-key", default="bWVzc2FnZXM6a2V5")
    parser.add_argument(
        "--no-sender-name-reads",
        action="store_true",
        help="play an i-dgtl without GET /sender-names/{id} and GET /sender-names (404/405)",
    )
    parser.add_argument(
        "--allow-sender-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a sender name usable for sending without an approved application (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    fake = FakeIdgtl(
        args.host,
        args.port,
        sender_names_key=args.sender_names_key,
        messages_key=args.messages_key,
        auto_review_after=args.auto_review_after,
        auto_review_status=args.auto_review_status,
        auto_deliver_after=args.auto_deliver_after,
        max_recorded_requests=1000,
        sender_name_reads=not args.no_sender_name_reads,
    )
    fake._config["allowed_sender_names"] = set(args.allow_sender_name)
    fake.reset()
    fake.start()
    print(f"fake i-dgtl listening at {fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
