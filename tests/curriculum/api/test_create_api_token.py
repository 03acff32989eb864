"""`create_api_token USERNAME`: prints a working token; idempotent; --rotate replaces it."""
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


@pytest.mark.django_db
def test_it_creates_a_user_without_password_and_prints_only_the_key(client):
    key, err = run("lms")
    user = get_user_model().objects.get(username="lms")
    assert Token.objects.get(user=user).key == key and len(key) == 40
    assert not user.has_usable_password()
    assert "Created API user" in err
    assert client.get("/api/v1/curricula/x/policy", HTTP_AUTHORIZATION=f"Token {key}").status_code == 404


@pytest.mark.django_db
def test_it_is_idempotent_and_rotate_makes_a_new_token(client):
    first, _ = run("lms")
    again, _ = run("lms")
    rotated, err = run("lms", "--rotate")
    assert again == first and rotated != first and "Rotated" in err
    assert Token.objects.filter(user__username="lms").count() == 1
    assert client.get("/api/v1/curricula/x/policy", HTTP_AUTHORIZATION=f"Token {first}").status_code == 401


@pytest.mark.django_db
def test_an_existing_user_keeps_its_password():
    user = get_user_model().objects.create_user(username="ops", password="a-long-password-1")
    run("ops")
    user.refresh_from_db()
    assert user.check_password("a-long-password-1")


@pytest.mark.django_db
def test_an_invalid_username_is_refused():
    with pytest.raises(CommandError, match="USERNAME"):
        run("not valid!")
