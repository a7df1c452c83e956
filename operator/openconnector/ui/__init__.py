"""The web page served by the gateway at ``/ui`` (issue 14): subscriptions with health and counters, a
subscription's message log, a message's attempts, resend and replay.

Server-rendered HTML (Jinja2, autoescaped) over :class:`~openconnector.messages.service.MessageService`,
with the API's :class:`~openconnector.messages.access.Authorizer`; no script. ``routes.py`` is the HTTP
adapter, ``forms.py`` the pure rules (form tokens, cookie, redirects, form fields), ``render.py`` the
templates. See docs/ui.md.
"""

from openconnector.ui.routes import add_ui_routes

__all__ = ["add_ui_routes"]
