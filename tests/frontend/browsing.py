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


def sign_in(browser, base_url: str, username: str):
    page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
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
