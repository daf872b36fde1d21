"""An export in the background in a real browser: an editor asks for one from the library, watches it queued, and,
once a worker wrote it, the list shows its download link by itself (it polls while one goes, and stops once none
does); the file downloaded is the streaming export's."""

from __future__ import annotations

from atelier_platform.exports import services
from atelier_platform.exports.models import Export
from tests.frontend.browsing import BROWSER_TESTS, shot, sign_in
from tests.frontend.library_rows import an_output

pytestmark = BROWSER_TESTS


def test_ask_watch_and_download(live_server, browser, expect, project, member):
    editor = member(project, "editor")
    an_output(project, "Spring sale: 20% off every raincoat.", state="released")
    an_output(project, "=HYPERLINK(\"http://example.com\")", state="released")
    page = sign_in(browser, live_server.url, editor.username, accept_downloads=True)
    page.goto(f"{live_server.url}/library/")
    page.locator("#library-background-export button[value=csv]").click()
    expect(page).to_have_url(f"{live_server.url}/library/#exports")
    export = Export.objects.get()
    row = page.locator(f"#exports li[data-export='{export.pk}']")
    expect(row).to_contain_text("Queued")

    assert services.run_export(export.pk) == "succeeded"  # a worker of the platform queue, meanwhile
    link = row.locator("a.export-download")
    expect(link).to_be_visible(timeout=10_000)  # the list asked for itself again
    expect(row).to_contain_text("2 rows")
    shot(page, "130-library-background-export")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"library-{project.slug}.csv"
    streamed = page.request.get(f"{live_server.url}/library/?export=csv")
    assert open(download.value.path(), "rb").read() == streamed.body()
    assert b"'=HYPERLINK" in streamed.body()  # the formula guard, in both
