"""A wide table on a phone scrolls inside its card: a shadow on each edge it can still scroll towards says there is
more that way (app.css), and none shows at an end it has reached, nor on a table that fits."""

from __future__ import annotations

import io

from PIL import Image, ImageStat

from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.frontend.browsing import BROWSER_TESTS, SHOTS, shot, sign_in

pytestmark = BROWSER_TESTS

PHONE = {"width": 360, "height": 780}
#: how dark an edge is with a cue (its shadow) and without one (the card's white), from 0 (white) to 1 (black)
CUE, NO_CUE = 0.08, 0.02


def edge_shades(page, table, scrolled: str) -> tuple[float, float]:
    """How dark ``table``'s left and right edges are once scrolled to its ``start``, ``middle`` or ``end``, with its
    cells hidden: what the cue alone paints there. The cells are shown again after."""
    table.scroll_into_view_if_needed()
    page.evaluate("""([t, where]) => {
      const room = t.scrollWidth - t.clientWidth;
      t.scrollLeft = where === 'start' ? 0 : where === 'end' ? room : Math.round(room / 2);
      t.querySelectorAll('th, td').forEach((cell) => cell.style.setProperty('opacity', '0'));
    }""", [table.element_handle(), scrolled])
    box = table.bounding_box()
    height = min(box["height"] - 4, PHONE["height"] - box["y"] - 4)
    shades = []
    for x in (box["x"] + 2, box["x"] + box["width"] - 8):  # 6 pixels just inside the table's border
        strip = Image.open(io.BytesIO(page.screenshot(clip={"x": x, "y": box["y"] + 2, "width": 6, "height": height})))
        shades.append(round(1 - ImageStat.Stat(strip.convert("L")).mean[0] / 255, 3))
    table.evaluate("(t) => t.querySelectorAll('th, td').forEach((cell) => cell.style.removeProperty('opacity'))")
    return shades[0], shades[1]


def cues(page, table) -> dict[str, tuple[bool, bool]]:
    """Where ``table`` shows a cue (left, right), at its start, middle and end; raises on an edge neither clearly
    shaded nor clearly white."""
    shown = {}
    for scrolled in ("start", "middle", "end"):
        left, right = edge_shades(page, table, scrolled)
        for shade in (left, right):
            assert shade >= CUE or shade <= NO_CUE, (scrolled, left, right)
        shown[scrolled] = (left >= CUE, right >= CUE)
    return shown


def test_a_wide_table_on_a_phone_shows_a_shadow_on_the_edges_it_can_scroll_towards(
        live_server, browser, expect, project, member, submit, run_job):
    owner = member(project, "owner")
    run_job(submit(project, text="Write launch copy for the spring campaign of the paper lamp", user=owner))
    endpoint = WebhookEndpoint.objects.create(project=project, url="https://shop.example.com/hooks/atelier", secret="s" * 32)
    WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id="e1", payload={},
                                   status="failed", attempts=5, max_attempts=5, last_status_code=502)
    everywhere = {"start": (False, True), "middle": (True, True), "end": (True, False)}
    nowhere = {"start": (False, False), "middle": (False, False), "end": (False, False)}

    page = sign_in(browser, live_server.url, owner.username, viewport=PHONE)
    page.goto(f"{live_server.url}/jobs/")
    jobs = page.locator("#jobs-table")
    assert jobs.evaluate("(t) => t.scrollWidth > t.clientWidth + 20")  # wider than the phone: it scrolls
    assert cues(page, jobs) == everywhere
    jobs.evaluate("(t) => { t.scrollLeft = 0; }")
    shot(page, "60-phone-jobs-scroll-cue")

    page.goto(f"{live_server.url}/settings/")
    for table in ("#members table.list", "#key table.list", "#webhooks table.list >> nth=-1"):  # the deliveries last
        assert cues(page, page.locator(table)) == everywhere, table
    page.locator("#webhooks").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "61-phone-settings-deliveries-scroll-cue.png"))

    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    assert cues(page, page.locator("#webhooks table.list >> nth=-1")) == everywhere
    page.locator("#webhooks").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "62-phone-settings-deliveries-scroll-cue-zh-hans.png"))
    page.goto(f"{live_server.url}/jobs/")
    jobs = page.locator("#jobs-table")  # its Chinese headings are shorter: it may fit, and then shows no cue
    fits = jobs.evaluate("(t) => t.scrollWidth <= t.clientWidth")
    assert cues(page, jobs) == (nowhere if fits else everywhere)
    shot(page, "63-phone-jobs-zh-hans")

    # a table that fits (on a wider phone) shows none; nor does any on a desktop, where tables do not scroll
    for viewport in ({"width": 780, "height": 844}, {"width": 1280, "height": 860}):
        page.set_viewport_size(viewport)
        page.goto(f"{live_server.url}/settings/")
        members = page.locator("#members table.list")
        assert members.evaluate("(t) => t.scrollWidth <= t.clientWidth")
        assert cues(page, members) == nowhere
