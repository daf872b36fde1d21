"""The dashboard's layout in a real browser: at a phone's width, with long words and URLs, and in Chinese.

Each check reads the page's geometry, as a person would see it: nothing pushed past the screen's edge or
its card's, no label broken one character a line, no chart scale labelling every line the same.
"""

from __future__ import annotations

from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.frontend.browsing import BROWSER_TESTS, PASSWORD, shot, sign_in
from tests.frontend.library_rows import an_output
from tests.frontend.test_workers_page import a_worker

pytestmark = BROWSER_TESTS

#: a URL without a hyphen or a space in its 150 characters: nowhere a browser would break it by itself
UNBROKEN_URL = "https://shop.example.com/" + "spring" * 25 + "?campaign=launch"

SPILLS = """() => ({
  page: document.documentElement.scrollWidth - window.innerWidth,
  header: [...document.querySelectorAll('.topbar a, .topbar button, .topbar select')].filter((e) => e.offsetParent !== null)
    .filter((e) => { const r = e.getBoundingClientRect(); return r.left < 0 || r.right > window.innerWidth; })
    .map((e) => e.textContent.trim()),
  cards: [...document.querySelectorAll('.card')].filter((c) => c.scrollWidth > c.clientWidth + 1)
    .map((c) => `${c.className}: ${c.textContent.trim().slice(0, 40)}`),
})"""


def test_at_a_phones_width_no_page_scrolls_sideways_and_the_header_stays_on_screen(
        live_server, browser, expect, chat_project, member, submit, run_job):
    owner = member(chat_project, "owner")
    owner.username = "marguerite.delacroix-fontaine@example-enterprise.com"
    owner.save()
    job = submit(chat_project, text=f"Write launch copy for {UNBROKEN_URL}", user=owner)
    run_job(job)
    an_output(chat_project, f"Launch copy: {UNBROKEN_URL}", prompt=f"Write launch copy for {UNBROKEN_URL}")  # in the library
    endpoint = WebhookEndpoint.objects.create(project=chat_project, url=UNBROKEN_URL, secret="s" * 32)
    WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id="e1", payload={},
                                   status="failed", attempts=5, max_attempts=5, last_status_code=502)
    a_worker("gpu-host.internal.example.com:12345")

    page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", owner.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    for path in ("/create/reverse_text/", "/jobs/", f"/jobs/{job.pk}/", "/library/", "/chat/", "/review/", "/usage/",
                 "/settings/", "/workers/"):
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("main")).to_be_visible()
        assert page.evaluate(SPILLS) == {"page": 0, "header": [], "cards": []}, path
    expect(page.locator(".mainnav a")).to_have_count(8)  # every section the owner has, on screen
    shot(page, "40-phone-workers")


def test_short_labels_on_chinese_pages_stay_on_one_line(live_server, browser, expect, project, member, submit, run_job):
    """A status or a column heading squeezed by a long cell broke between every Chinese character (已/完/成)."""
    owner = member(project, "owner")
    run_job(submit(project, text=f"Write launch copy for {UNBROKEN_URL} " * 3, user=owner))
    endpoint = WebhookEndpoint.objects.create(project=project, url=UNBROKEN_URL, secret="s" * 32)
    WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id="e1", payload={},
                                   status="failed", attempts=5, max_attempts=5, last_status_code=502)
    a_worker("gpu-host.internal.example.com:12345")

    page = sign_in(browser, live_server.url, owner.username)
    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("h1")).to_have_text("创建")
    broken = """() => [...document.querySelectorAll('.status, .review, table.list th')].filter((e) => e.textContent.trim())
      .filter((e) => { const r = document.createRange(); r.selectNodeContents(e);
                       return new Set([...r.getClientRects()].map((x) => Math.round(x.bottom))).size > 1; })
      .map((e) => e.textContent.trim())"""
    for path in ("/jobs/", "/settings/", "/workers/"):
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("table.list th").first).to_be_visible()
        assert page.evaluate(broken) == [], path
    shot(page, "41-workers-zh-hans")


def test_every_line_of_a_charts_scale_has_its_own_label(live_server, browser, expect, project, member):
    """With nothing measured yet, or only fractions of a second, the seconds charts read "0.0 s" on every line."""
    page = sign_in(browser, live_server.url, member(project, "viewer").username)
    page.goto(f"{live_server.url}/usage/")
    expect(page.locator("[data-series=compute_seconds] svg")).to_be_visible()
    scales = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[data-chart]')].map((chart) =>
      [chart.dataset.series, [...chart.querySelectorAll("svg text[text-anchor=end]")].map((t) => t.textContent)]))""")
    assert scales["compute_seconds"] == ["0.0 s", "0.5 s", "1.0 s", "1.5 s", "2.0 s"]
    assert {series: len(set(labels)) for series, labels in scales.items()} == {series: 5 for series in scales}
