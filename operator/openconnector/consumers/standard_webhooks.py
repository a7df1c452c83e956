"""Standard Webhooks (https://www.standardwebhooks.com/): one module for signing and verifying.

Outbound deliveries are signed with :func:`signature_headers`; inbound Consumer requests are verified with
:func:`matching_key`. Both read a secret with the one decoder :func:`decode_secret`: surrounding white
space and the optional ``whsec_`` prefix removed, base64 (missing padding tolerated, as the reference
libraries do), at least :data:`MIN_KEY_BYTES` bytes.

Headers: ``webhook-id`` (stable across retries, so receivers can deduplicate; see
:func:`webhook_message_id`), ``webhook-timestamp`` (Unix seconds of *this* attempt: receivers reject
stale ones, so every retry is signed afresh) and ``webhook-signature`` =
``v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`` (several space-separated entries allowed).

``webhook-id`` of an outbound CloudEvent is not the CloudEvent id itself: CloudEvents ids are unique only
per ``source``, so two sources may both send id ``1`` and a receiver deduplicating on ``webhook-id`` would
drop the second. It is ``msg_`` + base64url (no padding) of SHA-256 over ``source + "\\0" + id``: unique
wherever (source, id) is, the same for every retry of one event, and a pure function of the event, so a
receiver or operator can recompute it. NUL cannot occur in a CloudEvents String, so the join is
unambiguous.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Final

__all__ = [
    "MESSAGE_ID_PREFIX",
    "MIN_KEY_BYTES",
    "SECRET_PREFIX",
    "SecretError",
    "decode_secret",
    "matching_key",
    "message_headers",
    "message_key",
    "sign",
    "signature_headers",
    "standard_webhook_headers",
    "webhook_message_id",
    "webhook_message_id_of_key",
]

SECRET_PREFIX: Final = "whsec_"
MESSAGE_ID_PREFIX: Final = "msg_"
MIN_KEY_BYTES: Final = 16


class SecretError(ValueError):
    """A secret that is not a Standard Webhooks secret; the message never echoes the secret."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_<base64>`` or bare base64)."""
    encoded = secret.strip().removeprefix(SECRET_PREFIX).strip()
    if not encoded:
        raise SecretError("the signing secret is empty")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("the signing secret is not base64 after the optional 'whsec_' prefix") from None
    if len(key) < MIN_KEY_BYTES:
        raise SecretError(
            f"the signing secret decodes to {len(key)} bytes; use at least {MIN_KEY_BYTES} (24 to 64 usual)"
        )
    return key


def webhook_message_id(source: str, event_id: str) -> str:
    """The ``webhook-id`` of a CloudEvent: ``msg_`` + base64url(sha256(source NUL id)), no padding."""
    return webhook_message_id_of_key(f"{source}\0{event_id}")


def message_key(source: str, event_id: str) -> str:
    """``source`` NUL ``id``: what :func:`webhook_message_id` hashes, unique wherever (source, id) is. The
    message log keys its records by it and derives the ``webhook-id`` only when it is read."""
    return f"{source}\0{event_id}"


def webhook_message_id_of_key(key: str) -> str:
    """:func:`webhook_message_id` of a :func:`message_key`."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    # base64.urlsafe_b64encode, without its two Python-level calls
    encoded = binascii.b2a_base64(digest, newline=False).translate(_URLSAFE).rstrip(b"=")
    return MESSAGE_ID_PREFIX + encoded.decode("ascii")


_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def _signed_content(message_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{message_id}.{timestamp}.".encode("utf-8", "surrogateescape") + body


def _digest(key: bytes, message_id: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(key, _signed_content(message_id, timestamp, body), hashlib.sha256).digest()


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``{message_id}.{timestamp}.{body}`` with the decoded ``key``."""
    return "v1," + base64.b64encode(_digest(key, message_id, str(timestamp), body)).decode("ascii")


def signature_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one request."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }


def standard_webhook_headers(
    secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers signed with every secret (several = rotation: space-separated signatures).

    For senders (``openconnector sign``, tests); SecretError on a malformed secret."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    signatures = " ".join(sign(decode_secret(s), message_id, timestamp, body) for s in secrets)
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}


def message_headers(headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """``(id, timestamp, signature)`` from lower-cased headers; the ``svix-*`` spelling is read too."""
    for prefix in ("webhook-", "svix-"):
        if f"{prefix}id" in headers or f"{prefix}signature" in headers:
            return (
                headers.get(f"{prefix}id"),
                headers.get(f"{prefix}timestamp"),
                headers.get(f"{prefix}signature"),
            )
    return None, None, None


def matching_key(keys: Sequence[bytes], message_id: str, timestamp: str, body: bytes, signatures: str) -> int:
    """Index of the first key that signed one of the ``v1`` entries of ``signatures``, or -1.

    Every key is compared against every entry in constant time. Unknown versions (``v1a`` asymmetric
    signatures among them) are skipped, as the specification says.
    """
    try:
        expected = [_digest(key, message_id, timestamp, body) for key in keys]
    except UnicodeEncodeError:
        return -1
    matched = -1
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            continue
        for index, digest in enumerate(expected):
            if hmac.compare_digest(digest, given) and matched < 0:
                matched = index
    return matched
