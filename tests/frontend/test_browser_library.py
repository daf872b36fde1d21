"""The content library in a real browser: an editor finds approved copy, copies it to the clipboard with its
button, searches, opens a picture full size, and sees a picture whose file is gone said to be missing."""

from __future__ import annotations

import io

from PIL import Image

from atelier_platform.jobs.models import OutputFile
from tests.frontend.browsing import BROWSER_TESTS, shot, sign_in
from tests.frontend.library_rows import a_ranked_list, an_output, approved_by, with_image

pytestmark = BROWSER_TESTS


def png(colour: tuple[int, int, int], side: int) -> bytes:
    picture = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(picture, format="PNG")
    return picture.getvalue()


def test_browse_copy_search_and_see_pictures(live_server, browser, expect, project, member):
    editor, reviewer = member(project, "editor"), member(project, "reviewer")
    sale = approved_by(an_output(project, "Spring sale: 20% off every raincoat,\nthis week only.", state="pending",
                                 prompt="Write a two-line promo for raincoats"), reviewer)
    an_output(project, "Winter boots are back in stock.", state="released", prompt="Boots announcement")
    an_output(project, "Not approved yet", state="pending")
    sunset = with_image(an_output(project, content={"index": 0}, plugin="image", prompt="an orange sunset"),
                        data=png((240, 120, 40), 64))
    gone = with_image(an_output(project, content={"index": 0}, plugin="image", prompt="a lost picture"), thumbnail=False,
                      data=png((40, 120, 240), 64))
    lost = OutputFile.objects.get(output=gone)
    lost.file.storage.delete(lost.file.name)
    an_output(project, content=a_ranked_list(("sku-1", "Rain jacket", ["Stay dry in style.", "Rain? No problem."])),
              plugin="recommender_copy", prompt="likes hiking")

    page = sign_in(browser, live_server.url, editor.username)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.click(".mainnav a[data-nav=library]")
    expect(page).to_have_url(f"{live_server.url}/library/")
    expect(page.locator(".mainnav a.active")).to_have_text("Library")
    cards = page.locator("article.library-item")
    expect(cards).to_have_count(5)  # the pending one is not there
    expect(page.locator("#library")).not_to_contain_text("Not approved yet")

    text_card = page.locator(f"article[data-output='{sale.pk}']")
    expect(text_card.locator(".approval")).to_contain_text(f"Approved by {reviewer.username}")
    text_card.locator("button.copy").click()
    expect(text_card.locator("button.copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "Spring sale: 20% off every raincoat,\nthis week only."

    ranked = page.locator("article[data-kind=items]")
    ranked.locator("li.copy-variant").nth(1).locator("button.copy").click()
    expect(ranked.locator("li.copy-variant").nth(1).locator("button.copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "Rain? No problem."

    picture = page.locator(f"article[data-output='{sunset.pk}'] img")
    expect(picture).to_be_visible()
    assert picture.evaluate("img => img.naturalWidth") == 64
    missing = page.locator(f"article[data-output='{gone.pk}'] .missing-file")
    expect(missing).to_have_text("The file is missing from storage.")
    shot(page, "70-library")

    picture.click()
    expect(page.locator("dialog#lightbox")).to_be_visible()
    expect(page.locator("dialog#lightbox img")).to_have_attribute("src", f"{live_server.url}" + picture.evaluate(
        "img => img.closest('a').getAttribute('href')"))
    page.keyboard.press("Escape")
    expect(page.locator("dialog#lightbox")).to_be_hidden()

    page.fill("#library-filters input[name=q]", "RAINCOAT")
    page.press("#library-filters input[name=q]", "Enter")
    expect(cards).to_have_count(1)
    expect(cards.first).to_have_attribute("data-output", str(sale.pk))
    expect(page.locator("#export-csv")).to_have_attribute("href", "?q=RAINCOAT&export=csv")
    shot(page, "71-library-search")
    page.fill("#library-filters input[name=q]", "promo")  # the prompt is searched too
    page.press("#library-filters input[name=q]", "Enter")
    expect(cards).to_have_count(1)

    page.goto(f"{live_server.url}/library/?from=2026-12-09&to=2026-12-01")
    expect(page.locator("#library-errors")).to_contain_text("The end date is before the start date.")
    expect(page.locator("input[name=to]")).to_have_attribute("aria-invalid", "true")
