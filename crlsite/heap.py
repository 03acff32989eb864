"""The garbage collector in a long-lived web process: what start-up loaded is frozen out of its full passes.

A full (generation 2) pass walks every tracked object; in a web worker most of them are Django's, DRF's and
NumPy's modules, loaded once and never freed, so a pass costs tens to hundreds of milliseconds and lands on
whichever request happens to allocate at that moment (bench/serving_profile.py measured a 290 ms pass at one
connection). `gc.freeze()` (CPython 3.7+, made for pre-fork servers) moves them to a permanent generation that no
pass walks; what requests allocate is still collected as before.
"""
from __future__ import annotations

import gc


def freeze_loaded_heap() -> int:
    """Collect what start-up left as garbage, then freeze every object still alive out of future passes; return
    how many objects are frozen (gc.get_freeze_count())."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
