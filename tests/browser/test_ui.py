"""The web page in a real browser: sign in, see a delivered and a failed message, resend, see the attempt.

Also: a page without signing in goes to the sign-in form; keyboard only reaches and presses Resend, with
a visible focus ring on the way.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Locator, Page, expect

from openconnector.messages.model import MessageStatus
from tests.browser.conftest import (
    DELIVERED_ID,
    FAILED_ID,
    SCREENSHOTS_ENV,
    SUBSCRIPTION,
    TOKEN,
    UiWorld,
    sign_in,
)
from tests.support.polling import eventually


async def screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot: into the test's directory, and into $OPENCONNECTOR_UI_SCREENSHOTS when set
    (how docs/img/ui-*.png are made: see docs/ui.md)."""
    target = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path) / name
    await page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 0
    return target


ACCESSIBILITY_PROBLEMS = """() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  if (!document.querySelector("main")) problems.push("no main landmark");
  for (const control of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!control.labels || control.labels.length === 0) problems.push(`unlabelled ${control.name}`);
  }
  for (const button of document.querySelectorAll("button")) {
    if (!button.textContent.trim()) problems.push("a button without text");
  }
  for (const table of document.querySelectorAll("table")) {
    if (!table.caption || !table.caption.textContent.trim()) problems.push("a table without caption");
    if (table.querySelectorAll("thead th[scope=col]").length !== table.querySelectorAll("thead th").length)
      problems.push("a column header without scope");
  }
  return problems;
}"""


async def assert_accessible_basics(page: Page) -> None:
    """Landmarks, one h1, a label for every control, captions and scoped headers on every table."""
    assert await page.evaluate(ACCESSIBILITY_PROBLEMS) == [], page.url


def row_of(page: Page, text: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=text))


async def test_resend_a_failed_message_and_see_the_new_attempt(
    page: Page, world: UiWorld, tmp_path: Path
) -> None:
    await sign_in(page, world)

    # The subscriptions: the one subscription with its health and counters.
    subscription = row_of(page, f"{world.namespace}/{SUBSCRIPTION}")
    await expect(subscription).to_have_count(1)
    await expect(subscription.get_by_role("cell").nth(0)).to_have_text("Ready")
    await assert_accessible_basics(page)
    await screenshot(page, tmp_path, "ui-subscriptions.png")

    # The message log: one delivered, one failed (dropped: no retries, no dead-letter sink).
    await page.get_by_role("link", name=f"{world.namespace}/{SUBSCRIPTION}").click()
    await page.get_by_role("heading", name=f"Messages of {world.namespace}/{SUBSCRIPTION}").wait_for()
    await expect(row_of(page, DELIVERED_ID)).to_contain_text("delivered")
    await expect(row_of(page, FAILED_ID)).to_contain_text("dropped")
    await assert_accessible_basics(page)
    await screenshot(page, tmp_path, "ui-messages.png")

    # The status filter shows only the failed one.
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Show").click()
    await expect(row_of(page, FAILED_ID)).to_have_count(1)
    await expect(row_of(page, DELIVERED_ID)).to_have_count(0)
    assert "status=failed" in page.url

    # The failed message: one attempt, answered 500.
    await page.get_by_role("link", name=FAILED_ID).click()
    await page.get_by_role("heading", name=f"Message {FAILED_ID}").wait_for()
    attempts = page.get_by_role("table").filter(has=page.get_by_text("oldest first")).locator("tbody tr")
    await expect(attempts).to_have_count(1)
    await expect(attempts.nth(0)).to_contain_text("500")

    # Resend: the page says it is queued; the new attempt (200) appears on the message.
    await page.get_by_role("button", name="Resend").click()
    await expect(page.get_by_role("status")).to_contain_text("Resend queued")
    await eventually(
        lambda: world.message(FAILED_ID), until=lambda record: record.status is MessageStatus.DELIVERED
    )
    await page.reload()
    await expect(attempts).to_have_count(2)
    await expect(attempts.nth(1)).to_contain_text("200")
    await expect(page.locator(".facts")).to_contain_text("delivered")
    await assert_accessible_basics(page)
    await screenshot(page, tmp_path, "ui-message.png")
    assert len(world.sink.requests) == 3


async def test_a_page_without_signing_in_goes_to_the_sign_in_form(page: Page, world: UiWorld) -> None:
    await page.goto(world.log_url)
    await page.get_by_role("heading", name="Sign in", level=1).wait_for()
    assert page.url.startswith(f"{world.url}/ui/login?next=")
    await assert_accessible_basics(page)

    # A wrong token is refused on the form itself, announced, and the field is marked invalid.
    await page.get_by_label("API token").fill("not-the-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token was not accepted.")
    await expect(page.get_by_label("API token")).to_have_attribute("aria-invalid", "true")

    # The right one leads back to the page first asked for.
    await page.get_by_label("API token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name=f"Messages of {world.namespace}/{SUBSCRIPTION}").wait_for()
    assert page.url == world.log_url

    # The cookie is for the page only: HttpOnly, SameSite=Strict, path /ui.
    cookies = await page.context.cookies(f"{world.url}/ui/")
    (cookie,) = (c for c in cookies if c["name"] == "openconnector-ui")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"

    # Signing out forgets it: the next page goes to the sign-in form again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto(world.log_url)
    await page.get_by_role("heading", name="Sign in", level=1).wait_for()


async def focused(page: Page) -> str:
    """What has the keyboard focus: tag, then its accessible text."""
    return str(
        await page.evaluate(
            "() => { const e = document.activeElement;"
            " return e ? `${e.tagName} ${(e.innerText || e.value || e.id || '').trim()}` : ''; }"
        )
    )


async def tab_to(page: Page, target: str) -> None:
    """Press Tab until ``target`` has the focus (bounded), and check the focus ring shows."""
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await focused(page) == target:
            break
    else:
        raise AssertionError(f"{target} is not reachable with Tab (last: {await focused(page)})")
    # The focus is visible: the stylesheet's :focus-visible ring, a solid 3 px outline.
    outline = await page.evaluate(
        "() => { const style = getComputedStyle(document.activeElement);"
        " return [style.outlineStyle, style.outlineWidth]; }"
    )
    assert outline == ["solid", "3px"], outline


async def test_keyboard_only_reaches_resend_with_a_visible_focus(page: Page, world: UiWorld) -> None:
    # Sign in by keyboard: Tab to the token field, type, Enter submits.
    await page.goto(f"{world.url}/ui/")
    await tab_to(page, "INPUT token")
    await page.keyboard.type(TOKEN)
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Subscriptions", level=1).wait_for()

    # Tab to the subscription, Enter; Tab to the failed message, Enter; Tab to Resend, Enter.
    for target in (f"A {world.namespace}/{SUBSCRIPTION}", f"A {FAILED_ID}", "BUTTON Resend"):
        await tab_to(page, target)
        async with page.expect_navigation():  # Enter follows the link (or submits): a new page loads
            await page.keyboard.press("Enter")

    await expect(page.get_by_role("status")).to_contain_text("Resend queued")
    await eventually(
        lambda: world.message(FAILED_ID), until=lambda record: record.status is MessageStatus.DELIVERED
    )
