"""A subscription's delivery configuration: pure data, validated once (no I/O, no aiohttp).

The routing compiler builds :class:`DeliveryTarget` objects; both delivery buses (in-memory and
JetStream) deliver by them. Secrets (auth headers, signing secret) are hidden from ``repr``.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from openconnector.api.keys import ResourceKey
from openconnector.ce.codec import ContentMode
from openconnector.delivery.health import HealthConfig
from openconnector.delivery.policy import DeliveryPolicy, validate_http_url
from openconnector.delivery.signing import decode_signing_secret

__all__ = [
    "DEFAULT_QUEUE_BYTES",
    "DELIVERY_MODES",
    "ContentMode",
    "DeliveryTarget",
    "redact_url",
    "require_positive_int",
]

#: Default bytes one lane may hold (queued and in flight).
DEFAULT_QUEUE_BYTES = 32 * 1024 * 1024

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers the engine owns: the encoder sets content/ce-*, the signer webhook-*, aiohttp the framing.
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
_RESERVED_PREFIXES = ("ce-", "webhook-")
_METHODS = frozenset({"POST", "PUT", "PATCH"})


#: The content modes a delivery is sent in (the CRD's ``contentMode``); batch is only ever received.
DELIVERY_MODES = frozenset({ContentMode.STRUCTURED, ContentMode.BINARY})


def redact_url(url: str) -> str:
    """``url`` without user info, query string or fragment: safe for logs, status and ``ocerrordest``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<invalid url>"


def _validate_headers(headers: Mapping[str, str], field_name: str, *, allow_authorization: bool) -> None:
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"{field_name}: {name!r} is not a valid HTTP header name")
        lower = name.lower()
        if lower in _RESERVED_HEADERS or lower.startswith(_RESERVED_PREFIXES):
            raise ValueError(
                f"{field_name}: header {name!r} is set by the delivery engine and cannot be overridden"
            )
        if lower == "authorization" and not allow_authorization:
            raise ValueError(
                f"{field_name}: put Authorization in auth headers (from a Secret), not plain headers"
            )
        # Say which header is wrong, but never echo a value: it may be a credential.
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"{field_name}: value of header {name!r} must be a string without CR, LF or NUL")


def require_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """One subscription's delivery configuration (immutable; replace it to change it).

    ``key`` identifies the subscription (its :class:`ResourceKey`; both buses key lanes, consumers,
    metrics and status by it). ``headers`` are plain extra headers;
    ``auth_headers`` carry credentials resolved from Secrets (e.g. ``{"Authorization": "Bearer …"}``)
    and ``signing_secret`` a Standard Webhooks secret (``whsec_…``): both are hidden from ``repr`` and
    never logged. ``dead_letter_headers`` go to the dead-letter sink only (the subscriber's credentials
    never do). ``queue_size`` bounds the events waiting in this lane, ``queue_bytes`` the bytes it holds
    (waiting and in flight, as :attr:`Prepared.size`).
    """

    key: ResourceKey
    url: str
    method: str = "POST"
    content_mode: ContentMode = ContentMode.STRUCTURED
    headers: Mapping[str, str] = field(default_factory=dict)
    auth_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    health: HealthConfig = field(default_factory=HealthConfig)
    max_concurrency: int = 4
    queue_size: int = 1000
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    dead_letter_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    _signing_key: bytes | None = field(default=None, init=False, repr=False, compare=False)
    # No headers, credentials or signature of its own: an attempt sends the encoded request as it is.
    _plain: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, ResourceKey) or not (self.key.namespace and self.key.name):
            raise ValueError("key: must be a ResourceKey with a namespace and a name")
        validate_http_url(self.url, "url")
        if self.method not in _METHODS:
            raise ValueError(f"method: must be one of POST, PUT, PATCH, got {self.method!r}")
        if not isinstance(self.content_mode, str) or self.content_mode not in DELIVERY_MODES:
            raise ValueError(f"content_mode: must be 'structured' or 'binary', got {self.content_mode!r}")
        object.__setattr__(self, "content_mode", ContentMode(self.content_mode))
        for name in ("max_concurrency", "queue_size", "queue_bytes"):
            require_positive_int(name, getattr(self, name))
        _validate_headers(self.headers, "headers", allow_authorization=False)
        _validate_headers(self.auth_headers, "auth_headers", allow_authorization=True)
        _validate_headers(self.dead_letter_headers, "dead_letter_headers", allow_authorization=True)
        # Private copies: a caller mutating its dict must not change a live target.
        object.__setattr__(self, "headers", types.MappingProxyType(dict(self.headers)))
        object.__setattr__(self, "auth_headers", types.MappingProxyType(dict(self.auth_headers)))
        object.__setattr__(
            self, "dead_letter_headers", types.MappingProxyType(dict(self.dead_letter_headers))
        )
        if self.signing_secret is not None:
            object.__setattr__(self, "_signing_key", decode_signing_secret(self.signing_secret))
        plain = self._signing_key is None and not self.headers and not self.auth_headers
        object.__setattr__(self, "_plain", plain)

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)
