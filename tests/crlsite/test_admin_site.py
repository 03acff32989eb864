"""The admin is branded CRL Ops; its header links the API docs (no "View site": the site has no home page)."""
import pytest
from django.contrib import admin


def test_the_admin_site_is_the_branded_one():
    assert (admin.site.site_header, admin.site.site_title) == ("CRL Ops", "CRL Ops")
    assert admin.site.index_title.startswith("CRL Ops")
    assert admin.site.site_url is None


@pytest.mark.django_db
def test_the_index_page_shows_the_brand_and_an_api_docs_link_instead_of_view_site(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert "<title>CRL Ops administration | CRL Ops</title>" in html
    assert '<a href="/admin/">CRL Ops</a>' in html
    assert '<a href="/api/docs/" id="api-docs-link">API docs</a>' in html and "View site" not in html


@pytest.mark.django_db
def test_admin_pages_link_the_site_icon_which_is_served(admin_client):
    from django.contrib.staticfiles import finders
    from django.templatetags.static import static

    for url in ("/admin/", "/admin/curriculum/curriculum/", "/admin/curriculum-ops/orchestrator/"):
        page = admin_client.get(url).content.decode()
        assert f'<link rel="icon" type="image/svg+xml" href="{static("crl/favicon.svg")}">' in page, url
    icon = finders.find("crl/favicon.svg")
    assert icon and open(icon).read().startswith("<svg")
