"""What the browser tests (``test_browser*.py``) share: Debian's chromium, how they sign in and take
screenshots, and their marks; the ``browser`` and ``expect`` fixtures are in conftest.py."""

from __future__ import annotations

import os

import pytest

from atelier_platform.config import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's
SHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

if not os.path.exists(CHROMIUM) and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the browser tests: install Debian's chromium ({CHROMIUM}); .ci/run does it")

#: The marks of every browser test module.
BROWSER_TESTS = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason="Debian's chromium is not installed here (apt-get install chromium); CI's .ci/run installs it"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("orm_beside_playwright"),
]


def sign_in(browser, base_url: str, username: str, **context):
    """A page of a new context signed in as ``username``; ``context``: more of new_context's options (user_agent...)."""
    page = browser.new_context(**{"viewport": {"width": 1280, "height": 860}, **context}).new_page()
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def drag_out_to_the_corner(page, locator) -> None:
    """Press inside ``locator`` and let go at the page's top-left corner, on a dialog's shade: what a reviewer
    does who selects text and ends the drag beyond the dialog (the click goes to what holds both ends)."""
    box = locator.bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 10)
    page.mouse.down()
    page.mouse.move(5, 5, steps=4)
    page.mouse.up()


def tab_goes_through(page, expect, *locators) -> None:
    """Each Tab press moves the focus to the next of ``locators`` (page locators), in order."""
    for locator in locators:
        page.keyboard.press("Tab")
        expect(locator).to_be_focused()


# --- the review queue's ---------------------------------------------------------------------------

#: The review screen once it shows an item.
SHOWN = "#review-item[data-item]:not([data-item=''])"


def shown_item(page, expect) -> str:
    """The id of the review item the page shows, once it shows one."""
    expect(page.locator(SHOWN)).to_be_visible()
    return page.locator("#review-item").get_attribute("data-item")


def given_back(page, item_id) -> bool:
    """Whether the review item ``item_id`` is held by nobody, once ``page`` has had a few seconds to see it given back
    (a page that is left gives its item back as it goes, in a request of its own)."""
    from atelier_platform.moderation.models import ReviewItem

    for _ in range(100):
        if not ReviewItem.objects.get(pk=item_id).lease_holder:
            return True
        page.wait_for_timeout(50)
    return False


def decisions_sent(page) -> list[str]:
    """The review decisions ``page`` sends from now on (their URLs), filled in as it sends them."""
    sent = []
    page.on("request", lambda request: sent.append(request.url) if request.url.endswith("/decision/") else None)
    return sent


def chinese_review_queue_on_a_tablet(live_server, browser, expect, reviewer):
    """The review queue in Chinese on a touch screen, ``reviewer`` signed in."""
    page = browser.new_context(viewport={"width": 820, "height": 1180}, has_touch=True).new_page()
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", reviewer.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    page.goto(f"{live_server.url}/review/")
    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("h1")).to_have_text("审核队列")
    return page


# User agents of Chrome on three platforms (Playwright's ``user_agent``; Chromium's navigator.userAgentData follows it).
CHROME = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
MAC = f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {CHROME}"
LINUX = f"Mozilla/5.0 (X11; Linux x86_64) {CHROME}"
WINDOWS = f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {CHROME}"
