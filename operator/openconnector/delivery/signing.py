"""Standard Webhooks signing of outbound deliveries (https://www.standardwebhooks.com/).

Headers: ``webhook-id`` (stable across retries, so receivers can deduplicate; see
:func:`webhook_message_id`),
``webhook-timestamp`` (Unix seconds of *this* attempt: receivers reject stale ones, so every retry is
signed afresh) and ``webhook-signature`` = ``v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">``.
The key is the secret with its optional ``whsec_`` prefix removed, base64-decoded, as the reference
libraries do.

``webhook-id`` is not the CloudEvent id itself: CloudEvents ids are unique only per ``source``, so two
sources may both send id ``1`` and a receiver deduplicating on ``webhook-id`` would drop the second.
It is ``msg_`` + base64url (no padding) of SHA-256 over ``source + "\\0" + id``: unique wherever
(source, id) is, the same for every retry of one event, and a pure function of the event, so a receiver
or operator can recompute it. NUL cannot occur in a CloudEvents String, so the join is unambiguous.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = [
    "MESSAGE_ID_PREFIX",
    "SECRET_PREFIX",
    "decode_signing_secret",
    "sign",
    "signature_headers",
    "webhook_message_id",
]

SECRET_PREFIX = "whsec_"
MESSAGE_ID_PREFIX = "msg_"


def webhook_message_id(source: str, event_id: str) -> str:
    """The ``webhook-id`` of a CloudEvent: ``msg_`` + base64url(sha256(source NUL id)), no padding."""
    digest = hashlib.sha256(f"{source}\0{event_id}".encode("utf-8", "surrogatepass")).digest()
    return MESSAGE_ID_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def decode_signing_secret(secret: str, field: str = "signing_secret") -> bytes:
    """The HMAC key of a Standard Webhooks secret; ValueError naming ``field`` if it is not base64."""
    encoded = secret.removeprefix(SECRET_PREFIX).strip()
    if not encoded:
        raise ValueError(f"{field}: the signing secret is empty")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        # Never echo the secret itself in the message.
        raise ValueError(
            f"{field}: the signing secret is not base64 after the optional 'whsec_' prefix"
        ) from None
    if len(key) < 16:
        raise ValueError(
            f"{field}: the signing secret decodes to {len(key)} bytes; use at least 16 (24 to 64 usual)"
        )
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``{message_id}.{timestamp}.{body}`` with the decoded ``key``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one request."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }
