"""Template hygiene: Django's ``{# #}`` comments are single-line only; one spread over lines is printed on the page
as text (a newcomer saw one on the rollback confirmation). Longer comments use ``{% comment %}``."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted(p for folder in (ROOT / "templates", *ROOT.glob("*/templates")) for p in folder.rglob("*.html"))


def test_every_short_comment_closes_on_its_own_line():
    assert TEMPLATES
    unclosed = [f"{path.relative_to(ROOT)}:{number}"
                for path in TEMPLATES
                for number, line in enumerate(path.read_text().splitlines(), 1)
                if any("#}" not in rest for rest in re.split(r"\{#", line)[1:])]
    assert unclosed == []
