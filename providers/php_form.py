"""PHP-style form bodies, as Bitrix24 POSTs them: ``application/x-www-form-urlencoded`` with nested
keys (``bindings[0][OWNER_ID]=123``, ``document_id[]=crm``, ``auth[application_token]=...``; the
brackets may arrive percent-encoded as ``%5B``/``%5D``).

:func:`php_form_decode` turns such a body into nested data the way PHP (and the ``qs`` family)
builds it: a bracketed key makes a dict, ``[]`` appends, and a dict whose keys are all small
integers becomes a list ordered by index. It is written for the HANDLER, which Bitrix24 calls for
every SMS and whose throughput is measured (``bench/handler_intake.py``): one pass, no per-character
work on plain keys and values. Anything it cannot take raises :class:`PhpFormError`:

- a key or value that is not UTF-8 once percent-decoded;
- more than ``max_fields`` fields;
- one field given both as a value and as a set of values (``a=1&a[b]=2``).

A field given twice as a plain value becomes a list of its values, so that a caller expecting one
value can say it was given twice. Keys nested deeper than ``depth`` keep the rest of their brackets as
one literal key (``a[b][c][d][e][f]`` with depth 3: ``a → b → c → d → "[e][f]"``), as ``qs`` does; a key
whose brackets do not close is taken literally.
"""

from __future__ import annotations

import urllib.parse

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http.multipartparser import MultiPartParserError


class PhpFormError(ValueError):
    """The body is not a form; ``field`` names the top-level field at fault, if one is."""

    def __init__(self, message: str, field: str = "", *, not_utf8: bool = False, too_many: bool = False):
        super().__init__(message)
        self.field = field
        self.not_utf8 = not_utf8
        self.too_many = too_many  # more than max_fields fields


def _decode(text: str) -> str:
    """``+`` is a space, ``%XX`` a byte; the bytes must be UTF-8."""
    if "%" in text and "%5" in text:  # PHP encodes every bracket of a key: the usual case, made cheap
        text = text.replace("%5B", "[").replace("%5D", "]").replace("%5b", "[").replace("%5d", "]")
    if "%" not in text:
        return text.replace("+", " ") if "+" in text else text
    try:
        return urllib.parse.unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise PhpFormError("not UTF-8", not_utf8=True) from None


def _path(key: str, depth: int) -> tuple[str, list[str]]:
    """``a[b][c]`` → ("a", ["b", "c"]); a key without (well-formed) brackets → (key, [])."""
    opening = key.find("[")
    if opening <= 0 or key[-1] != "]":
        return key, []
    segments = key[opening + 1 : -1].split("][")
    for segment in segments:
        if "[" in segment or "]" in segment:
            return key, []  # unbalanced or text between brackets: a literal name
    if len(segments) > depth:
        segments = segments[:depth] + ["".join(f"[{s}]" for s in segments[depth:])]
    return key[:opening], segments


class _Conflict(Exception):
    pass


def _index(key: str) -> int | None:
    """The list index a key stands for (ASCII digits, at most 9 of them), or None."""
    return int(key) if key.isascii() and key.isdigit() and len(key) <= 9 else None


def _put(container: dict, key: str, value: str) -> None:
    """A value for ``key``; a second one makes a list of them. _Conflict if ``key`` holds a set."""
    existing = container.get(key)
    if existing is None:
        container[key] = value
    elif isinstance(existing, str):
        container[key] = [existing, value]
    elif isinstance(existing, list):
        existing.append(value)
    else:
        raise _Conflict


def _assign(container: dict, segments: list[str], value: str) -> None:
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == "":  # "[]": the next index
            segment = str(1 + max((i for i in map(_index, container) if i is not None), default=-1))
        if last:
            _put(container, segment, value)
        else:
            existing = container.get(segment)
            if existing is None:
                existing = container[segment] = {}
            elif not isinstance(existing, dict):
                raise _Conflict
            container = existing


def _as_lists(value, max_list_index: int):
    """Dicts whose keys are all integers up to ``max_list_index`` become lists in index order."""
    if not isinstance(value, dict):
        return value
    items = {key: _as_lists(item, max_list_index) if isinstance(item, dict) else item for key, item in value.items()}
    indexes = []
    for key in items:
        index = _index(key)
        if index is None or index > max_list_index:
            return items
        indexes.append(index)
    if not indexes:
        return items
    return [item for _, item in sorted(zip(indexes, items.values(), strict=False), key=lambda pair: pair[0])]


def php_form_decode(body: str, *, depth: int = 5, max_fields: int = 1000, max_list_index: int = 200) -> dict:
    """The nested data of a PHP-style form body (see the module's docstring)."""
    data: dict = {}
    nested: set[str] = set()
    count = 0
    for part in body.split("&"):
        if not part:
            continue
        count += 1
        if count > max_fields:
            raise PhpFormError(f"more than {max_fields} fields", too_many=True)
        key, _, value = part.partition("=")
        key, value = _decode(key), _decode(value)
        if not key:
            continue
        name, segments = _path(key, depth)
        if not segments:
            try:
                _put(data, name, value)
            except _Conflict:
                raise PhpFormError("given both as a value and as a set of values", name) from None
            continue
        existing = data.get(name)
        if existing is None:
            existing = data[name] = {}
            nested.add(name)
        elif not isinstance(existing, dict):
            raise PhpFormError("given both as a value and as a set of values", name)
        try:
            _assign(existing, segments, value)
        except _Conflict:
            raise PhpFormError("given both as a value and as a set of values", name) from None
    return {name: _as_lists(value, max_list_index) if name in nested else value for name, value in data.items()}


def php_form_from_request(request, *, depth: int = 5, max_fields: int = 1000, max_list_index: int = 100) -> dict:
    """The body of a Bitrix24 install or event request as nested data (form-urlencoded, or multipart as
    an install page may post it). :class:`PhpFormError` for anything that is not such a form: a body that
    is not UTF-8, too large, too many fields, a broken multipart body."""
    try:
        if (request.content_type or "").startswith("multipart/"):
            raw = urllib.parse.urlencode([(k, v) for k, values in request.POST.lists() for v in values])
        else:
            raw = request.body.decode("utf-8")
        parsed = php_form_decode(raw, depth=depth, max_fields=max_fields, max_list_index=max_list_index) if raw else {}
    except PhpFormError:
        raise
    except (ValueError, RequestDataTooBig, SuspiciousOperation, MultiPartParserError) as exc:
        raise PhpFormError(str(exc)) from exc
    if not isinstance(parsed, dict):
        raise PhpFormError("not a form")
    return parsed
