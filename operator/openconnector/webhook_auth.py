"""Old import path of the webhook authentication names; they live in :mod:`openconnector.consumers`.

Kept so that code written against ``openconnector.webhook_auth`` keeps importing; new code imports from
``openconnector.consumers.verifiers``, ``.replay``, ``.allow_list`` and ``.standard_webhooks``.
"""

from __future__ import annotations

from openconnector.consumers.allow_list import IpAllowList, TrustedProxies
from openconnector.consumers.replay import ReplayGuard, ReplayStore
from openconnector.consumers.standard_webhooks import standard_webhook_headers
from openconnector.consumers.verifiers import (
    ASYMMETRIC_JWT_ALGORITHMS,
    HMAC_JWT_ALGORITHMS,
    JWT_DEFAULT_LIFETIME_SECONDS,
    SUPPORTED_JWT_ALGORITHMS,
    AuthFailure,
    AuthOutcome,
    AuthType,
    InboundAuthConfig,
    InboundAuthConfigError,
    InboundVerifier,
    compile_verifier,
)

__all__ = [
    "ASYMMETRIC_JWT_ALGORITHMS",
    "HMAC_JWT_ALGORITHMS",
    "JWT_DEFAULT_LIFETIME_SECONDS",
    "SUPPORTED_JWT_ALGORITHMS",
    "AuthFailure",
    "AuthOutcome",
    "AuthType",
    "InboundAuthConfig",
    "InboundAuthConfigError",
    "InboundVerifier",
    "IpAllowList",
    "ReplayGuard",
    "ReplayStore",
    "TrustedProxies",
    "compile_verifier",
    "standard_webhook_headers",
]
