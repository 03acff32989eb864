"""Per-learner serving state, kept in step with the review log (filled in by the serving work)."""
from __future__ import annotations

from collections.abc import Sequence

from .models import ReviewLog


def apply_reviews(*, reviews: Sequence[ReviewLog]) -> None:
    """Fold newly stored reviews into their learners' serving state (no-op until serving exists)."""
    return None
