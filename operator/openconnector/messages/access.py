"""Who may read and act on a subscription's messages.

Message payloads are personal data: every API call is authorised for one subscription and one verb,
``get`` (read its messages, pull) or ``update`` (resend, replay). Two implementations:

* :class:`TokenAuthorizer` (standalone): one bearer token (``--api-token-file`` or env
  ``OPENCONNECTOR_API_TOKEN``) grants everything. Without a token the API answers only loopback peers.
* :class:`KubernetesAuthorizer` (cluster): the bearer token is checked with a TokenReview, then a
  SubjectAccessReview asks whether that user may ``get`` (read) or ``update`` (resend, replay) the
  EventSubscription. A user who may not ``get`` it is answered 404, as if it did not exist: namespaces
  never leak into each other. One who may ``get`` but not ``update`` is answered 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from openconnector.refusal import Refusal

__all__ = [
    "Authorizer",
    "KubernetesAuthorizer",
    "Principal",
    "TokenAuthorizer",
    "Verb",
    "bearer_token",
]

log = logging.getLogger(__name__)

Verb = Literal["get", "list", "update"]
#: The resource a decision is about when none is named: the message API is about subscriptions.
SUBSCRIPTIONS = "eventsubscriptions"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="openconnector"'}
_MAX_TOKEN_LENGTH = 16 * 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``name`` (the Kubernetes user name, or ``api-token``/``loopback``)."""

    name: str
    groups: tuple[str, ...] = ()
    token: str = field(default="", repr=False, compare=False)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>``, None when absent or not a bearer token."""
    value = headers.get("Authorization") or headers.get("authorization")
    if not value:
        # Through the apiserver's service proxy (the CLI in a cluster) Authorization is consumed by the
        # apiserver; the CLI passes its token on here. It is checked like any other bearer token.
        forwarded = headers.get("X-OpenConnector-Token") or headers.get("x-openconnector-token")
        value = f"Bearer {forwarded}" if forwarded else None
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    return token


def unauthenticated(detail: str) -> Refusal:
    return Refusal(401, "unauthenticated", detail, headers=_CHALLENGE)


def not_found(namespace: str, name: str) -> Refusal:
    return Refusal(404, "unknown-subscription", f"no subscription {namespace}/{name} is known to you")


def forbidden(principal: Principal, verb: Verb, namespace: str, name: str) -> Refusal:
    action = "resend or replay messages of" if verb == "update" else "read"
    return Refusal(
        403,
        "forbidden",
        f"{principal.name} may not {action} eventsubscriptions/{name} in namespace {namespace} "
        f"(needs the '{verb}' verb on eventsubscriptions.openconnector.nl)",
    )


class Authorizer(Protocol):
    """Authenticates a request and decides per (verb, namespace, name)."""

    async def authenticate(self, headers: Mapping[str, str], *, peer: str | None = None) -> Principal:
        """The caller, or Refusal 401."""
        ...

    async def allowed(
        self, principal: Principal, verb: Verb, namespace: str, name: str, *, resource: str = SUBSCRIPTIONS
    ) -> bool: ...

    async def authorize(
        self, headers: Mapping[str, str], verb: Verb, namespace: str, name: str, *, peer: str | None = None
    ) -> Principal:
        """The caller when it may ``verb`` the subscription; else Refusal 401, 404 (may not even read
        it: its existence is not revealed) or 403 (may read, not update)."""
        ...


class _AuthorizerBase:
    async def authenticate(self, headers: Mapping[str, str], *, peer: str | None = None) -> Principal:
        raise NotImplementedError

    async def allowed(
        self, principal: Principal, verb: Verb, namespace: str, name: str, *, resource: str = SUBSCRIPTIONS
    ) -> bool:
        raise NotImplementedError

    async def authorize(
        self, headers: Mapping[str, str], verb: Verb, namespace: str, name: str, *, peer: str | None = None
    ) -> Principal:
        principal = await self.authenticate(headers, peer=peer)
        if not await self.allowed(principal, "get", namespace, name):
            raise not_found(namespace, name)
        if verb != "get" and not await self.allowed(principal, verb, namespace, name):
            raise forbidden(principal, verb, namespace, name)
        return principal


def is_loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class TokenAuthorizer(_AuthorizerBase):
    """Standalone: one bearer token grants every verb on every subscription. Without a token, only
    loopback peers are answered (the log says so at start-up)."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def open_on_loopback(self) -> bool:
        return self._token is None

    async def authenticate(self, headers: Mapping[str, str], *, peer: str | None = None) -> Principal:
        token = bearer_token(headers)
        if self._token is None:
            if is_loopback(peer):
                return Principal("loopback")
            raise unauthenticated(
                "the message API has no token configured (--api-token-file or OPENCONNECTOR_API_TOKEN) "
                "and answers only loopback clients"
            )
        if token is None:
            raise unauthenticated("send Authorization: Bearer <token> (the gateway's API token)")
        if not hmac.compare_digest(token.encode(), self._token):
            raise unauthenticated("the bearer token is not valid")
        return Principal("api-token")

    async def allowed(
        self, principal: Principal, verb: Verb, namespace: str, name: str, *, resource: str = SUBSCRIPTIONS
    ) -> bool:
        return True


#: ``(path, body) -> (status, json)``: a POST to the Kubernetes API as the gateway itself.
KubeCall = Callable[[str, Mapping[str, Any]], Awaitable[tuple[int, Any]]]

_CACHE_SECONDS = 10.0
_CACHE_LIMIT = 10_000


class KubernetesAuthorizer(_AuthorizerBase):
    """Cluster: TokenReview authenticates, SubjectAccessReview authorises (``get`` reads, ``update``
    resends and replays) on ``eventsubscriptions.openconnector.nl``. Answers are cached for 10 s (per
    token hash, and per user/verb/subscription), like the apiserver's own webhook authorizer caches."""

    def __init__(
        self, call: KubeCall, *, clock: Callable[[], float] = time.monotonic, audiences: tuple[str, ...] = ()
    ) -> None:
        self._call = call
        self._clock = clock
        self._audiences = audiences
        self._tokens: dict[str, tuple[float, Principal | None]] = {}
        self._decisions: dict[tuple[str, tuple[str, ...], str, str, str, str], tuple[float, bool]] = {}

    async def authenticate(self, headers: Mapping[str, str], *, peer: str | None = None) -> Principal:
        token = bearer_token(headers)
        if token is None:
            raise unauthenticated("send Authorization: Bearer <token> (a Kubernetes token)")
        import hashlib

        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._tokens.get(digest)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            spec: dict[str, Any] = {"token": token}
            if self._audiences:
                spec["audiences"] = list(self._audiences)
            status, body = await self._review(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
            )
            result = body.get("status") or {} if isinstance(body, dict) else {}
            principal = None
            if status < 300 and result.get("authenticated"):
                user = result.get("user") or {}
                principal = Principal(str(user.get("username") or ""), tuple(user.get("groups") or ()))
            self._remember(self._tokens, digest, (now + _CACHE_SECONDS, principal))
        if principal is None or not principal.name:
            raise unauthenticated("the bearer token was not accepted by the Kubernetes API (TokenReview)")
        return principal

    async def allowed(
        self, principal: Principal, verb: Verb, namespace: str, name: str, *, resource: str = SUBSCRIPTIONS
    ) -> bool:
        slot = (principal.name, principal.groups, verb, resource, namespace, name)
        now = self._clock()
        cached = self._decisions.get(slot)
        if cached is not None and cached[0] > now:
            return cached[1]
        status, body = await self._review(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": principal.name,
                    "groups": list(principal.groups),
                    # A list is about the namespace: no name (as kubectl get asks).
                    "resourceAttributes": {
                        "group": "openconnector.nl",
                        "resource": resource,
                        "verb": verb,
                        "namespace": namespace,
                        **({"name": name} if name else {}),
                    },
                },
            },
        )
        result = body.get("status") or {} if isinstance(body, dict) else {}
        allowed = status < 300 and bool(result.get("allowed")) and not result.get("denied")
        self._remember(self._decisions, slot, (now + _CACHE_SECONDS, allowed))
        return allowed

    async def _review(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        try:
            return await self._call(path, body)
        except Exception as failure:
            log.warning("access review %s failed: %s", path.rsplit("/", 1)[-1], type(failure).__name__)
            raise Refusal(
                503,
                "access-review-unavailable",
                "the Kubernetes API did not answer the access review; retry later",
                headers={"Retry-After": "5"},
            ) from None

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()  # bounded: a flood of distinct tokens cannot grow it
        cache[key] = value
