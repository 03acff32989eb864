"""The API's request body parser: strict JSON, bounded in size, whatever Content-Type the client sent; and the
reading of a chunked body (no Content-Length), which Django's WSGI request would otherwise take as empty."""
from __future__ import annotations

import io
import json
from typing import Any

from django.http import HttpRequest

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

# 1000 reviews with every string at its longest stay under 1.5 MB of JSON; room for pretty-printing.
MAX_BODY_BYTES = 4 * 1024 * 1024


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


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
    """JSON even when the Content-Type is missing or wrong (curl -d sends form encoding): bad JSON is a 400."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise ParseError(f"malformed request body: larger than {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(raw, parse_constant=_refuse_constant)
        except RecursionError:
            raise ParseError("malformed JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ParseError(f"malformed JSON: {exc}") from None
        _refuse_unstorable_strings(data)
        return data


def buffer_chunked_body(request: HttpRequest) -> None:
    """Make a chunked request body (``Transfer-Encoding: chunked``, no Content-Length) readable as a normal one.

    Django reads ``Content-Length`` bytes of ``wsgi.input`` and, without the header, none: the body looked
    empty and a review post failed with five missing fields. A server that has already decoded the chunks and
    ends the stream at the body's end says so with ``wsgi.input_terminated`` (gunicorn does; PEP 3333 has no
    other way); then the body is read here, at most MAX_BODY_BYTES + 1 bytes (the parser refuses more), and
    Content-Length is set to its size. Without that flag nothing is read: reading to EOF could block on the
    client's connection.
    """
    meta = request.META
    if meta.get("CONTENT_LENGTH") or "chunked" not in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        return
    if not meta.get("wsgi.input_terminated"):
        return
    body = meta["wsgi.input"].read(MAX_BODY_BYTES + 1)
    request._stream = io.BytesIO(body)  # what HttpRequest.read() and .body read from
    meta["CONTENT_LENGTH"] = str(len(body))
