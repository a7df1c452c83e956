"""The web page's HTTP adapter: thin aiohttp handlers over the message service and the authorizer.

Every page authenticates the same way as the API (:mod:`openconnector.messages.access`): the bearer
token comes from the sign-in cookie (or an ``Authorization`` header). A subscription's pages need the
``get`` verb on it, resend and replay ``update``. A refusal is an HTML page for a browser (a sign-in
redirect for 401) and ``application/problem+json`` for every other client.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import importlib.resources
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from openconnector.gateway.intake import continue_at_body_read, read_limited
from openconnector.gateway.problems import refusal_problem
from openconnector.gateway.routes import problem_routes
from openconnector.messages.access import Authorizer, Principal, Verb
from openconnector.messages.model import SubscriptionSummary
from openconnector.messages.service import AUTHORIZER_KEY, MESSAGES_KEY, MessageService, parse_statuses
from openconnector.refusal import Refusal
from openconnector.ui import forms
from openconnector.ui.render import message_url, render, subscription_url

__all__ = ["FORM_TOKENS_KEY", "add_ui_routes"]

log = logging.getLogger(__name__)

FORM_TOKENS_KEY = web.AppKey("ui-form-tokens", forms.FormTokens)
PAGE_SIZE = 50
_CONCURRENT_REVIEWS = 8

#: Personal data: never cached, never framed, no script or style from anywhere but this page.
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # URLs name subscriptions and events: never sent elsewhere
    "X-Frame-Options": "DENY",
}
_NOTICES = {
    "resent": "Resend queued: the new attempt appears below once it is made (reload the page).",
    "signed-out": "You are signed out.",
}
_STYLESHEET = importlib.resources.files("openconnector.ui").joinpath("static/ui.css").read_bytes()

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------------------- the visitor


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who is looking at the page: the principal, the headers that authenticated it, the form token."""

    principal: Principal
    headers: Mapping[str, str]
    form_token: str
    open_mode: bool


def _credential(request: web.Request) -> tuple[dict[str, str], str]:
    """The Authorization header to authenticate with, and the session credential forms are bound to."""
    header = request.headers.get("Authorization")
    if header:
        return {"Authorization": header}, header
    token = request.cookies.get(forms.COOKIE_NAME, "")
    return ({"Authorization": f"Bearer {token}"} if token else {}), token


async def _visitor(request: web.Request) -> Visitor:
    """The signed-in visitor, or Refusal 401."""
    headers, credential = _credential(request)
    principal = await request.app[AUTHORIZER_KEY].authenticate(headers, peer=request.remote)
    return _as_visitor(request, principal, headers, credential)


async def _authorize(request: web.Request, verb: Verb, namespace: str, name: str) -> Visitor:
    """The visitor when it may ``verb`` the subscription; else Refusal 401, 404 or 403 (as the API)."""
    headers, credential = _credential(request)
    authorizer = request.app[AUTHORIZER_KEY]
    principal = await authorizer.authorize(headers, verb, namespace, name, peer=request.remote)
    return _as_visitor(request, principal, headers, credential)


def _as_visitor(
    request: web.Request, principal: Principal, headers: Mapping[str, str], credential: str
) -> Visitor:
    tokens = request.app[FORM_TOKENS_KEY]
    return Visitor(principal, headers, tokens.issue(credential), open_mode=not credential)


def _service(request: web.Request) -> MessageService:
    return request.app[MESSAGES_KEY]


# ------------------------------------------------------------------------------------- responses


def _html(template: str, *, status: int = 200, **context: Any) -> web.Response:
    body = render(template, **context)
    return web.Response(
        status=status, text=body, content_type="text/html", charset="utf-8", headers=_SECURITY_HEADERS
    )


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **_SECURITY_HEADERS})


def _sign_in_url(next_path: str) -> str:
    return "/ui/login?" + urlencode({"next": next_path})


def _refused(request: web.Request, refusal: Refusal) -> web.Response:
    """A refusal as the client wants it: an HTML page (or sign-in) for browsers, else problem+json."""
    if not forms.wants_html(request.headers.get("Accept")):
        return refusal_problem(refusal)
    if refusal.status == 401:
        target = request.path_qs if request.method == "GET" else _page_of_action(request.path)
        response = _see_other(_sign_in_url(target))
        if request.cookies.get(forms.COOKIE_NAME):
            _forget_cookie(response, request)  # it no longer signs anyone in
        return response
    headers = {k: v for k, v in (refusal.headers or {}).items() if k.lower() == "retry-after"}
    response = _html(
        "error.html",
        status=refusal.status,
        title=_ERROR_TITLES.get(refusal.status, "Something went wrong"),
        detail=refusal.detail,
        status_code=refusal.status,
        visitor=None,
        notice=None,
    )
    response.headers.update(headers)
    return response


_ERROR_TITLES = {
    400: "That request could not be used",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible for this subscription",
    413: "Too large",
    503: "Not available right now",
}


def _page_of_action(path: str) -> str:
    """The page a POST form was on (``…/messages/<id>/resend`` → ``…/messages/<id>``)."""
    for suffix in ("/resend", "/replay"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return "/ui/"


def page(handler: Page) -> Page:
    """Refusals raised by a page become HTML or problem+json (see :func:`_refused`)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refusal as refusal:
            return _refused(request, refusal)

    return wrapped


# ------------------------------------------------------------------------------------------ forms


async def _read_form(request: web.Request) -> bytes:
    try:
        return await read_limited(request, forms.MAX_FORM_BYTES)
    except Refusal as refusal:
        if refusal.status != 413:
            raise
        detail = f"a form of this page is at most {forms.MAX_FORM_BYTES} bytes"
        raise Refusal(413, "form-too-large", detail) from None


def _same_origin(request: web.Request) -> bool:
    """Browsers say where a POST comes from; one from another site is refused outright (the form token is
    the real protection, this only makes the refusal early and clear). ``Sec-Fetch-Site`` when the
    browser sends it, else ``Origin``; a client that sends neither (not a browser) passes."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


async def _checked_form(request: web.Request) -> tuple[bytes, dict[str, str]]:
    """The fields of a POST form of this page: same origin and the visitor's own form token, else 403."""
    body = await _read_form(request)
    fields = forms.parse_form(body)
    _, credential = _credential(request)
    if not _same_origin(request) or not request.app[FORM_TOKENS_KEY].check(
        credential, fields.get("form_token")
    ):
        raise Refusal(
            403,
            "invalid-form-token",
            "the form did not come from this page or has expired (the gateway restarted or you signed "
            "in again): reload the page and submit it again",
        )
    return body, fields


def _set_cookie(response: web.Response, request: web.Request, token: str) -> None:
    # HttpOnly: no script reads it. SameSite=Strict: no other site's link or form sends it. Path /ui:
    # the API never receives it. Secure whenever the page itself came over TLS.
    response.set_cookie(
        forms.COOKIE_NAME,
        token,
        path=forms.COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def _forget_cookie(response: web.Response, request: web.Request) -> None:
    response.del_cookie(
        forms.COOKIE_NAME, path=forms.COOKIE_PATH, httponly=True, samesite="Strict", secure=request.secure
    )


# ------------------------------------------------------------------------------------------ pages


def _sign_in_form(
    next_path: str,
    *,
    error: str | None = None,
    status: int = 200,
    notice: str | None = None,
) -> web.Response:
    return _html("login.html", status=status, next_path=next_path, error=error, visitor=None, notice=notice)


@page
async def handle_login(request: web.Request) -> web.StreamResponse:
    next_path = forms.safe_next(request.query.get("next"))
    try:
        await _visitor(request)
    except Refusal as refusal:
        if refusal.status != 401:
            raise
        notice = _NOTICES.get(request.query.get("notice", ""))
        return _sign_in_form(next_path, notice=notice)
    return _see_other(next_path)  # already signed in, or the gateway needs no sign-in


@page
async def handle_login_post(request: web.Request) -> web.StreamResponse:
    fields = forms.parse_form(await _read_form(request))
    next_path = forms.safe_next(fields.get("next"))
    if not _same_origin(request):
        raise Refusal(403, "invalid-form-token", "the sign-in form did not come from this page")
    try:
        token = forms.sign_in_token(fields)
    except Refusal as refusal:
        return _sign_in_form(next_path, error=refusal.detail, status=400)
    try:
        principal = await request.app[AUTHORIZER_KEY].authenticate(
            {"Authorization": f"Bearer {token}"}, peer=request.remote
        )
    except Refusal as refusal:
        if refusal.status != 401:
            raise
        return _sign_in_form(next_path, error="That token was not accepted.", status=401)
    log.info("ui: %s signed in", principal.name)
    response = _see_other(next_path)
    _set_cookie(response, request, token)
    return response


@page
async def handle_logout(request: web.Request) -> web.StreamResponse:
    await _checked_form(request)
    response = _see_other("/ui/login?notice=signed-out")
    _forget_cookie(response, request)
    return response


async def _readable(
    authorizer: Authorizer, principal: Principal, summaries: list[SubscriptionSummary]
) -> list[SubscriptionSummary]:
    """The subscriptions ``principal`` may ``get``. In a cluster each answer is a SubjectAccessReview
    (cached for 10 s): a few at a time, so a long list neither waits for them one by one nor floods the
    Kubernetes API."""
    gate = asyncio.Semaphore(_CONCURRENT_REVIEWS)

    async def may_read(summary: SubscriptionSummary) -> bool:
        async with gate:
            return await authorizer.allowed(principal, "get", summary.namespace, summary.name)

    decisions = await asyncio.gather(*(may_read(summary) for summary in summaries))
    return [summary for summary, allowed in zip(summaries, decisions, strict=True) if allowed]


@page
async def handle_subscriptions(request: web.Request) -> web.StreamResponse:
    visitor = await _visitor(request)
    service = _service(request)
    summaries = await service.list_subscriptions(None)
    readable = await _readable(request.app[AUTHORIZER_KEY], visitor.principal, summaries)
    return _html(
        "subscriptions.html",
        visitor=visitor,
        subscriptions=readable,
        store=service.describe(),
        notice=None,
    )


@page
async def handle_messages(request: web.Request) -> web.StreamResponse:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    visitor = await _authorize(request, "get", namespace, name)
    asked = request.query.get("status")
    parse_statuses(asked)  # an unknown status: refused with the API's own words
    status = forms.parse_status_filter(asked)  # the page shows one status (or failed) at a time
    cursor = request.query.get("cursor") or None
    service = _service(request)
    found = await service.list_messages(namespace, name, status=status, limit=PAGE_SIZE, cursor=cursor)
    summary = next(
        (s for s in await service.list_subscriptions([namespace]) if s.name == name),
        None,
    )
    next_url = None
    if found.next_cursor:
        query = {"cursor": found.next_cursor, **({"status": status} if status else {})}
        next_url = f"{request.path}?{urlencode(query)}"
    notice = None
    if request.query.get("notice") == "replayed":
        count = request.query.get("count", "")
        replayed = int(count) if count.isdigit() and len(count) < 10 else 0
        notice = f"Replay queued: {replayed} message{'s' if replayed != 1 else ''} will be delivered again."
    default_since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    return _html(
        "messages.html",
        visitor=visitor,
        namespace=namespace,
        name=name,
        summary=summary,
        messages=found.items,
        status_filter=status,
        statuses=forms.FILTER_CHOICES,
        paged=cursor is not None,
        next_url=next_url,
        default_since=default_since.strftime("%Y-%m-%dT%H:%M"),
        notice=notice,
        store=service.describe(),
    )


@page
async def handle_message(request: web.Request) -> web.StreamResponse:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    message_id = request.match_info["message_id"]
    visitor = await _authorize(request, "get", namespace, name)
    service = _service(request)
    record = await service.get_message(namespace, name, message_id)
    return _html(
        "message.html",
        visitor=visitor,
        namespace=namespace,
        name=name,
        message=record,
        notice=_NOTICES.get(request.query.get("notice", "")),
        store=service.describe(),
    )


@page
async def handle_resend(request: web.Request) -> web.StreamResponse:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    message_id = request.match_info["message_id"]
    await _checked_form(request)
    visitor = await _authorize(request, "update", namespace, name)
    await _service(request).resend(namespace, name, message_id, by=visitor.principal.name)
    log.info("ui: %s resent %s of %s/%s", visitor.principal.name, message_id, namespace, name)
    return _see_other(f"{message_url(namespace, name, message_id)}?notice=resent")


@page
async def handle_replay(request: web.Request) -> web.StreamResponse:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    body, fields = await _checked_form(request)
    visitor = await _authorize(request, "update", namespace, name)
    chosen = forms.parse_replay_form(fields.get("since"), forms.form_values(body, "statuses"))
    count = await _service(request).replay(
        namespace, name, since=chosen.since, statuses=chosen.statuses, by=visitor.principal.name
    )
    log.info("ui: %s replayed %d messages of %s/%s", visitor.principal.name, count, namespace, name)
    return _see_other(f"{subscription_url(namespace, name)}?notice=replayed&count={count}")


@page
async def handle_not_found(request: web.Request) -> web.StreamResponse:
    raise Refusal(404, "not-found", f"nothing is served at {request.path}")


async def handle_stylesheet(request: web.Request) -> web.Response:
    return web.Response(
        body=_STYLESHEET,
        content_type="text/css",
        charset="utf-8",
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )


async def handle_root(request: web.Request) -> web.Response:
    return _see_other("/ui/")


def add_ui_routes(app: web.Application) -> None:
    """Mount the web page under ``/ui`` (the app must hold the message service and the authorizer)."""
    app[FORM_TOKENS_KEY] = forms.FormTokens()
    subscription = "/ui/subscriptions/{namespace}/{name}"
    router = problem_routes(app)
    router.add_get("/ui", handle_root)
    router.add_get("/ui/", handle_subscriptions)
    router.add_get("/ui/static/ui.css", handle_stylesheet)
    router.add_get("/ui/login", handle_login)
    router.add_post("/ui/login", handle_login_post, expect_handler=continue_at_body_read)
    router.add_post("/ui/logout", handle_logout, expect_handler=continue_at_body_read)
    router.add_get(subscription, handle_messages)
    router.add_post(subscription + "/replay", handle_replay, expect_handler=continue_at_body_read)
    router.add_get(subscription + "/messages/{message_id}", handle_message)
    router.add_post(
        subscription + "/messages/{message_id}/resend", handle_resend, expect_handler=continue_at_body_read
    )
    router.add_get("/ui/{tail:.*}", handle_not_found)
