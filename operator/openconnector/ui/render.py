"""Jinja2 templates of the web page, autoescaped: whatever a subscriber or sender put into an event or a
response (type, subject, headers, body excerpts) is shown as text, never as markup."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

__all__ = ["message_url", "render", "subscription_url"]


def _time(moment: datetime.datetime | None) -> Markup:
    """A ``<time>`` element in UTC, seconds precision (the page says all times are UTC)."""
    if moment is None:
        return Markup("—")
    utc = moment.astimezone(datetime.UTC)
    machine = utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Markup('<time datetime="{}">{}</time>').format(machine, utc.strftime("%Y-%m-%d %H:%M:%S"))


def _latency(milliseconds: float | None) -> str:
    if milliseconds is None:
        return "—"
    return f"{milliseconds:.0f} ms" if milliseconds >= 10 else f"{milliseconds:.1f} ms"


def subscription_url(namespace: str, name: str) -> str:
    return f"/ui/subscriptions/{quote(namespace, safe='')}/{quote(name, safe='')}"


def message_url(namespace: str, name: str, message_id: str) -> str:
    return f"{subscription_url(namespace, name)}/messages/{quote(message_id, safe='')}"


_environment = Environment(
    loader=PackageLoader("openconnector.ui", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["time"] = _time
_environment.filters["latency"] = _latency
_environment.globals["subscription_url"] = subscription_url
_environment.globals["message_url"] = message_url


def render(template: str, **context: Any) -> str:
    return _environment.get_template(template).render(**context)
