"""Nothing consequential happens by accident, in a real browser: revoking an API key, removing a member,
deleting a project template or replacing the blocklist asks first (app.js, ``data-confirm``), in the page's
language, and a dismissed question leaves everything as it was; moving through a select's options with the
keyboard commits nothing (Chromium fires ``change`` on each arrow key of a closed select): a member's role
waits for its Save button, the language and project switchers for Enter or their Switch button."""

from __future__ import annotations

from atelier_frontend.models import PromptTemplate
from atelier_platform.accounts.models import Membership
from atelier_platform.accounts.roles import Role
from atelier_platform.accounts.services import issue_api_key
from atelier_platform.moderation.models import BlocklistEntry
from tests.factories import MembershipFactory, ProjectFactory
from tests.frontend.browsing import BROWSER_TESTS, shot, sign_in

pytestmark = BROWSER_TESTS


def answering(page, accept: bool) -> list[str]:
    """The questions ``page`` asks from now on, each answered with ``accept``."""
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.on("dialog", answer)
    return asked


def posts_of(page) -> list[str]:
    """The URLs ``page`` posts to from now on."""
    sent = []
    page.on("request", lambda request: sent.append(request.url) if request.method == "POST" else None)
    return sent


def test_destructive_actions_ask_first_and_a_dismissed_question_changes_nothing(
        live_server, browser, expect, project, member):
    owner = member(project, Role.OWNER)
    colleague = member(project, Role.EDITOR)
    key = issue_api_key(project, name="shop", created_by=owner).api_key
    PromptTemplate.objects.create(project=project, plugin_id="reverse_text", name="Spring sale",
                                  input={"text": "Spring sale"}, created_by=colleague)
    BlocklistEntry.objects.create(project=project, pattern="keepme", category="custom")
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/")
    revoke = page.locator("#key form:has(input[value=revoke_key]) button")
    remove = page.locator(f"tr[data-member='{colleague.username}'] form:has(input[value=remove_member]) button")

    asked = answering(page, accept=False)
    sent = posts_of(page)
    revoke.click()
    remove.click()
    page.check("#blocklist input[name=replace]")
    page.fill("#terms", "other")
    page.click("#blocklist button:has-text('Import')")
    page.wait_for_timeout(300)
    assert asked == [f"Revoke the key atl_{key.prefix}_…? Requests that use it are refused at once; this cannot be undone.",
                     f"Remove {colleague.username} from the project? They lose access at once.",
                     "Replace the whole blocklist with these terms? The terms not in the list are deleted."]
    assert sent == []
    key.refresh_from_db()
    assert key.revoked_at is None
    assert Membership.objects.filter(project=project, user=colleague).exists()
    assert list(BlocklistEntry.objects.filter(project=project).values_list("pattern", flat=True)) == ["keepme"]

    page.goto(f"{live_server.url}/create/reverse_text/")
    page.click("button[name=delete_template]")
    page.wait_for_timeout(300)
    assert asked[-1] == "Delete the template “Spring sale” for everyone in the project?"
    assert PromptTemplate.objects.filter(project=project).exists() and sent == []
    page.context.close()

    # accepted, each is done as before
    page2 = sign_in(browser, live_server.url, owner.username)
    agreed = answering(page2, accept=True)
    page2.goto(f"{live_server.url}/create/reverse_text/")
    page2.click("button[name=delete_template]")
    expect(page2.locator("button[name=delete_template]")).to_have_count(0)
    assert not PromptTemplate.objects.filter(project=project).exists()
    page2.goto(f"{live_server.url}/settings/")
    page2.locator("#key form:has(input[value=revoke_key]) button").click()
    expect(page2.locator("#key tr.revoked")).to_have_count(1)
    key.refresh_from_db()
    assert key.revoked_at is not None
    page2.locator(f"tr[data-member='{colleague.username}'] form:has(input[value=remove_member]) button").click()
    expect(page2.locator(f"tr[data-member='{colleague.username}']")).to_have_count(0)
    assert not Membership.objects.filter(project=project, user=colleague).exists()
    assert len(agreed) == 3
    # a plain import (nothing replaced) asks nothing
    page2.fill("#terms", "another")
    page2.click("#blocklist button:has-text('Import')")
    expect(page2.locator("#terms")).to_be_visible()
    assert len(agreed) == 3 and BlocklistEntry.objects.filter(project=project, pattern="another").exists()


def test_switching_to_release_after_screening_asks_first(live_server, browser, expect, project, member):
    """Release after screening hands outputs out before anyone looks at them: one slip of a select did it unasked."""
    from atelier_platform.moderation.models import ReviewMode
    from atelier_platform.moderation.screening import policy_for

    page = sign_in(browser, live_server.url, member(project, Role.OWNER).username)
    page.goto(f"{live_server.url}/settings/")
    asked = answering(page, accept=False)
    page.select_option("#review_mode", ReviewMode.RELEASE_AFTER_SCREENING)
    page.click("#policy button.primary")
    page.wait_for_timeout(300)
    assert asked == ["Release outputs that pass automated screening at once, before anyone reviews them? Reviewers "
                     "then see a sample and whatever screening flags, after the fact."]
    assert policy_for(project, fresh=True).review_mode == ReviewMode.REVIEW_BEFORE_RELEASE
    page.context.close()

    page = sign_in(browser, live_server.url, member(project, Role.OWNER).username)
    page.goto(f"{live_server.url}/settings/")
    agreed = answering(page, accept=True)
    page.select_option("#review_mode", ReviewMode.RELEASE_AFTER_SCREENING)
    page.click("#policy button.primary")
    expect(page.locator("#review_mode")).to_have_value(ReviewMode.RELEASE_AFTER_SCREENING)
    assert policy_for(project, fresh=True).review_mode == ReviewMode.RELEASE_AFTER_SCREENING and len(agreed) == 1
    # saved again in that mode (a threshold changed), or switched back to review first: nothing to ask
    page.click("#policy button.primary")
    page.select_option("#review_mode", ReviewMode.REVIEW_BEFORE_RELEASE)
    page.click("#policy button.primary")
    expect(page.locator("#review_mode")).to_have_value(ReviewMode.REVIEW_BEFORE_RELEASE)
    assert policy_for(project, fresh=True).review_mode == ReviewMode.REVIEW_BEFORE_RELEASE and len(agreed) == 1


def test_the_questions_and_buttons_are_in_chinese_on_a_chinese_page(live_server, browser, expect, project, member):
    owner = member(project, Role.OWNER)
    colleague = member(project, Role.VIEWER)
    key = issue_api_key(project, name="shop", created_by=owner).api_key
    PromptTemplate.objects.create(project=project, plugin_id="reverse_text", name="春季促销", input={"text": "x"})
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/")
    page.select_option("#language-switcher", "zh-hans")  # a choice in the list (the mouse's): switches at once
    expect(page.locator("h1")).to_contain_text("项目设置")
    expect(page.locator(f"tr[data-member='{colleague.username}'] button.save-role")).to_have_text("保存")
    expect(page.locator(f"tr[data-member='{colleague.username}'] select[name=role]")).to_have_accessible_name(
        f"{colleague.username} 的角色")
    asked = answering(page, accept=False)
    page.locator("#key form:has(input[value=revoke_key]) button").click()
    page.locator(f"tr[data-member='{colleague.username}'] form:has(input[value=remove_member]) button").click()
    page.goto(f"{live_server.url}/create/reverse_text/")
    page.click("button[name=delete_template]")
    page.wait_for_timeout(300)
    assert asked == [f"吊销密钥 atl_{key.prefix}_…？使用它的请求将立即被拒绝，且无法撤销。",
                     f"将 {colleague.username} 移出项目？其访问权限将立即失效。",
                     "为项目中的所有人删除模板“春季促销”？"]
    key.refresh_from_db()
    assert key.revoked_at is None and Membership.objects.filter(user=colleague).exists()
    assert PromptTemplate.objects.exists()
    # the language switcher's button, shown once the keyboard has moved to another language
    page.focus("#language-switcher")
    page.keyboard.press("ArrowUp")
    expect(page.locator("#language-switcher + button.commit, .language button.commit")).to_have_text("切换")


def test_arrow_keys_on_a_members_role_change_nothing_until_save(live_server, browser, expect, project, member):
    owner = member(project, Role.OWNER)
    colleague = member(project, Role.EDITOR)
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/")
    row = page.locator(f"tr[data-member='{colleague.username}']")
    sent = posts_of(page)
    row.locator("select[name=role]").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(500)
    assert sent == []
    assert Membership.objects.get(project=project, user=colleague).role == Role.EDITOR
    chosen = row.locator("select[name=role]").input_value()
    assert chosen != Role.EDITOR
    expect(row.locator("button.save-role")).to_have_accessible_name(f"Save the role of {colleague.username}")
    row.locator("button.save-role").click()
    expect(page.locator(f"tr[data-member='{colleague.username}'] select[name=role]")).to_have_value(chosen)
    assert Membership.objects.get(project=project, user=colleague).role == chosen


def test_arrow_keys_on_the_language_and_project_switchers_do_not_leave_the_page(
        live_server, browser, expect, project, member):
    owner = member(project, Role.OWNER)
    second = ProjectFactory(slug=f"zz-{project.slug}", name="Second project")
    MembershipFactory(project=second, user=owner, role=Role.OWNER)
    page = sign_in(browser, live_server.url, owner.username)
    page.goto(f"{live_server.url}/settings/")
    switch = page.locator(".language button.commit")
    expect(switch).to_be_hidden()  # with scripts on, shown only for a choice not yet sent
    sent = posts_of(page)
    page.focus("#language-switcher")
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(500)
    assert sent == []
    expect(page.locator("h1")).to_contain_text("Project settings")
    expect(switch).to_be_visible()
    expect(switch).to_have_text("Switch")
    page.keyboard.press("Enter")  # the deliberate act
    expect(page.locator("h1")).to_contain_text("项目设置")
    expect(page.locator("#language-switcher")).to_have_value("zh-hans")

    sent.clear()
    page.focus("#project-switcher")
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(500)
    assert sent == []
    expect(page.locator("#project-switcher option[selected]")).not_to_have_text("Second project")
    page.click(".switcher button.commit")
    expect(page.locator("#project-switcher option[selected]")).to_have_text("Second project")


def test_screenshots_of_the_settings_controls(live_server, browser, expect, project, member):
    owner = member(project, Role.OWNER)
    member(project, Role.EDITOR)
    member(project, Role.VIEWER)
    issue_api_key(project, name="shop", created_by=owner)
    for width, height, name in ((1280, 860, "desktop"), (390, 844, "phone")):
        page = sign_in(browser, live_server.url, owner.username)
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{live_server.url}/settings/")
        page.focus("#language-switcher")
        page.keyboard.press("ArrowDown")  # the Switch button shows
        expect(page.locator(".language button.commit")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        shot(page, f"settings-deliberate-acts-{name}")
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_contain_text("项目设置")
        shot(page, f"settings-deliberate-acts-{name}-zh")
        page.context.close()
