"""Inbound webhook authentication: a Consumer's `auth` block compiled once into an :class:`InboundVerifier`.

Pure: the compiler resolves Secrets into `InboundAuthConfig.credentials` and calls :func:`compile_verifier`
(problems become the Consumer's `InvalidAuth` condition); the gateway passes headers, query, the raw body
and the clock to :meth:`InboundVerifier.verify` and renders `AuthFailure` (a
:class:`~openconnector.refusal.Refusal`) as a problem response. Nothing here does I/O; replay refusal is a
separate, async step (:func:`openconnector.consumers.replay.admit`).

Schemes (several credentials = rotation; any one of them is valid):

- `bearer`: `Authorization: Bearer <token>` (or `?access_token=`, which the CloudEvents HTTP webhook spec
  allows a receiver to accept);
- `basic`: `Authorization: Basic base64(user:password)` against "user:password" credentials;
- `apiKey`: the configured header carries one of the keys;
- `hmac`: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`; the `svix-*`
  spelling is accepted too), HMAC-SHA256 over "{id}.{timestamp}.{raw body}" (see
  :mod:`openconnector.consumers.standard_webhooks`), timestamp tolerance; the outcome carries the replay
  window for :func:`~openconnector.consumers.replay.admit`. Only `v1` (symmetric) signatures are verified;
  `v1a` (Ed25519) entries are ignored like any unknown version;
- `github`: `X-Hub-Signature-256: sha256=<hex>` (GitHub has no signed timestamp, so no replay window);
- `jwt`: OpenConnector's ZGW convention: `iss` must name the Consumer, algorithms are pinned by the
  config, `iat` is required, `exp` defaults to `iat` + 1 h; the leeway is `tolerance_seconds`. The
  minimum key sizes of RFC 7518 are enforced (HS256 ≥ 32 bytes, RSA ≥ 2048 bits). `aud` is not checked
  (the Consumer has no audience setting).

Secrets are compared in constant time (digests of equal length), and `AuthFailure.detail` never says which
part of a credential was wrong (a JWT refusal is "the token is not valid", whatever claim failed).
`reason` is a machine code for logs and metrics.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from openconnector.consumers.standard_webhooks import (
    SecretError,
    decode_secret,
    matching_key,
    message_headers,
)
from openconnector.refusal import Refusal

if TYPE_CHECKING:
    from openconnector.consumers.jwt_auth import JwtKey

__all__ = [
    "ASYMMETRIC_JWT_ALGORITHMS",
    "HMAC_JWT_ALGORITHMS",
    "JWT_DEFAULT_LIFETIME_SECONDS",
    "NO_AUTH",
    "SUPPORTED_JWT_ALGORITHMS",
    "AuthFailure",
    "AuthOutcome",
    "AuthType",
    "InboundAuthConfig",
    "InboundAuthConfigError",
    "InboundVerifier",
    "compile_verifier",
]

AuthType = Literal["none", "bearer", "basic", "apiKey", "hmac", "github", "jwt"]
AUTH_TYPES: Final[tuple[AuthType, ...]] = ("none", "bearer", "basic", "apiKey", "hmac", "github", "jwt")

HMAC_JWT_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
_RSA_JWT_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_JWT_ALGORITHMS: Final = ("ES256", "ES384", "ES512")
ASYMMETRIC_JWT_ALGORITHMS: Final = (*_RSA_JWT_ALGORITHMS, *_EC_JWT_ALGORITHMS)
SUPPORTED_JWT_ALGORITHMS: Final = (*HMAC_JWT_ALGORITHMS, *ASYMMETRIC_JWT_ALGORITHMS)
_HMAC_MIN_KEY_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_MIN_KEY_BITS: Final = 2048

JWT_DEFAULT_LIFETIME_SECONDS: Final = 3600
"""OpenConnector: a token without `exp` expires one hour after `iat`."""

_REALM: Final = 'realm="openconnector"'
# RFC 9110 §11.6.1: every 401 carries a challenge. The schemes without a registered HTTP authentication
# scheme name theirs after what the sender must send, so the refusal still says how to authenticate.
API_KEY_CHALLENGE: Final = f"ApiKey {_REALM}"
STANDARD_WEBHOOKS_CHALLENGE: Final = f"Webhook-Signature {_REALM}"
GITHUB_CHALLENGE: Final = f"X-Hub-Signature-256 {_REALM}"
_TIMESTAMP_RE: Final = re.compile(r"[0-9]{1,15}")
_GITHUB_SIGNATURE_RE: Final = re.compile(r"sha256=([0-9a-fA-F]{64})")


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class InboundAuthConfig:
    """A Consumer's `auth` block with its Secret material already resolved by the caller."""

    type: AuthType
    credentials: tuple[str, ...] = ()
    """One entry per referenced secret key; several = rotation. bearer: token; basic: "user:password";
    apiKey: key; hmac: "whsec_<base64>" secret; github: secret; jwt: HS shared secret or PEM public key /
    certificate (RS*/PS*/ES*; base64 of the PEM, as OpenConnector stores it, is accepted too)."""
    header: str = "X-API-Key"
    """apiKey: the header carrying the key."""
    algorithms: tuple[str, ...] = ("HS256",)
    """jwt: the accepted (pinned) algorithms."""
    tolerance_seconds: int = 300
    """hmac: timestamp tolerance; jwt: leeway for iat/exp/nbf."""
    issuer: str = ""
    """jwt: the expected `iss` (the Consumer name; the caller fills it)."""

    def __post_init__(self) -> None:
        # Lists passed by a caller become tuples, so the config stays hashable and comparable.
        object.__setattr__(self, "credentials", tuple(self.credentials))
        object.__setattr__(self, "algorithms", tuple(self.algorithms))


class InboundAuthConfigError(ValueError):
    """The auth configuration cannot work; `problems` become the Consumer's `InvalidAuth` condition."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


class AuthFailure(Refusal):
    """The request is refused. `detail` is safe to show the sender; `reason` is for logs and metrics
    (counted as `auth-<reason>`)."""

    def __init__(
        self, status: Literal[401, 403], reason: str, detail: str, *, www_authenticate: str | None = None
    ) -> None:
        super().__init__(
            status,
            "unauthorized" if status == 401 else "forbidden",
            detail,
            label=f"auth-{reason}",
            headers={"WWW-Authenticate": www_authenticate} if www_authenticate else None,
        )
        self.reason = reason
        self.www_authenticate = www_authenticate
        """The `WWW-Authenticate` challenge to send with a 401, when the scheme has one."""

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.detail}"

    def __repr__(self) -> str:
        return f"AuthFailure({self.status}, {self.reason!r}, {self.detail!r})"


@dataclass(frozen=True)
class AuthOutcome:
    """A successful verification."""

    scheme: AuthType
    principal: str = ""
    """basic: the user name; jwt: the issuer; otherwise empty."""
    credential_index: int = -1
    """Which configured credential matched (0-based), so rotation can tell when the old one is unused."""
    message_id: str | None = None
    """hmac: `webhook-id`; github: `X-GitHub-Delivery` — the sender's idempotency key."""
    replay_key: str | None = None
    """hmac, after `replay.admit`: the key remembered; `ReplayStore.forget` it when the message is not
    accepted (e.g. the target failed), so the sender's retry with the same webhook-id is not refused."""
    replay_ttl: float | None = field(default=None, compare=False)
    """hmac: how long the message id must be remembered to refuse replays (a message is acceptable while
    |now - timestamp| <= tolerance, i.e. at most 2×tolerance from now)."""
    claims: Mapping[str, object] = field(default_factory=dict)
    """jwt: the verified claims."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, eq=False)
class InboundVerifier:
    """A Consumer's `auth` block with its keys decoded and parsed once; see :func:`compile_verifier`."""

    config: InboundAuthConfig
    secret_digests: tuple[bytes, ...]
    """bearer/basic/apiKey: SHA-256 of each credential."""
    hmac_keys: tuple[bytes, ...]
    """hmac/github: the HMAC key of each credential."""
    jwt_keys: tuple[JwtKey, ...]
    """jwt: each credential's key (see :mod:`openconnector.consumers.jwt_auth`)."""

    def verify(
        self, *, headers: Mapping[str, str], query: Mapping[str, str], body: bytes, now: float
    ) -> AuthOutcome:
        """Authenticate one inbound request, or raise AuthFailure.

        `headers` may be any mapping (names are matched case-insensitively); `body` is the raw request
        body; `now` is unix seconds. A signed message's id is not checked for replays here: pass the
        outcome to :func:`openconnector.consumers.replay.admit`.
        """
        return _verify(self, headers, query, body, now)


def _build(config: InboundAuthConfig) -> tuple[InboundVerifier | None, list[str]]:
    problems: list[str] = []
    if config.type not in AUTH_TYPES:
        return None, [f"type: unknown auth type {config.type!r}; expected one of {', '.join(AUTH_TYPES)}"]
    if config.type != "none" and not config.credentials:
        problems.append("credentials: at least one credential is needed unless type is none")
    if config.tolerance_seconds < 0:
        problems.append("toleranceSeconds: must not be negative")

    secret_digests: list[bytes] = []
    hmac_keys: list[bytes] = []
    jwt_keys: list[JwtKey] = []
    for index, credential in enumerate(config.credentials):
        where = f"credentials[{index}]"
        if config.type in ("bearer", "apiKey", "basic"):
            if credential == "":
                problems.append(f"{where}: empty")
            if config.type == "basic" and ":" not in credential:
                problems.append(f"{where}: a basic credential is 'user:password'")
            secret_digests.append(hashlib.sha256(credential.encode("utf-8")).digest())
        elif config.type == "hmac":
            try:
                hmac_keys.append(decode_secret(credential))
            except SecretError as error:
                if "base64" in str(error):
                    problems.append(f"{where}: not a Standard Webhooks secret (whsec_ followed by base64)")
                else:
                    problems.append(f"{where}: {error}")
        elif config.type == "github":
            if credential == "":
                problems.append(f"{where}: empty")
            hmac_keys.append(credential.encode("utf-8"))
        elif config.type == "jwt":
            # The JWT half (PyJWT and cryptography, ~20 MB of a process) loads with the first jwt
            # Consumer compiled: a gateway without one never pays for it.
            from openconnector.consumers.jwt_auth import build_jwt_key

            jwt_key = build_jwt_key(config, index, credential, problems)
            if jwt_key is not None:
                jwt_keys.append(jwt_key)

    if config.type == "apiKey" and not config.header.strip():
        problems.append("header: the apiKey header name is empty")
    if config.type == "jwt":
        problems.extend(_jwt_algorithm_problems(config))
        if not config.issuer:
            problems.append("issuer: the expected JWT issuer (the Consumer name) is empty")

    if problems:
        return None, problems
    verifier = InboundVerifier(config, tuple(secret_digests), tuple(hmac_keys), tuple(jwt_keys))
    return verifier, problems


def _jwt_algorithm_problems(config: InboundAuthConfig) -> list[str]:
    problems: list[str] = []
    if not config.algorithms:
        problems.append("algorithms: at least one JWT algorithm is needed")
    for algorithm in config.algorithms:
        if algorithm not in SUPPORTED_JWT_ALGORITHMS:
            supported = ", ".join(SUPPORTED_JWT_ALGORITHMS)
            problems.append(f"algorithms: {algorithm!r} is not supported; use one of {supported}")
    symmetric = [a for a in config.algorithms if a in HMAC_JWT_ALGORITHMS]
    asymmetric = [a for a in config.algorithms if a in ASYMMETRIC_JWT_ALGORITHMS]
    if symmetric and asymmetric:
        # One key read both as an HMAC secret and a public key is the classic algorithm-confusion hole.
        problems.append("algorithms: HS* cannot be combined with RS*/PS*/ES* in one Consumer")
    return problems


def compile_verifier(config: InboundAuthConfig) -> InboundVerifier:
    """The verifier of `config`, built once (at compile time); InboundAuthConfigError lists every
    reason the configuration cannot work."""
    verifier, problems = _build(config)
    if verifier is None:
        raise InboundAuthConfigError(problems)
    return verifier


# --------------------------------------------------------------------------- verification helpers


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _matching_secret(candidate: str, digests: Sequence[bytes]) -> int:
    """Index of the credential equal to `candidate`, or -1; every credential is compared, in constant time."""
    digest = hashlib.sha256(candidate.encode("utf-8", "surrogateescape")).digest()
    matched = -1
    for index, expected in enumerate(digests):
        if hmac.compare_digest(digest, expected) and matched < 0:
            matched = index
    return matched


def _authorization(headers: Mapping[str, str], scheme: str) -> str | None:
    """The credentials after `scheme` in Authorization: None when absent, "" when another scheme/empty."""
    value = headers.get("authorization")
    if value is None:
        return None
    parts = value.strip().split(None, 1)
    if len(parts) != 2 or parts[0].lower() != scheme.lower():
        return ""
    return parts[1].strip()


def _missing(challenge: str | None = None) -> AuthFailure:
    return AuthFailure(401, "missing-credentials", "authentication is required", www_authenticate=challenge)


def _verify_bearer(
    verifier: InboundVerifier, headers: Mapping[str, str], query: Mapping[str, str]
) -> AuthOutcome:
    challenge = f"Bearer {_REALM}"
    token = _authorization(headers, "Bearer")
    if token is None:
        token = query.get("access_token")
    if token is None:
        raise _missing(challenge)
    index = _matching_secret(token, verifier.secret_digests) if token else -1
    if index < 0:
        raise AuthFailure(
            401,
            "invalid-credentials",
            "the credentials are not valid",
            www_authenticate=f'{challenge}, error="invalid_token"',
        )
    return AuthOutcome("bearer", credential_index=index)


def _verify_basic(verifier: InboundVerifier, headers: Mapping[str, str]) -> AuthOutcome:
    challenge = f'Basic {_REALM}, charset="UTF-8"'
    encoded = _authorization(headers, "Basic")
    if encoded is None:
        raise _missing(challenge)
    invalid = AuthFailure(
        401, "invalid-credentials", "the credentials are not valid", www_authenticate=challenge
    )
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        raise invalid from None
    user, colon, _password = decoded.partition(":")
    if not colon:
        raise invalid
    index = _matching_secret(decoded, verifier.secret_digests)
    if index < 0:
        raise invalid
    return AuthOutcome("basic", principal=user, credential_index=index)


def _verify_api_key(verifier: InboundVerifier, headers: Mapping[str, str]) -> AuthOutcome:
    key = headers.get(verifier.config.header.lower())
    if key is None:
        raise _missing(API_KEY_CHALLENGE)
    index = _matching_secret(key.strip(), verifier.secret_digests) if key.strip() else -1
    if index < 0:
        raise AuthFailure(
            401, "invalid-credentials", "the credentials are not valid", www_authenticate=API_KEY_CHALLENGE
        )
    return AuthOutcome("apiKey", credential_index=index)


def _verify_hmac(
    verifier: InboundVerifier, headers: Mapping[str, str], body: bytes, now: float
) -> AuthOutcome:
    msg_id, timestamp, signatures = message_headers(headers)
    if not msg_id or not timestamp or not signatures:
        raise _missing(STANDARD_WEBHOOKS_CHALLENGE)
    timestamp = timestamp.strip()
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise AuthFailure(
            401,
            "invalid-timestamp",
            "the webhook timestamp is not a number of seconds",
            www_authenticate=STANDARD_WEBHOOKS_CHALLENGE,
        )
    tolerance = verifier.config.tolerance_seconds
    if abs(now - int(timestamp)) > tolerance:
        raise AuthFailure(
            401,
            "stale-timestamp",
            "the webhook timestamp is outside the accepted window",
            www_authenticate=STANDARD_WEBHOOKS_CHALLENGE,
        )
    matched = matching_key(verifier.hmac_keys, msg_id, timestamp, body, signatures)
    if matched < 0:
        raise AuthFailure(
            401,
            "invalid-signature",
            "the signature is not valid",
            www_authenticate=STANDARD_WEBHOOKS_CHALLENGE,
        )
    return AuthOutcome("hmac", credential_index=matched, message_id=msg_id, replay_ttl=2 * tolerance + 1)


def _verify_github(verifier: InboundVerifier, headers: Mapping[str, str], body: bytes) -> AuthOutcome:
    header = headers.get("x-hub-signature-256")
    if header is None:
        raise _missing(GITHUB_CHALLENGE)
    match = _GITHUB_SIGNATURE_RE.fullmatch(header.strip())
    if match is None:
        raise AuthFailure(
            401, "invalid-signature", "the signature is not valid", www_authenticate=GITHUB_CHALLENGE
        )
    given = bytes.fromhex(match.group(1))
    matched = -1
    for index, key in enumerate(verifier.hmac_keys):
        if hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), given) and matched < 0:
            matched = index
    if matched < 0:
        raise AuthFailure(
            401, "invalid-signature", "the signature is not valid", www_authenticate=GITHUB_CHALLENGE
        )
    return AuthOutcome("github", credential_index=matched, message_id=headers.get("x-github-delivery"))


# Immutable (frozen, and nothing writes its empty claims): one outcome serves every unauthenticated request.
NO_AUTH: Final = AuthOutcome("none")
"""What :meth:`InboundVerifier.verify` answers for every request when the auth type is ``none``."""


def _verify(
    verifier: InboundVerifier,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    now: float,
) -> AuthOutcome:
    config = verifier.config
    if config.type == "none":  # reads no header: nothing to lower
        return NO_AUTH
    lowered = _lower_headers(headers)
    if config.type == "bearer":
        return _verify_bearer(verifier, lowered, query)
    if config.type == "basic":
        return _verify_basic(verifier, lowered)
    if config.type == "apiKey":
        return _verify_api_key(verifier, lowered)
    if config.type == "hmac":
        return _verify_hmac(verifier, lowered, body, now)
    if config.type == "github":
        return _verify_github(verifier, lowered, body)
    from openconnector.consumers.jwt_auth import verify_jwt  # loaded when the verifier was built

    return verify_jwt(verifier, lowered, now)
