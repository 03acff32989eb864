"""The admin of API tokens (Curriculum > API tokens), in place of Django REST framework's "Auth Token > Tokens",
which lists every key in full: here a key is shown whole once, when it is created, and masked everywhere after."""
from __future__ import annotations

from django.contrib import admin, messages
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from .admin_text import format_when
from .models import ApiToken

# How many of a key's characters identify it in lists (of 40): enough to tell keys apart, too few to use one.
SHOWN_KEY_CHARACTERS = 4


def masked_key(key: str) -> str:
    """``"9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"`` -> ``"9944… (40 characters)"``: the first SHOWN_KEY_CHARACTERS
    and the length; "" stays ""."""
    if not key:
        return ""
    return f"{key[:SHOWN_KEY_CHARACTERS]}\u2026 ({len(key)} characters)"


if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)  # DRF's TokenAdmin lists the keys in full


@admin.register(ApiToken)
class ApiTokenAdmin(TokenAdmin):
    """Create (choose the user: the key is generated and shown once), list and revoke (delete) API tokens; a key is
    never edited and, after its creation message, only shown masked. DRF's TokenAdmin maps the admin's object ids
    to user ids (its changelist and get_object), so that the key is in no URL."""

    list_display = ("key_masked", "user", "created_at")
    list_select_related = ("user",)
    raw_id_fields = ("user",)

    def get_fields(self, request, obj=None):
        return ("user",) if obj is None else ("key_masked", "user", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("key_masked", "user", "created_at")

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a token is created or revoked, never edited

    @admin.display(description="key")
    def key_masked(self, obj: ApiToken) -> str:
        return masked_key(obj.key)

    @admin.display(description="created", ordering="created")
    def created_at(self, obj: ApiToken) -> str:
        return format_when(obj.created)

    def response_add(self, request, obj, post_url_continue=None):
        # The one time the key is shown: the client needs it, and the list never shows it again.
        self.message_user(request, f"API token for {obj.user}: {obj.key} - copy it now, it is not shown again. "
                                   f"Clients send it as 'Authorization: Token {obj.key}'.", messages.SUCCESS)
        return self.response_post_save_add(request, obj)
