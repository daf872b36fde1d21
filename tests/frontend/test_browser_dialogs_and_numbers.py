"""In a real browser: the review queue's dialogs keep the keyboard inside while open and give the focus back
when they close; the usage charts write numbers as the page's language does."""

from __future__ import annotations

from tests.frontend.browsing import BROWSER_TESTS, drag_out_to_the_corner, shot, sign_in, tab_goes_through

pytestmark = BROWSER_TESTS

INSIDE = "(id) => document.getElementById(id).contains(document.activeElement)"
FOCUSED = "() => document.activeElement.id || document.activeElement.dataset.reason || document.activeElement.tagName"


def test_the_review_dialogs_keep_the_focus_inside_and_give_it_back(live_server, browser, expect, project, member,
                                                                   submit, run_job):
    run_job(submit(project, text="a calm product description", user=member(project, "editor")))
    page = sign_in(browser, live_server.url, member(project, "reviewer").username)
    expect(page.locator("#review-item .output-content")).to_contain_text("noitpircsed tcudorp mlac a")
    opener = page.locator("#shortcut-legend button[data-key=r]")

    opener.click()
    expect(page.locator("#reject-picker")).to_be_visible()
    reasons = page.locator("#reject-picker button[data-reason]")
    expect(reasons.first).to_be_focused()
    for _ in range(reasons.count() + 3):  # round the reasons, the comment and Cancel, and past the end again
        page.keyboard.press("Tab")
        assert page.evaluate(INSIDE, "reject-picker"), page.evaluate(FOCUSED)
    expect(reasons.nth(1)).to_be_focused()  # the first, then the comment, Cancel, then round to the first and on
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#reject-cancel")).to_be_focused()  # backwards from the first: the last
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#reject-comment")).to_be_focused()
    shot(page, "50-review-reject-picker-focus")
    page.keyboard.press("Escape")
    expect(page.locator("#reject-picker")).to_be_hidden()
    expect(opener).to_be_focused()  # back where it was

    page.keyboard.press("g")
    expect(page.locator("#regenerate-note")).to_be_focused()
    # its button, its Cancel, then round to the note; Shift+Tab from the note to Cancel
    tab_goes_through(page, expect, *(page.locator(f"#regenerate-{name}") for name in ("send", "cancel", "note")))
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#regenerate-cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#regenerate-picker")).to_be_hidden()
    expect(opener).to_be_focused()
    # a click beside it closes it as Esc does; a selection in its note dragged out onto the shade does not
    page.keyboard.press("g")
    page.keyboard.type("keep this note")
    drag_out_to_the_corner(page, page.locator("#regenerate-note"))
    expect(page.locator("#regenerate-picker")).to_be_visible()
    page.mouse.click(5, 5)
    expect(page.locator("#regenerate-picker")).to_be_hidden()
    expect(opener).to_be_focused()

    page.keyboard.press("e")
    expect(page.locator("#edit-content")).to_be_focused()
    # its save button, its Cancel, the lease's Extend, then round to the text
    tab_goes_through(page, expect, *(page.locator(f"#edit-{name}") for name in ("save", "cancel", "extend", "content")))
    page.keyboard.press("Escape")
    expect(page.locator("#editor")).to_be_hidden()
    assert page.get_attribute("#reject-picker [role=dialog]", "aria-modal") == "true"


def test_the_usage_charts_write_numbers_as_the_pages_language_does(live_server, browser, expect, project, member,
                                                                   monkeypatch):
    from atelier_frontend import usage

    real = usage.summary

    def busy(project):
        figures = real(project)
        return {**figures, "tokens": [0] * 13 + [12345], "compute_seconds": [0.0] * 13 + [12345.6],
                "jobs_per_plugin": {"reverse_text": [0] * 13 + [1234]}}

    monkeypatch.setattr(usage, "summary", busy)
    page = sign_in(browser, live_server.url, member(project, "viewer").username)
    page.goto(f"{live_server.url}/usage/")
    charts = """() => Object.fromEntries(["tokens", "compute_seconds", "jobs_per_plugin"].map((series) => {
      const chart = document.querySelector(`[data-series=${series}]`);
      return [series, {scale: [...chart.querySelectorAll("svg text[text-anchor=end]")].map((t) => t.textContent),
                       tips: [...chart.querySelectorAll("svg title")].map((t) => t.textContent.split(": ").pop())}];
    }))"""
    expect(page.locator("[data-series=tokens] svg circle")).to_have_count(14)
    shown = page.evaluate(charts)
    assert shown["tokens"]["scale"] == ["0", "5K", "10K", "15K", "20K"] and shown["tokens"]["tips"][-1] == "12,345"
    assert shown["compute_seconds"]["tips"][-1] == "12,346 s"
    assert shown["compute_seconds"]["scale"] == ["0 s", "5K s", "10K s", "15K s", "20K s"]  # fits beside the chart
    assert shown["jobs_per_plugin"]["tips"] == ["1,234"]

    page.select_option("#language-switcher", "zh-hans")
    expect(page.locator("h1")).to_have_text("用量与质量")
    expect(page.locator("[data-series=tokens] svg circle")).to_have_count(14)
    shown = page.evaluate(charts)
    assert shown["tokens"]["scale"] == ["0", "5000", "1万", "1.5万", "2万"] and shown["tokens"]["tips"][-1] == "12,345"
    shot(page, "51-usage-numbers-zh-hans")
