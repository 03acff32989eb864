"""Token authentication for the API: DRF's `Authorization: Token <key>`, with each process remembering valid tokens briefly."""
from __future__ import annotations

import threading
import time

from django.db.models.signals import post_delete
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

# How long a process trusts a token it has checked: a deleted (rotated) token, or a deactivated user, is refused
# by every web process within this many seconds, and at once by the process that deleted it.
TOKEN_CACHE_SECONDS = 5.0
MAX_REMEMBERED = 10_000


class CachedTokenAuthentication(TokenAuthentication):
    """TokenAuthentication without a database query per request for a token seen in the last few seconds.

    The query (token joined to its user) was the largest cost of a recommendation after the policy itself.
    Unknown or invalid keys are never remembered: each is checked against the database, as before.
    """

    _known: dict[str, tuple[float, object, Token]] = {}
    _lock = threading.Lock()

    def authenticate(self, request):
        """DRF's, except that an Authorization header with another scheme (``Bearer``, what OAuth clients send, or
        ``Basic``) or none (the key alone) is refused with a 401 that names the scheme to use, instead of DRF's
        "credentials were not provided". The header's value is never echoed, only a scheme word before a space."""
        parts = get_authorization_header(request).split(maxsplit=1)
        if parts and parts[0].lower() != b"token":
            word = parts[0].decode("latin-1")
            given = (f"not {word}" if len(parts) == 2 and word.isascii() and word.isalpha() and len(word) <= 20
                     else "no scheme given")
            raise AuthenticationFailed(f"the Authorization header's scheme must be Token: 'Authorization: Token <key>' "
                                       f"({given})")
        return super().authenticate(request)

    def authenticate_credentials(self, key: str):
        now = time.monotonic()
        hit = self._known.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        user, token = super().authenticate_credentials(key)  # raises AuthenticationFailed (401) as DRF's does
        with self._lock:
            if len(self._known) >= MAX_REMEMBERED:  # bounded, whatever the number of clients
                self._known.clear()
            self._known[key] = (now + TOKEN_CACHE_SECONDS, user, token)
        return user, token

    @classmethod
    def remembered(cls, key: str) -> tuple[object, Token] | None:
        """(user, token) of a key this process checked less than TOKEN_CACHE_SECONDS ago, without a query; None
        otherwise (never checked, expired, forgotten): authenticate_credentials decides then. The lean path's
        authentication (curriculum/api/lean_path.py)."""
        hit = cls._known.get(key)
        return hit[1:] if hit is not None and hit[0] > time.monotonic() else None

    @classmethod
    def forget(cls, key: str | None = None) -> None:
        with cls._lock:
            if key is None:
                cls._known.clear()
            else:
                cls._known.pop(key, None)


def _forget_deleted_token(sender, instance: Token, **kwargs) -> None:
    CachedTokenAuthentication.forget(instance.key)


post_delete.connect(_forget_deleted_token, sender=Token, dispatch_uid="curriculum.api.forget_deleted_token")
