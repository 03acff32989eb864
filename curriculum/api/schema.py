"""The API's OpenAPI description where drf-spectacular's defaults say too little: the token scheme, whose
Swagger UI "Authorize" box takes the whole header value, ``Token <key>``, not the key alone."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension

# What the "Authorize" dialog shows (Swagger UI puts the box's text in the header as it is).
TOKEN_SCHEME_DESCRIPTION = (
    "Send `Authorization: Token <key>`. In this page's Authorize box type the word `Token`, a space, then the key "
    "(e.g. `Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b`): the box fills the header with exactly what you type. "
    "Keys: `python manage.py create_api_token USERNAME`, or the admin's Curriculum > API tokens."
)


class CachedTokenScheme(OpenApiAuthenticationExtension):
    """The API's CachedTokenAuthentication as an OpenAPI ``apiKey`` scheme in the ``Authorization`` header, named
    ``tokenAuth`` as drf-spectacular's own TokenScheme (which it replaces: higher priority), described for a person
    at the Authorize dialog (TOKEN_SCHEME_DESCRIPTION)."""

    target_class = "curriculum.api.authentication.CachedTokenAuthentication"
    name = "tokenAuth"
    priority = 1

    def get_security_definition(self, auto_schema) -> dict:
        """The scheme object: ``{"type": "apiKey", "in": "header", "name": "Authorization", "description": ...}``."""
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": TOKEN_SCHEME_DESCRIPTION}
