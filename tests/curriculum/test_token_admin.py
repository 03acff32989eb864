"""Curriculum > API tokens: keys masked in the admin (shown whole once, at creation), DRF's full-key list gone, and
the API docs' Authorize dialog saying to type `Token <key>`."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from curriculum.token_admin import masked_key

pytestmark = pytest.mark.django_db


def test_the_tokens_list_and_page_never_show_a_key_in_full(admin_client, django_user_model):
    user = django_user_model.objects.create_user("client-app", password="x")
    token = Token.objects.create(user=user)
    listing = admin_client.get(reverse("admin:curriculum_apitoken_changelist")).content.decode()
    assert token.key not in listing and masked_key(token.key) in listing and "client-app" in listing
    page = admin_client.get(reverse("admin:curriculum_apitoken_change", args=[user.pk])).content.decode()
    assert token.key not in page and masked_key(token.key) in page and "client-app&#x27;s token" in page
    delete = admin_client.get(reverse("admin:curriculum_apitoken_delete", args=[user.pk])).content.decode()
    assert token.key not in delete
    api = "/api/v1/curricula/none/policy"
    assert Client().get(api, HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 404  # valid (and remembered)
    admin_client.post(reverse("admin:curriculum_apitoken_delete", args=[user.pk]), {"post": "yes"})
    assert not Token.objects.filter(user=user).exists()  # revoked...
    assert Client().get(api, HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 401  # ...and forgotten at once
    assert admin_client.get("/admin/authtoken/tokenproxy/").status_code == 404  # DRF's full-key list is gone
    index = admin_client.get("/admin/").content.decode()
    assert "API tokens" in index and "Auth Token" not in index


def test_a_new_token_is_shown_once_then_masked(admin_client, django_user_model):
    user = django_user_model.objects.create_user("client-app", password="x")
    response = admin_client.post(reverse("admin:curriculum_apitoken_add"), {"user": user.pk}, follow=True)
    token = Token.objects.get(user=user)
    shown = [str(m) for m in response.context["messages"]]
    assert any(token.key in m and "not shown again" in m for m in shown)
    again = admin_client.get(reverse("admin:curriculum_apitoken_changelist")).content.decode()
    assert token.key not in again


def test_masked_key_keeps_four_characters_and_the_length():
    assert masked_key("9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b") == "9944\u2026 (40 characters)"
    assert masked_key("") == ""


def test_the_authorize_dialog_says_to_type_token_and_the_key(client):
    import json

    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    scheme = schema["components"]["securitySchemes"]["tokenAuth"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert "type the word `Token`, a space, then the key" in scheme["description"]
    assert all(op.get("security") in (None, [{"tokenAuth": []}]) or {"tokenAuth": []} in op["security"]
               for path in schema["paths"].values() for op in path.values())
