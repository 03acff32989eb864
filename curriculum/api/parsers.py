"""The API's request body parser: strict JSON (no duplicate keys, no NaN), bounded in size, sent as JSON (a
Content-Type of application/json or *+json, or none; any other is a 415); and the reading of a chunked body (no Content-Length), which Django's WSGI request would otherwise take as empty."""
from __future__ import annotations

import io
import json
from typing import Any

from django.http import HttpRequest

from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser

from .errors import InvalidRequest

# Set on a request whose chunked body the server could not hand over (no wsgi.input_terminated): see
# buffer_chunked_body; refuse_unread_chunked_body then refuses it by name instead of reading an empty body.
UNREAD_CHUNKED_BODY = "_crl_unread_chunked_body"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # the methods whose body the API reads

# 1000 reviews with every string at its longest stay under 1.5 MB of JSON; room for pretty-printing.
MAX_BODY_BYTES = 4 * 1024 * 1024


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Python refuses to read integers of more than 4,300 digits (sys.get_int_max_str_digits) with a message about its own
# internals; the same limit, said in the API's words. Shorter numbers reach the fields, which name themselves.
MAX_NUMBER_DIGITS = 4300


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(text.lstrip('-')):,} digits (at most {MAX_NUMBER_DIGITS:,})")
    return int(text)


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys: {"correct": true, "correct": false} would be read as false
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise InvalidRequest([{"field": key, "message": "duplicate key in a JSON object: send each field once"}])
        seen[key] = value
    return seen


def is_json_media_type(media_type: str | None) -> bool:
    """application/json or a structured-syntax ``+json`` type, parameters ignored; no Content-Type counts too."""
    base = (media_type or "").split(";", 1)[0].strip().lower()
    return base in ("", "application/json") or (base.startswith("application/") and base.endswith("+json"))


def _refuse_unstorable_strings(data: Any) -> None:
    # Valid JSON, but no database stores it: NUL (PostgreSQL text cannot hold it) and lone UTF-16 surrogates
    # ("\ud800", not UTF-8). Refused here as a bad request instead of failing in the database.
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ParseError("malformed request body: strings must not contain the NUL character (\\u0000)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError("malformed request body: strings must not contain unpaired surrogates (\\ud800-\\udfff)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class JSONBodyParser(BaseParser):
    """JSON bodies: bad JSON or a duplicate key is a 400 (the key named); a Content-Type other than JSON (curl -d
    sends application/x-www-form-urlencoded unless told ``-H "Content-Type: application/json"``) is a 415."""

    media_type = "*/*"  # so that the refusal below, not DRF's negotiation, answers (in the API's error shape)

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        if not is_json_media_type(media_type):
            base = media_type.split(";")[0]
            hint = (" (Django's development server, which `make run` serves with, passes a request sent without a "
                    "Content-Type on as text/plain)" if base.strip().lower() == "text/plain" else "")
            raise UnsupportedMediaType(media_type, detail=f"unsupported Content-Type {base!r}: send the body as JSON "
                                       f"with Content-Type: application/json{hint}")
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise ParseError(f"malformed request body: larger than {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(raw, parse_constant=_refuse_constant, parse_int=_bounded_int, object_pairs_hook=_object_without_duplicate_keys)
        except RecursionError:
            raise ParseError("malformed JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ParseError(f"malformed JSON: {exc}") from None
        _refuse_unstorable_strings(data)
        return data


def refuse_unread_chunked_body(request: HttpRequest) -> None:
    """ParseError (a 400 naming the cause) for a request whose chunked body the server could not hand over
    (marked by buffer_chunked_body): REST framework would read it as an empty body, and the client would be told
    that every field is missing."""
    if getattr(request, UNREAD_CHUNKED_BODY, False):
        raise ParseError("the body was sent in chunks (Transfer-Encoding: chunked, no Content-Length), which this "
                         "server cannot read (Django's development server, `make run`; gunicorn can): send it with "
                         "a Content-Length")


def buffer_chunked_body(request: HttpRequest) -> None:
    """Make a chunked request body (``Transfer-Encoding: chunked``, no Content-Length) readable as a normal one.

    Django reads ``Content-Length`` bytes of ``wsgi.input`` and, without the header, none: the body looked
    empty and a review post failed with five missing fields. A server that has already decoded the chunks and
    ends the stream at the body's end says so with ``wsgi.input_terminated`` (gunicorn does; PEP 3333 has no
    other way); then the body is read here, at most MAX_BODY_BYTES + 1 bytes (the parser refuses more), and
    Content-Length is set to its size. Without that flag nothing is read: reading to EOF could block on the
    client's connection: the request is marked (UNREAD_CHUNKED_BODY) and refused by refuse_unread_chunked_body.
    """
    meta = request.META
    if (request.method not in BODY_METHODS or meta.get("CONTENT_LENGTH")
            or "chunked" not in meta.get("HTTP_TRANSFER_ENCODING", "").lower()):
        return
    if not meta.get("wsgi.input_terminated"):
        setattr(request, UNREAD_CHUNKED_BODY, True)  # the parser says so, rather than reading an empty body
        return
    body = meta["wsgi.input"].read(MAX_BODY_BYTES + 1)
    request._stream = io.BytesIO(body)  # what HttpRequest.read() and .body read from
    meta["CONTENT_LENGTH"] = str(len(body))
