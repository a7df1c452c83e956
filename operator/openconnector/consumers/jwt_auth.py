"""JWT verification for the ``jwt`` auth type (PyJWT, cryptography): keys parsed at compile time,
tokens verified with pinned algorithms, claims checked by OpenConnector's ZGW convention.

Imported by :mod:`openconnector.consumers.verifiers` when the first jwt Consumer is compiled,
so a gateway without one does not load PyJWT and cryptography.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from openconnector.consumers.verifiers import (
    _HMAC_MIN_KEY_BYTES,
    _REALM,
    _RSA_JWT_ALGORITHMS,
    _RSA_MIN_KEY_BITS,
    ASYMMETRIC_JWT_ALGORITHMS,
    HMAC_JWT_ALGORITHMS,
    JWT_DEFAULT_LIFETIME_SECONDS,
    AuthFailure,
    AuthOutcome,
    InboundAuthConfig,
    InboundVerifier,
    _authorization,
    _missing,
)

__all__ = ["JwtKey", "build_jwt_key", "load_public_key", "verify_jwt"]

_EC_JWT_ALGORITHMS: Final[Mapping[str, type[ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


@dataclass(frozen=True)
class JwtKey:
    index: int
    key: bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    algorithms: frozenset[str]


def load_public_key(credential: str) -> object:
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


def build_jwt_key(
    config: InboundAuthConfig, index: int, credential: str, problems: list[str]
) -> JwtKey | None:
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
        return JwtKey(index, secret, frozenset(symmetric))
    asymmetric = [a for a in config.algorithms if a in ASYMMETRIC_JWT_ALGORITHMS]
    if not asymmetric:
        return None  # the algorithm problems are reported on their own
    try:
        public_key = load_public_key(credential)
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
    return JwtKey(index, public_key, usable)


_JWS: Final = jwt.PyJWS()
_INVALID_TOKEN: Final = "the token is not valid"


def _claim_number(claims: Mapping[str, object], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(name)
    try:  # an int beyond float range (`"exp": 10**400`) is refused, not an OverflowError
        number = float(value)
    except OverflowError:
        raise ValueError(name) from None
    if not math.isfinite(number):
        raise ValueError(name)
    return number


def verify_jwt(verifier: InboundVerifier, headers: Mapping[str, str], now: float) -> AuthOutcome:
    challenge = f"Bearer {_REALM}"
    token = _authorization(headers, "Bearer")
    if token is None:
        raise _missing(challenge)
    invalid = AuthFailure(
        401, "invalid-token", _INVALID_TOKEN, www_authenticate=f'{challenge}, error="invalid_token"'
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
    except (ValueError, RecursionError):
        raise invalid from None
    if not isinstance(claims, dict):
        raise invalid
    return _check_jwt_claims(verifier.config, claims, now, matched, challenge)


def _check_jwt_claims(
    config: InboundAuthConfig, claims: dict[str, object], now: float, matched: int, challenge: str
) -> AuthOutcome:
    # The detail is the same as for a bad signature: a refusal never says which claim failed.
    rejected = AuthFailure(
        401, "invalid-claims", _INVALID_TOKEN, www_authenticate=f'{challenge}, error="invalid_token"'
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
            401, "expired-token", _INVALID_TOKEN, www_authenticate=f'{challenge}, error="invalid_token"'
        )
    return AuthOutcome("jwt", principal=issuer, credential_index=matched, claims=claims)
