"""What senders compute and the gateway verifies, for tests that play the sender."""

from __future__ import annotations

import hashlib
import hmac

from openconnector.consumers.standard_webhooks import standard_webhook_headers

__all__ = ["sign_github", "standard_webhook_headers"]


def sign_github(secret: str, body: bytes) -> str:
    """GitHub's ``X-Hub-Signature-256`` value (``sha256=<hex>``)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
