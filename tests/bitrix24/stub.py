"""An in-process HTTP stub for requests: unit tests script Bitrix24's answers without a server."""

import json
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter


@dataclass
class Seen:
    method: str
    url: str
    json: dict | None
    query: dict

    @property
    def path(self):
        return urlsplit(self.url).path


class StubAdapter(BaseAdapter):
    """Answers each request with ``handler(seen) -> (status, payload, headers)`` or the next queued answer."""

    def __init__(self, handler=None):
        super().__init__()
        self.handler = handler
        self.queue: list = []
        self.seen: list[Seen] = []

    def answer(self, status=200, payload=None, headers=None):
        self.queue.append((status, payload, headers or {}))
        return self

    def send(self, request, **kwargs):
        body = request.body
        if isinstance(body, bytes):
            body = body.decode()
        seen = Seen(
            request.method,
            request.url,
            json.loads(body) if body else None,
            {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()},
        )
        self.seen.append(seen)
        if self.queue:
            status, payload, headers = self.queue.pop(0)
        else:
            status, payload, headers = self.handler(seen)
        if isinstance(status, Exception):
            raise status
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = json.dumps(payload).encode() if payload is not None else b""
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


def stub_session(handler=None) -> tuple[requests.Session, StubAdapter]:
    adapter = StubAdapter(handler)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter


def ok(result):
    return 200, {"result": result, "time": {"start": 1, "finish": 1.1, "duration": 0.1, "operating": 0}}, {}


def err(status, code, description=""):
    return status, {"error": code, "error_description": description}, {}
