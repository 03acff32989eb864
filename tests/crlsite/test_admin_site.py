"""The admin is branded CRL Ops and its "View site" link leads to the API docs."""
import pytest
from django.contrib import admin


def test_the_admin_site_is_the_branded_one():
    assert (admin.site.site_header, admin.site.site_title) == ("CRL Ops", "CRL Ops")
    assert admin.site.index_title.startswith("CRL Ops")
    assert str(admin.site.site_url) == "/api/docs/"


@pytest.mark.django_db
def test_the_index_page_shows_the_brand_and_view_site_opens_the_docs(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert "<title>CRL Ops administration | CRL Ops</title>" in html
    assert '<a href="/admin/">CRL Ops</a>' in html
    assert '<a href="/api/docs/">View site</a>' in html


@pytest.mark.django_db
def test_admin_pages_link_the_site_icon_which_is_served(admin_client):
    from django.contrib.staticfiles import finders
    from django.templatetags.static import static

    for url in ("/admin/", "/admin/curriculum/curriculum/", "/admin/curriculum-ops/orchestrator/"):
        page = admin_client.get(url).content.decode()
        assert f'<link rel="icon" type="image/svg+xml" href="{static("crl/favicon.svg")}">' in page, url
    icon = finders.find("crl/favicon.svg")
    assert icon and open(icon).read().startswith("<svg")
