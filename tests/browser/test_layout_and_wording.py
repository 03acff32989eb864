"""Issue #25 item 11 in a real browser (Debian's Chromium): the layout and wording operators pointed out."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1366, 1920])
def test_the_export_panel_sits_below_the_curriculum_form_in_the_page(logged_in, make_curriculum, screenshot, width):
    page, url = logged_in
    curriculum = make_curriculum("algebra", concepts=5)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{url}/admin/curriculum/curriculum/{curriculum.pk}/change/")
    form = page.locator("#curriculum_form").bounding_box()
    panel = page.locator("#export-reviews").bounding_box()
    content = page.locator("#content").bounding_box()
    screenshot(f"curriculum-change-{width}")
    assert panel["y"] >= form["y"] + form["height"] - 1  # below the change form, not beside it
    assert content["x"] - 1 <= panel["x"] and panel["x"] + panel["width"] <= width + 1  # inside the page
    assert abs(panel["x"] - form["x"]) < 2  # aligned with the form, not pushed to the right
