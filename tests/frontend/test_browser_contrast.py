"""Buttons that read as links, measured in a real browser: the delivery log's "Send again" was the top bar's pale
grey (#c5cad6) on a white card, 1.6:1, and white on hover; WCAG AA asks 4.5:1 of text this size."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from atelier_platform.accounts.roles import Role
from atelier_platform.accounts.services import issue_api_key
from atelier_platform.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.frontend.browsing import BROWSER_TESTS, SHOTS, sign_in

pytestmark = BROWSER_TESTS

#: The contrast ratio (WCAG 2) of an element's text against the first background behind it that is not transparent
#: (a translucent one laid over white), as the page shows it now (hovered or not).
CONTRAST = """(el) => {
  const parse = (c) => { const p = c.match(/rgba?\\(([^)]+)\\)/)[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
                         return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  let bg = {r: 255, g: 255, b: 255, a: 1};
  for (let node = el; node; node = node.parentElement) {
    const c = parse(getComputedStyle(node).backgroundColor);
    if (c.a > 0) { bg = {r: c.r * c.a + 255 * (1 - c.a), g: c.g * c.a + 255 * (1 - c.a), b: c.b * c.a + 255 * (1 - c.a)}; break; }
  }
  const lum = ({r, g, b}) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const [light, dark] = [lum(parse(getComputedStyle(el).color)), lum(bg)].sort((x, y) => y - x);
  return (light + 0.05) / (dark + 0.05);
}"""


def test_link_buttons_on_the_settings_page_are_readable_at_rest_and_hovered(live_server, browser, expect, project, member):
    owner = member(project, Role.OWNER)
    issue_api_key(project, name="shop", created_by=owner)  # its Revoke: a red link button
    endpoint = WebhookEndpoint.objects.create(project=project, url="https://hooks.example.com/atelier", secret="s" * 32,
                                              event_types=["job.succeeded"])
    for number, status in enumerate(["succeeded", "failed"]):
        delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="job.succeeded", event_id=f"e-{number}",
                                                  payload={}, status=status, attempts=1, max_attempts=3)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(minutes=number))

    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/#deliveries")
    again = page.locator("button.retry-delivery")
    expect(again).to_have_count(2)
    low = []
    buttons = page.locator("button.link")
    for index in range(buttons.count()):
        button = buttons.nth(index)
        if not button.is_visible():
            continue  # inside a closed <details>
        button.scroll_into_view_if_needed()
        page.mouse.move(0, 0)
        at_rest = button.evaluate(CONTRAST)
        button.hover()
        hovered = button.evaluate(CONTRAST)
        if min(at_rest, hovered) < 4.5:
            low.append(f"{button.get_attribute('class')} {button.inner_text()!r}: {at_rest:.2f} / hovered {hovered:.2f}")
    assert low == []
    assert buttons.count() >= 4  # the two "Send again", a Revoke, Log out (in the dark top bar) at least
    page.mouse.move(0, 0)
    page.locator("#webhooks").screenshot(path=str(SHOTS / "settings-delivery-log-send-again.png"))
    page.context.close()
