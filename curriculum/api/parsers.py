"""The API's request body parser: strict JSON, bounded in size, whatever Content-Type the client sent."""
from __future__ import annotations

import json
from typing import Any

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
