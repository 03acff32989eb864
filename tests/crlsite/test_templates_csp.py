"""Every template's inline script carries the CSP nonce, and no template uses inline event handlers: the
Content-Security-Policy blocks both otherwise, silently (the page just stops behaving)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = sorted((Path(__file__).resolve().parents[2] / "templates").rglob("*.html"))
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\s(on[a-z]+)\s*=", re.IGNORECASE | re.DOTALL)
NONCE = 'nonce="{{ request.csp_nonce }}"'


def test_the_scan_finds_the_templates():
    assert len(TEMPLATES) > 10


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_inline_scripts_carry_the_csp_nonce(template):
    text = template.read_text()
    for match in SCRIPT_TAG.finditer(text):
        attributes = match.group(1)
        if "src=" in attributes:
            continue
        line = text.count("\n", 0, match.start()) + 1
        assert NONCE in attributes, f"{template}:{line}: inline <script> without {NONCE}"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_no_inline_event_handlers(template):
    text = template.read_text()
    match = EVENT_HANDLER.search(text)
    assert match is None, (f"{template}:{text.count(chr(10), 0, match.start()) + 1}: inline {match.group(1)}= "
                           "handler (blocked by the CSP): attach it from a nonce'd script")
