"""Inbound webhook authentication (a Consumer's `auth` block) and outbound Standard Webhooks signing.

Pure: the caller resolves Secrets into `InboundAuthConfig.credentials`, passes headers, query, the raw
body and the clock, and maps `AuthFailure` to an HTTP problem response. Nothing here does I/O.

Schemes (several credentials = rotation; any one of them is valid):

- `bearer`: `Authorization: Bearer <token>` (or `?access_token=`, which the CloudEvents HTTP webhook spec
  allows a receiver to accept);
- `basic`: `Authorization: Basic base64(user:password)` against "user:password" credentials;
- `apiKey`: the configured header carries one of the keys;
- `hmac`: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`; the `svix-*`
  spelling is accepted too), HMAC-SHA256 over "{id}.{timestamp}.{raw body}", timestamp tolerance and
  replay refusal through a `ReplayGuard`. Only `v1` (symmetric) signatures are verified; `v1a`
  (Ed25519) entries are ignored like any unknown version;
- `github`: `X-Hub-Signature-256: sha256=<hex>` (GitHub has no signed timestamp, so no replay window);
- `jwt`: OpenConnector's ZGW convention: `iss` must name the Consumer, algorithms are pinned by the
  config, `iat` is required, `exp` defaults to `iat` + 1 h; the leeway is `tolerance_seconds`. The
  minimum key sizes of RFC 7518 are enforced (HS256 ≥ 32 bytes, RSA ≥ 2048 bits). `aud` is not checked
  (the Consumer has no audience setting).

Secrets are compared in constant time (digests of equal length), and `AuthFailure.detail` never says which
part of a credential was wrong. `reason` is a machine code for logs and metrics.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import heapq
import hmac
import ipaddress
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

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
    "IpAllowList",
    "ReplayGuard",
    "client_ip",
    "inbound_auth_problems",
    "ip_allowed",
    "sign_github",
    "sign_standard_webhook",
    "standard_webhook_headers",
    "verify_inbound",
]

AuthType = Literal["none", "bearer", "basic", "apiKey", "hmac", "github", "jwt"]
AUTH_TYPES: Final[tuple[AuthType, ...]] = ("none", "bearer", "basic", "apiKey", "hmac", "github", "jwt")

HMAC_JWT_ALGORITHMS: Final = ("HS256", "HS384", "HS512")
_RSA_JWT_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_JWT_ALGORITHMS: Final[Mapping[str, type[ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
ASYMMETRIC_JWT_ALGORITHMS: Final = (*_RSA_JWT_ALGORITHMS, *_EC_JWT_ALGORITHMS)
SUPPORTED_JWT_ALGORITHMS: Final = (*HMAC_JWT_ALGORITHMS, *ASYMMETRIC_JWT_ALGORITHMS)
_HMAC_MIN_KEY_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_MIN_KEY_BITS: Final = 2048

JWT_DEFAULT_LIFETIME_SECONDS: Final = 3600
"""OpenConnector: a token without `exp` expires one hour after `iat`."""

_WHSEC_PREFIX: Final = "whsec_"
_REALM: Final = 'realm="openconnector"'
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
        # Lists passed by a caller become tuples, so the config stays hashable (verifiers are cached by it).
        object.__setattr__(self, "credentials", tuple(self.credentials))
        object.__setattr__(self, "algorithms", tuple(self.algorithms))


class InboundAuthConfigError(ValueError):
    """The auth configuration cannot work (a server-side problem, not the sender's): map it to 500/503."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


class AuthFailure(Exception):
    """The request is refused. `detail` is safe to show the sender; `reason` is for logs and metrics."""

    def __init__(
        self, status: Literal[401, 403], reason: str, detail: str, *, www_authenticate: str | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status: Literal[401, 403] = status
        self.reason = reason
        self.detail = detail
        self.www_authenticate = www_authenticate
        """The `WWW-Authenticate` challenge to send with a 401, when the scheme has one."""

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
    """hmac with a ReplayGuard: the key remembered; `ReplayGuard.release` it when the message is not
    accepted (e.g. the target failed), so the sender's retry with the same webhook-id is not refused."""
    replay_ttl: float = field(default=0.0, compare=False)
    """Seconds the replay key must be remembered (hmac: 2 × tolerance + 1); 0 without a replay key."""
    claims: Mapping[str, object] = field(default_factory=dict)
    """jwt: the verified claims."""


class ReplayStore(Protocol):
    """Replay-guard ids shared beyond this process (and kept across restarts), checked after the
    in-memory :class:`ReplayGuard`; the JetStream bus provides one backed by a KV bucket."""

    async def claim(self, key: str, ttl: float) -> bool:
        """Remember ``key`` for ``ttl`` seconds; False when it was remembered already (a replay)."""
        ...

    async def release(self, key: str) -> None:
        """Forget ``key`` (its message was not accepted)."""
        ...


class ReplayGuard:
    """A bounded in-memory set of recently seen keys, each with an expiry; pure (the clock is passed in).

    Not thread-safe (the gateway is one asyncio loop). Keys are stored as SHA-256 digests, so a sender's
    long ids cost 32 bytes each. When full, expired keys go first, then the ones closest to expiry; the
    bound trades complete replay protection under a flood for bounded memory.
    """

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()

    def first_seen(self, key: str, *, now: float, ttl: float) -> bool:
        """Remember `key` for `ttl` seconds; False when it was already remembered and not yet expired."""
        digest = self._digest(key)
        self._purge(now)
        expiry = self._expiry.get(digest)
        if expiry is not None and expiry > now:
            return False
        while len(self._expiry) >= self._max_entries:
            self._evict_one()
        self._expiry[digest] = now + ttl
        heapq.heappush(self._heap, (now + ttl, digest))
        return True

    def release(self, key: str) -> None:
        """Forget `key` (its message was not accepted, so a retry must get through)."""
        self._expiry.pop(self._digest(key), None)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            self._drop(*heapq.heappop(self._heap))

    def _evict_one(self) -> None:
        while self._heap:
            expiry, digest = heapq.heappop(self._heap)
            if self._drop(expiry, digest):
                return
        self._expiry.clear()  # unreachable while heap and dict agree; keeps the loop finite regardless

    def _drop(self, expiry: float, digest: bytes) -> bool:
        # The heap may hold entries for keys released or re-remembered since; only drop the live one.
        if self._expiry.get(digest) == expiry:
            del self._expiry[digest]
            return True
        return False


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class _JwtKey:
    index: int
    key: bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    algorithms: frozenset[str]


@dataclass(frozen=True)
class _Verifier:
    config: InboundAuthConfig
    secret_digests: tuple[bytes, ...]
    """bearer/basic/apiKey: SHA-256 of each credential."""
    hmac_keys: tuple[bytes, ...]
    """hmac/github: the HMAC key of each credential."""
    jwt_keys: tuple[_JwtKey, ...]


def _decode_whsec(secret: str) -> bytes:
    text = secret.strip()
    if text.startswith(_WHSEC_PREFIX):
        text = text[len(_WHSEC_PREFIX) :]
    key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    if not key:
        raise ValueError("empty")
    return key


def _load_public_key(credential: str) -> object:
    data = credential.strip().encode("ascii", "replace")
    if not data.startswith(b"-----BEGIN"):
        try:
            data = base64.b64decode(data, validate=True).strip()  # OpenConnector stores base64(PEM)
        except (ValueError, binascii.Error):
            raise ValueError("not a PEM public key or certificate") from None
    if data.startswith(b"-----BEGIN CERTIFICATE-----"):
        return x509.load_pem_x509_certificate(data).public_key()
    if b"PRIVATE KEY-----" in data.split(b"\n", 1)[0]:
        raise ValueError("is a private key; configure the public key (or certificate) instead")
    try:
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ValueError("not a PEM public key or certificate") from None


def _build(config: InboundAuthConfig) -> tuple[_Verifier | None, list[str]]:
    problems: list[str] = []
    if config.type not in AUTH_TYPES:
        return None, [f"type: unknown auth type {config.type!r}; expected one of {', '.join(AUTH_TYPES)}"]
    if config.type != "none" and not config.credentials:
        problems.append("credentials: at least one credential is needed unless type is none")
    if config.tolerance_seconds < 0:
        problems.append("toleranceSeconds: must not be negative")

    secret_digests: list[bytes] = []
    hmac_keys: list[bytes] = []
    jwt_keys: list[_JwtKey] = []
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
                hmac_keys.append(_decode_whsec(credential))
            except (ValueError, binascii.Error):
                problems.append(f"{where}: not a Standard Webhooks secret (whsec_ followed by base64)")
        elif config.type == "github":
            if credential == "":
                problems.append(f"{where}: empty")
            hmac_keys.append(credential.encode("utf-8"))
        elif config.type == "jwt":
            jwt_key = _build_jwt_key(config, index, credential, problems)
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
    verifier = _Verifier(config, tuple(secret_digests), tuple(hmac_keys), tuple(jwt_keys))
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


def _build_jwt_key(
    config: InboundAuthConfig, index: int, credential: str, problems: list[str]
) -> _JwtKey | None:
    where = f"credentials[{index}]"
    symmetric = [a for a in config.algorithms if a in HMAC_JWT_ALGORITHMS]
    if symmetric and not any(a in ASYMMETRIC_JWT_ALGORITHMS for a in config.algorithms):
        secret = credential.encode("utf-8")
        if secret.lstrip().startswith(b"-----BEGIN") or secret.startswith(b"ssh-"):
            problems.append(f"{where}: a public key cannot be an HS* shared secret")
            return None
        for algorithm in symmetric:
            minimum = _HMAC_MIN_KEY_BYTES[algorithm]
            if len(secret) < minimum:
                problems.append(f"{where}: {algorithm} needs a secret of at least {minimum} bytes (RFC 7518)")
                return None
        return _JwtKey(index, secret, frozenset(symmetric))
    asymmetric = [a for a in config.algorithms if a in ASYMMETRIC_JWT_ALGORITHMS]
    if not asymmetric:
        return None  # the algorithm problems are reported on their own
    try:
        public_key = _load_public_key(credential)
    except ValueError as error:
        problems.append(f"{where}: {error}")
        return None
    if isinstance(public_key, rsa.RSAPublicKey):
        usable = frozenset(a for a in asymmetric if a in _RSA_JWT_ALGORITHMS)
        if public_key.key_size < _RSA_MIN_KEY_BITS:
            problems.append(f"{where}: RSA keys need at least {_RSA_MIN_KEY_BITS} bits")
            return None
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        usable = frozenset(
            a
            for a in asymmetric
            if a in _EC_JWT_ALGORITHMS and isinstance(public_key.curve, _EC_JWT_ALGORITHMS[a])
        )
    else:
        problems.append(f"{where}: only RSA and EC public keys are supported")
        return None
    if not usable:
        problems.append(f"{where}: the key does not fit any of the algorithms {', '.join(asymmetric)}")
        return None
    return _JwtKey(index, public_key, usable)


@functools.lru_cache(maxsize=512)
def _verifier_for(config: InboundAuthConfig) -> _Verifier:
    verifier, problems = _build(config)
    if verifier is None:
        raise InboundAuthConfigError(problems)
    return verifier


def inbound_auth_problems(config: InboundAuthConfig) -> list[str]:
    """Every reason the configuration cannot work (empty when usable), for status conditions."""
    return _build(config)[1]


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


def _verify_bearer(verifier: _Verifier, headers: Mapping[str, str], query: Mapping[str, str]) -> AuthOutcome:
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


def _verify_basic(verifier: _Verifier, headers: Mapping[str, str]) -> AuthOutcome:
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


def _verify_api_key(verifier: _Verifier, headers: Mapping[str, str]) -> AuthOutcome:
    key = headers.get(verifier.config.header.lower())
    if key is None:
        raise _missing()
    index = _matching_secret(key.strip(), verifier.secret_digests) if key.strip() else -1
    if index < 0:
        raise AuthFailure(401, "invalid-credentials", "the credentials are not valid")
    return AuthOutcome("apiKey", credential_index=index)


def _standard_webhook_headers(headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    for prefix in ("webhook-", "svix-"):
        if f"{prefix}id" in headers or f"{prefix}signature" in headers:
            return (
                headers.get(f"{prefix}id"),
                headers.get(f"{prefix}timestamp"),
                headers.get(f"{prefix}signature"),
            )
    return None, None, None


def _signed_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode("utf-8", "surrogateescape") + body


def _verify_hmac(
    verifier: _Verifier,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    replay_guard: ReplayGuard | None,
    replay_scope: str,
) -> AuthOutcome:
    msg_id, timestamp, signatures = _standard_webhook_headers(headers)
    if not msg_id or not timestamp or not signatures:
        raise _missing()
    timestamp = timestamp.strip()
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise AuthFailure(401, "invalid-timestamp", "the webhook timestamp is not a number of seconds")
    tolerance = verifier.config.tolerance_seconds
    if abs(now - int(timestamp)) > tolerance:
        raise AuthFailure(401, "stale-timestamp", "the webhook timestamp is outside the accepted window")

    try:
        content = _signed_content(msg_id, timestamp, body)
    except UnicodeEncodeError:
        raise AuthFailure(401, "invalid-signature", "the signature is not valid") from None
    expected = [hmac.new(key, content, hashlib.sha256).digest() for key in verifier.hmac_keys]
    matched = -1
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # unknown versions (v1a asymmetric signatures among them) are skipped, per the spec
        try:
            given = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            continue
        for index, digest in enumerate(expected):
            if hmac.compare_digest(digest, given) and matched < 0:
                matched = index
    if matched < 0:
        raise AuthFailure(401, "invalid-signature", "the signature is not valid")

    replay_key: str | None = None
    if replay_guard is not None:
        # Only verified messages are remembered: unsigned requests must not be able to block real ids.
        replay_key = f"{replay_scope}\x00{msg_id}"
        # A message is acceptable while |now - timestamp| <= tolerance, i.e. at most 2×tolerance from now.
        if not replay_guard.first_seen(replay_key, now=now, ttl=2 * tolerance + 1):
            raise AuthFailure(401, "replayed", "this message was already received")
    return AuthOutcome(
        "hmac",
        credential_index=matched,
        message_id=msg_id,
        replay_key=replay_key,
        replay_ttl=2 * tolerance + 1 if replay_key is not None else 0.0,
    )


def _verify_github(verifier: _Verifier, headers: Mapping[str, str], body: bytes) -> AuthOutcome:
    header = headers.get("x-hub-signature-256")
    if header is None:
        raise _missing()
    match = _GITHUB_SIGNATURE_RE.fullmatch(header.strip())
    if match is None:
        raise AuthFailure(401, "invalid-signature", "the signature is not valid")
    given = bytes.fromhex(match.group(1))
    matched = -1
    for index, key in enumerate(verifier.hmac_keys):
        if hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), given) and matched < 0:
            matched = index
    if matched < 0:
        raise AuthFailure(401, "invalid-signature", "the signature is not valid")
    return AuthOutcome("github", credential_index=matched, message_id=headers.get("x-github-delivery"))


_JWS: Final = jwt.PyJWS()


def _claim_number(claims: Mapping[str, object], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(name)
    return float(value)


def _verify_jwt(verifier: _Verifier, headers: Mapping[str, str], now: float) -> AuthOutcome:
    challenge = f"Bearer {_REALM}"
    token = _authorization(headers, "Bearer")
    if token is None:
        raise _missing(challenge)
    invalid = AuthFailure(
        401, "invalid-token", "the token is not valid", www_authenticate=f'{challenge}, error="invalid_token"'
    )
    if not token:
        raise invalid
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise invalid from None
    algorithm = header.get("alg")
    # The algorithm is pinned: anything not configured ("none", HS256 against an RSA key, …) is refused
    # before any key is touched.
    if not isinstance(algorithm, str) or algorithm not in verifier.config.algorithms:
        raise invalid

    payload: bytes | None = None
    matched = -1
    for candidate in verifier.jwt_keys:
        if algorithm not in candidate.algorithms:
            continue
        try:
            decoded = _JWS.decode_complete(
                token,
                key=candidate.key,
                algorithms=[algorithm],
                options={"verify_signature": True, "enforce_minimum_key_length": True},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError:
            raise invalid from None
        payload, matched = decoded["payload"], candidate.index
        break
    if payload is None:
        raise invalid

    try:
        claims = json.loads(payload)
    except ValueError:
        raise invalid from None
    if not isinstance(claims, dict):
        raise invalid
    return _check_jwt_claims(verifier.config, claims, now, matched, challenge)


def _check_jwt_claims(
    config: InboundAuthConfig, claims: dict[str, object], now: float, matched: int, challenge: str
) -> AuthOutcome:
    rejected = AuthFailure(
        401,
        "invalid-claims",
        "the token's claims are not acceptable",
        www_authenticate=f'{challenge}, error="invalid_token"',
    )
    leeway = config.tolerance_seconds
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not hmac.compare_digest(issuer.encode(), config.issuer.encode()):
        raise rejected
    try:
        issued_at = _claim_number(claims, "iat")
        expires = _claim_number(claims, "exp")
        not_before = _claim_number(claims, "nbf")
    except ValueError:
        raise rejected from None
    if issued_at is None or issued_at > now + leeway:
        raise rejected
    if not_before is not None and now + leeway < not_before:
        raise rejected
    if expires is None:
        expires = issued_at + JWT_DEFAULT_LIFETIME_SECONDS
    if now > expires + leeway:
        raise AuthFailure(
            401,
            "expired-token",
            "the token has expired",
            www_authenticate=f'{challenge}, error="invalid_token"',
        )
    return AuthOutcome("jwt", principal=issuer, credential_index=matched, claims=claims)


def verify_inbound(
    config: InboundAuthConfig,
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    now: float,
    replay_guard: ReplayGuard | None,
    replay_scope: str = "",
) -> AuthOutcome:
    """Authenticate one inbound request.

    `headers` may be any mapping (names are matched case-insensitively); `body` is the raw request body;
    `now` is unix seconds. `replay_scope` namespaces webhook-ids in a ReplayGuard shared between Consumers.
    Raises AuthFailure (refused) or InboundAuthConfigError (the configuration cannot work).
    """
    verifier = _verifier_for(config)
    lowered = _lower_headers(headers)
    if config.type == "none":
        return AuthOutcome("none")
    if config.type == "bearer":
        return _verify_bearer(verifier, lowered, query)
    if config.type == "basic":
        return _verify_basic(verifier, lowered)
    if config.type == "apiKey":
        return _verify_api_key(verifier, lowered)
    if config.type == "hmac":
        return _verify_hmac(verifier, lowered, body, now, replay_guard, replay_scope)
    if config.type == "github":
        return _verify_github(verifier, lowered, body)
    return _verify_jwt(verifier, lowered, now)


# --------------------------------------------------------------------------- outbound signing


def sign_standard_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for one secret; ValueError on a malformed secret."""
    try:
        key = _decode_whsec(secret)
    except (ValueError, binascii.Error):
        raise ValueError("not a Standard Webhooks secret (whsec_ followed by base64)") from None
    digest = hmac.new(key, _signed_content(msg_id, str(timestamp), body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def standard_webhook_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers; several secrets (rotation) give space-separated signatures."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign_standard_webhook(s, msg_id, timestamp, body) for s in secrets),
    }


def sign_github(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value (`sha256=<hex>`)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- client address allow-lists

_IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_address(text: str) -> _IpAddress | None:
    """A peer or X-Forwarded-For address (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `fe80::1%eth0`)."""
    host = text.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        host = host[1:end]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.partition("%")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d
    return address


def _parse_networks(cidrs: Sequence[str], field_name: str) -> tuple[_IpNetwork, ...]:
    networks: list[_IpNetwork] = []
    for index, cidr in enumerate(cidrs):
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{field_name}[{index}]: {cidr!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def _in_any(address: _IpAddress, networks: Sequence[_IpNetwork]) -> bool:
    return any(address in network for network in networks)


class IpAllowList:
    """Allowed client ranges and trusted proxies, parsed once. An empty allow-list allows everyone."""

    __slots__ = ("allowed", "trusted_proxies")

    def __init__(self, allowed_cidrs: Sequence[str], trusted_proxies: Sequence[str] = ()) -> None:
        """ValueError names the first entry that is not an address or CIDR range."""
        self.allowed = _parse_networks(allowed_cidrs, "ips")
        self.trusted_proxies = _parse_networks(trusted_proxies, "trustedProxies")

    def client_address(self, remote: str, forwarded_for: str | None) -> _IpAddress | None:
        """The client: the peer, or — only when the peer is a trusted proxy — the right-most X-Forwarded-For
        entry that is not itself a trusted proxy (walking right to left). None when unparseable."""
        current = _parse_address(remote)
        if current is None or not _in_any(current, self.trusted_proxies) or not forwarded_for:
            return current
        for entry in reversed(forwarded_for.split(",")):
            hop = _parse_address(entry)
            if hop is None:
                return current  # garbage left of a trusted hop: trust stops at that hop
            current = hop
            if not _in_any(hop, self.trusted_proxies):
                return hop
        return current  # every hop is a trusted proxy: the left-most one is the client

    def allows(self, remote: str, forwarded_for: str | None = None) -> bool:
        if not self.allowed:
            return True
        address = self.client_address(remote, forwarded_for)
        return address is not None and _in_any(address, self.allowed)

    def require(self, remote: str, forwarded_for: str | None = None) -> None:
        """Raise AuthFailure 403 `ip-not-allowed` unless the client address is allowed."""
        if not self.allows(remote, forwarded_for):
            raise AuthFailure(403, "ip-not-allowed", "requests from this address are not allowed")


@functools.lru_cache(maxsize=256)
def _allow_list(allowed_cidrs: tuple[str, ...], trusted_proxies: tuple[str, ...]) -> IpAllowList:
    return IpAllowList(allowed_cidrs, trusted_proxies)


def client_ip(remote: str, forwarded_for: str | None, trusted_proxies: Sequence[str]) -> str:
    """The client address as text (see IpAllowList.client_address); the peer text itself if unparseable."""
    address = _allow_list((), tuple(trusted_proxies)).client_address(remote, forwarded_for)
    return remote if address is None else str(address)


def ip_allowed(
    remote: str, allowed_cidrs: Sequence[str], forwarded_for: str | None, trusted_proxies: Sequence[str]
) -> bool:
    """True when the client address is in one of `allowed_cidrs` (or the list is empty). ValueError on a
    malformed CIDR; prefer validating with IpAllowList at configuration time."""
    return _allow_list(tuple(allowed_cidrs), tuple(trusted_proxies)).allows(remote, forwarded_for)
