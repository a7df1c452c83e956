"""The pure parts of the web page: form tokens (CSRF), the sign-in cookie, safe redirects, form fields.

No aiohttp here; ``ui/routes.py`` translates requests into these calls.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from openconnector.refusal import Refusal

__all__ = [
    "COOKIE_NAME",
    "COOKIE_PATH",
    "FILTER_CHOICES",
    "MAX_FORM_BYTES",
    "REPLAYABLE",
    "STATUSES",
    "FormTokens",
    "ReplayForm",
    "form_values",
    "parse_form",
    "parse_replay_form",
    "parse_status_filter",
    "safe_next",
    "sign_in_token",
    "wants_html",
]

#: The cookie holding the bearer token the user signed in with. Path /ui: the API never receives it, so
#: the API (Authorization header only) has nothing a cross-site request could ride on.
COOKIE_NAME = "openconnector-ui"
COOKIE_PATH = "/ui"
MAX_FORM_BYTES = 32 * 1024  # a pasted Kubernetes token is a few KiB; nothing else in a form is large
_MAX_FIELDS = 20
_MAX_TOKEN_CHARS = 16 * 1024

#: Message statuses, in the order the filter lists them.
STATUSES = ("pending", "retrying", "delivered", "dead-lettered", "dropped")
#: What "replay" re-sends unless the form says otherwise: the messages that did not arrive.
REPLAYABLE = ("dead-lettered", "dropped")
#: The message log's status filter: (value, label); "failed" is dead-lettered or dropped.
FILTER_CHOICES = (
    ("", "All"),
    ("failed", "Failed (dead-lettered or dropped)"),
    *((status, status.capitalize()) for status in STATUSES),
)


class FormTokens:
    """Per-session form tokens against cross-site request forgery.

    A token is an HMAC, under a key only this process knows, of the session's credential (the cookie's
    bearer token; empty when the gateway needs none). A page embeds it in every POST form; another site
    can neither read the page (same-origin policy) nor compute it. Stateless, so nothing grows with the
    number of sessions; a restart changes the key, and a form opened before it must be reloaded.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def issue(self, credential: str) -> str:
        digest = hmac.new(self._key, b"ui-form\0" + credential.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def check(self, credential: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.issue(credential), str(token))


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (already bounded in size): the first value of each
    field. Anything that is not such a body is refused with 400."""
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, "invalid-form", "the form could not be read (UTF-8, URL-encoded)") from None
    return {name: values[0] for name, values in fields.items() if values}


def form_values(body: bytes, name: str) -> list[str]:
    """Every value of a repeated field (checkboxes)."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=False, max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, "invalid-form", "the form could not be read (UTF-8, URL-encoded)") from None
    return fields.get(name, [])


def sign_in_token(fields: Mapping[str, str]) -> str:
    """The token typed into the sign-in form, refused with 400 when empty or not one token."""
    token = fields.get("token", "").strip()
    if not token:
        raise Refusal(400, "invalid-form", "token: enter the API token")
    if len(token) > _MAX_TOKEN_CHARS or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise Refusal(400, "invalid-form", "token: one token without spaces or line breaks")
    return token


def safe_next(value: str | None, default: str = "/ui/") -> str:
    """Where to go after signing in: only a path of this UI (never another host: no open redirect).

    The path is judged as a browser resolves it: its dot segments (``.``, ``..``, also percent-encoded
    as ``%2e``) are removed first, and what remains must still be ``/ui`` or under ``/ui/`` (and not the
    sign-in form itself); anything else, or anything that is not plain printable ASCII, goes to
    ``default``. The answer is the resolved path (no dot segments left) with the query.
    """
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return default
    # A browser drops tabs and line breaks from a URL and reads "\" as "/": "/<tab>/x" would be "//x".
    if any(not "!" <= ch <= "~" for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or "\\" in unquote(parts.path):
        return default
    path = _remove_dot_segments(parts.path)
    if not (path == "/ui" or path.startswith("/ui/")) or unquote(path).startswith("/ui/login"):
        return default
    return path + (f"?{parts.query}" if parts.query else "")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 on an absolute path, as the WHATWG URL parser does it: a segment that is
    ``.`` or ``..`` once percent-decoded is a dot segment (``%2e%2e`` climbs like ``..``); a ``%2f`` in a
    segment does not split it (a browser does not either), so it cannot hide a climb."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        decoded = unquote(segment)
        if decoded == ".":
            if last:
                kept.append("")
        elif decoded == "..":
            if kept:
                kept.pop()
            if last:
                kept.append("")
        else:
            kept.append(segment)
    return "/" + "/".join(kept)


def parse_status_filter(value: str | None) -> str | None:
    """The status filter of the message log: ``failed`` or one of :data:`STATUSES`, or none (all)."""
    if not value:
        return None
    if value != "failed" and value not in STATUSES:
        choices = ", ".join(("failed", *STATUSES))
        raise Refusal(400, "invalid-filter", f"status: one of {choices}, got {value[:40]!r}")
    return value


@dataclass(frozen=True, slots=True)
class ReplayForm:
    since: datetime.datetime
    statuses: tuple[str, ...]


def parse_replay_form(since: str | None, statuses: Collection[str]) -> ReplayForm:
    """``since`` from an ``<input type="datetime-local">`` (read as UTC, as the page says) or RFC 3339;
    ``statuses`` from checkboxes (default: :data:`REPLAYABLE`)."""
    text = (since or "").strip()
    if not text:
        raise Refusal(400, "invalid-form", "since: enter the time from which to replay (UTC)")
    try:
        moment = datetime.datetime.fromisoformat(text[:64])
    except ValueError:
        raise Refusal(400, "invalid-form", f"since: not a date and time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    chosen = tuple(status for status in STATUSES if status in set(statuses))
    unknown = set(statuses) - set(STATUSES)
    if unknown:
        raise Refusal(400, "invalid-form", f"statuses: one or more of {', '.join(STATUSES)}")
    return ReplayForm(moment, chosen or REPLAYABLE)


def wants_html(accept: str | None) -> bool:
    """Whether the client is a browser (asks for HTML): it gets HTML pages and HTML error pages; every
    other client (``curl``, scripts: ``*/*`` or JSON) gets ``application/problem+json`` refusals."""
    if not accept:
        return False
    for part in accept.split(",")[:32]:
        media, *params = (item.strip().lower() for item in part.split(";"))
        if media in ("text/html", "application/xhtml+xml"):
            return _quality(params) > 0
    return False


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0
