"""The web page over HTTP: sign-in redirects that resolve outside /ui, the memory footer of every page
that shows messages, the API's words for an unknown status, and which pages have a breadcrumb."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import pytest

from tests.component.test_ui_http import BEARER, COOKIE, FORM, HTML, TOKEN, World, fetch
from tests.component.test_ui_http import world as world  # the same world: one failed message, an API token
from tests.support.http import assert_problem

MEMORY_NOTE = b"Messages are kept in this gateway's memory (at most 10000 per subscription): a restart loses"


def footer(page: bytes) -> bytes:
    found = re.search(rb"<footer.*?</footer>", page, re.DOTALL)
    assert found, page
    return found.group(0)


@pytest.mark.parametrize(
    "elsewhere",
    [
        "/ui/../api/v1alpha1/openapi.json",
        "/ui/%2e%2e/healthz",
        "/ui/subscriptions/%2E%2E/../healthz",
        "/ui/..//example.org/",
    ],
)
async def test_sign_in_never_redirects_to_a_path_that_resolves_outside_the_ui(
    world: World, elsewhere: str
) -> None:
    posted = await fetch(
        "POST",
        f"{world.url}/ui/login",
        headers={**HTML, **FORM, "Origin": world.url},
        body=urlencode({"token": TOKEN, "next": elsewhere}).encode(),
    )
    assert posted.status == 303
    assert posted.headers["Location"] == "/ui/", elsewhere
    already = await fetch(
        "GET", f"{world.url}/ui/login?" + urlencode({"next": elsewhere}), headers=HTML | COOKIE
    )
    assert already.status == 303
    assert already.headers["Location"] == "/ui/", elsewhere
    form = await fetch("GET", f"{world.url}/ui/login?" + urlencode({"next": elsewhere}), headers=HTML)
    assert b'name="next" value="/ui/"' in form.body, elsewhere


async def test_sign_in_goes_to_the_resolved_page_of_the_ui(world: World) -> None:
    log_path = world.log_url.removeprefix(world.url)
    posted = await fetch(
        "POST",
        f"{world.url}/ui/login",
        headers={**HTML, **FORM, "Origin": world.url},
        body=urlencode({"token": TOKEN, "next": log_path + "/messages/%2e%2e?status=failed"}).encode(),
    )
    assert posted.status == 303
    assert posted.headers["Location"] == log_path + "/?status=failed"


async def test_every_page_that_shows_messages_says_they_are_kept_in_memory(world: World) -> None:
    pages = {
        "subscriptions": f"{world.url}/ui/",
        "message log": world.log_url,
        "message log, pending only": world.log_url + "?status=pending",
        "message": await world.message_url("failed-1"),
    }
    for what, url in pages.items():
        page = await fetch("GET", url, headers={**HTML, **COOKIE})
        assert page.status == 200, what
        assert b"All times are UTC." in footer(page.body), what
        assert MEMORY_NOTE in footer(page.body), what
    # Pages that show no messages do not.
    for url in (f"{world.url}/ui/login", f"{world.url}/ui/no/such/page"):
        page = await fetch("GET", url, headers=HTML)
        assert MEMORY_NOTE not in footer(page.body), url


async def test_an_unknown_status_is_refused_with_the_words_of_the_api(world: World) -> None:
    api = await fetch(
        "GET", f"{world.url}/api/v1alpha1/subscriptions/{world.namespace}/archive/messages?status=bogus",
        headers=BEARER,
    )  # fmt: skip
    detail = assert_problem(api, 400, "invalid-filter")["detail"]
    assert_problem(await fetch("GET", world.log_url + "?status=bogus", headers=BEARER), 400, "invalid-filter")
    assert (await fetch("GET", world.log_url + "?status=bogus", headers=BEARER)).json()["detail"] == detail
    page = await fetch("GET", world.log_url + "?status=bogus", headers={**HTML, **COOKIE})
    assert page.status == 400
    shown = re.search(rb'<p class="error-detail">(.*?)</p>', page.body, re.DOTALL)
    assert shown, page.body
    assert html.unescape(shown.group(1).decode()) == detail
    # A list of known statuses is the API's filter, not the page's: the page shows one at a time.
    several = await fetch("GET", world.log_url + "?status=pending,dropped", headers=BEARER)
    assert_problem(several, 400, "invalid-filter")


async def test_only_the_pages_of_a_subscription_have_a_breadcrumb(world: World) -> None:
    with_breadcrumb = (world.log_url, await world.message_url("failed-1"))
    for url in with_breadcrumb:
        page = await fetch("GET", url, headers={**HTML, **COOKIE})
        assert b'<nav aria-label="Breadcrumb"' in page.body, url
    for url, headers in (
        (f"{world.url}/ui/", {**HTML, **COOKIE}),
        (f"{world.url}/ui/login", HTML),
        (f"{world.url}/ui/no/such/page", HTML),
    ):
        page = await fetch("GET", url, headers=headers)
        assert b"<nav" not in page.body, url
        for landmark in (b"<header", b"<main", b"<footer", b'lang="en"', b"Skip to main content"):
            assert landmark in page.body, (url, landmark)
        assert page.body.count(b"<h1>") == 1, url
