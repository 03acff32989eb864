"""The admin site, branded CRL Ops; its "View site" link opens the API docs (the site has no public home page)."""
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import reverse_lazy


class CrlAdminSite(admin.AdminSite):
    site_header = "CRL Ops"
    site_title = "CRL Ops"
    index_title = "CRL Ops administration"
    site_url = reverse_lazy("api-docs")


class CrlAdminConfig(AdminConfig):
    """Installed instead of ``django.contrib.admin``: ``admin.site`` is then a :class:`CrlAdminSite`."""

    default_site = "crlsite.admin_site.CrlAdminSite"
