"""The admin site, branded CRL Ops. The site has no public home page: no "View site" link (``site_url`` None); the
header links the API docs instead (templates/admin/base_site.html)."""
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class CrlAdminSite(admin.AdminSite):
    site_header = "CRL Ops"
    site_title = "CRL Ops"
    index_title = "CRL Ops administration"
    site_url = None


class CrlAdminConfig(AdminConfig):
    """Installed instead of ``django.contrib.admin``: ``admin.site`` is then a :class:`CrlAdminSite`."""

    default_site = "crlsite.admin_site.CrlAdminSite"
