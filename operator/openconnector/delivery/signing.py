"""Outbound signing names kept for the delivery engine; the logic lives in
:mod:`openconnector.consumers.standard_webhooks` (one module signs and verifies, one secret decoder)."""

from __future__ import annotations

from openconnector.consumers.standard_webhooks import (
    MESSAGE_ID_PREFIX,
    SECRET_PREFIX,
    SecretError,
    decode_secret,
    sign,
    signature_headers,
    webhook_message_id,
)

__all__ = [
    "MESSAGE_ID_PREFIX",
    "SECRET_PREFIX",
    "decode_signing_secret",
    "sign",
    "signature_headers",
    "webhook_message_id",
]


def decode_signing_secret(secret: str, field: str = "signing_secret") -> bytes:
    """The HMAC key of a Standard Webhooks secret; ValueError naming ``field`` when it is unusable."""
    try:
        return decode_secret(secret)
    except SecretError as error:
        raise ValueError(f"{field}: {error}") from None
