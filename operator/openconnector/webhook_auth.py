"""Old import path of the webhook authentication names; they live in :mod:`openconnector.consumers`.

Kept so that code written against ``openconnector.webhook_auth`` keeps importing; new code imports from
``openconnector.consumers.verifiers``, ``.replay``, ``.allow_list`` and ``.standard_webhooks``.
"""

from __future__ import annotations

from openconnector.consumers import verifiers
from openconnector.consumers.allow_list import IpAllowList, TrustedProxies
from openconnector.consumers.replay import ReplayGuard, ReplayStore
from openconnector.consumers.standard_webhooks import standard_webhook_headers
from openconnector.consumers.verifiers import *  # noqa: F403

__all__ = ["IpAllowList", "ReplayGuard", "ReplayStore", "TrustedProxies", "standard_webhook_headers"]
__all__ += verifiers.__all__
