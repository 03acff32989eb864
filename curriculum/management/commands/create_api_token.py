"""`create_api_token USERNAME [--rotate]`: print the API token of a user, creating the user and token if missing."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


def issue_token(*, username: str, rotate: bool = False) -> tuple[Token, bool, bool]:
    """(token, user created, token is new). Idempotent unless `rotate`, which replaces the existing token."""
    User = get_user_model()
    with transaction.atomic():
        user, user_created = User.objects.get_or_create(username=username)
        if user_created:
            # an API client account: no password, so it cannot log in to the admin
            user.set_unusable_password()
            user.save(update_fields=["password"])
        user = User.objects.select_for_update().get(pk=user.pk)  # two rotations at once leave one token
        if rotate:
            Token.objects.filter(user=user).delete()
        token, token_created = Token.objects.get_or_create(user=user)
    return token, user_created, token_created


class Command(BaseCommand):
    help = (
        "Print USERNAME's API token (for 'Authorization: Token <key>'), creating the user (without a password) and "
        "the token if missing. Run again: the same token. --rotate: a new token; the old one stops working."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--rotate", action="store_true", help="replace the existing token with a new one")

    def handle(self, *args, username: str, rotate: bool, **options):
        User = get_user_model()
        try:
            User._meta.get_field(User.USERNAME_FIELD).clean(username, None)
        except ValidationError as exc:
            raise CommandError(f"USERNAME {username!r}: {' '.join(exc.messages)}") from None
        token, user_created, token_created = issue_token(username=username, rotate=rotate)
        if user_created:
            self.stderr.write(f"Created API user {username!r} (no password: it cannot log in to the admin).")
        if rotate:
            self.stderr.write(f"Rotated {username!r}'s token; the previous one no longer works.")
        elif token_created:
            self.stderr.write(f"Created a token for {username!r}.")
        # stdout carries only the key, so that TOKEN=$(manage.py create_api_token NAME) works
        self.stdout.write(token.key)
