"""Consumer authentication (openconnector.consumers): verifiers, replay guard, Standard Webhooks signing
and client address allow-lists."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from tests.support.signing import sign_github

from openconnector.consumers.allow_list import IpAllowList, TrustedProxies
from openconnector.consumers.replay import ReplayGuard, admit
from openconnector.consumers.standard_webhooks import (
    decode_secret,
    sign,
    standard_webhook_headers,
)
from openconnector.consumers.verifiers import (
    AuthFailure,
    AuthOutcome,
    InboundAuthConfig,
    InboundAuthConfigError,
    compile_verifier,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "webhooks" / "vectors.json").read_text()
)
SW = VECTORS["standardWebhooks"]
GH = VECTORS["github"]
SW_BODY = SW["payload"].encode()
SW_NOW = float(SW["timestamp"])

# Every public detail text; none of them says which part of a credential was wrong.
SAFE_DETAILS = {
    "authentication is required",
    "the credentials are not valid",
    "the signature is not valid",
    "the webhook timestamp is not a number of seconds",
    "the webhook timestamp is outside the accepted window",
    "this message was already received",
    "the token is not valid",  # every JWT refusal: it never says which claim failed
}


def verify(
    config: InboundAuthConfig,
    headers: Mapping[str, str] | None = None,
    *,
    body: bytes = b"",
    now: float = SW_NOW,
    query: Mapping[str, str] | None = None,
    guard: ReplayGuard | None = None,
    scope: str = "",
) -> AuthOutcome:
    outcome = compile_verifier(config).verify(headers=headers or {}, query=query or {}, body=body, now=now)
    if guard is None:
        return outcome
    return asyncio.run(admit(guard, outcome, scope=scope, now=now))


def inbound_auth_problems(config: InboundAuthConfig) -> list[str]:
    """Every reason the configuration cannot work (empty when it compiles)."""
    try:
        compile_verifier(config)
    except InboundAuthConfigError as error:
        return list(error.problems)
    return []


def sign_standard_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    return sign(decode_secret(secret), msg_id, timestamp, body)


def refused(
    config: InboundAuthConfig, headers: Mapping[str, str] | None = None, **kwargs: Any
) -> AuthFailure:
    with pytest.raises(AuthFailure) as caught:
        verify(config, headers, **kwargs)
    failure = caught.value
    assert failure.detail in SAFE_DETAILS
    for credential in config.credentials:
        assert credential not in failure.detail
    return failure


# --------------------------------------------------------------------------- Standard Webhooks (hmac)

HMAC = InboundAuthConfig("hmac", (SW["secret"],))


def sw_headers(signature: str = SW["signature"], timestamp: str = str(SW["timestamp"])) -> dict[str, str]:
    return {"webhook-id": SW["id"], "webhook-timestamp": timestamp, "webhook-signature": signature}


def test_standard_webhooks_published_vector_signs_exactly() -> None:
    assert sign_standard_webhook(SW["secret"], SW["id"], SW["timestamp"], SW_BODY) == SW["signature"]


def test_standard_webhooks_published_vector_verifies() -> None:
    outcome = verify(HMAC, sw_headers(), body=SW_BODY)
    assert outcome == AuthOutcome("hmac", credential_index=0, message_id=SW["id"])


def test_header_names_are_case_insensitive_and_svix_spelling_is_accepted() -> None:
    upper = {name.upper(): value for name, value in sw_headers().items()}
    assert verify(HMAC, upper, body=SW_BODY).scheme == "hmac"
    svix = {name.replace("webhook-", "svix-"): value for name, value in sw_headers().items()}
    assert verify(HMAC, svix, body=SW_BODY).message_id == SW["id"]


def test_any_one_valid_signature_in_the_list_is_enough() -> None:
    listed = " ".join([*SW["otherSignatures"], SW["signature"], "v1,not-base64!", "garbage"])
    assert verify(HMAC, sw_headers(listed), body=SW_BODY).credential_index == 0


def test_secret_without_whsec_prefix_works_like_the_reference_library() -> None:
    bare = InboundAuthConfig("hmac", (SW["secret"].removeprefix("whsec_"),))
    assert verify(bare, sw_headers(), body=SW_BODY).scheme == "hmac"


@pytest.mark.parametrize(
    "body",
    [
        SW_BODY + b" ",
        b'{"test": 2432232315}',
        b'{"test":2432232314}',
    ],  # re-serialised JSON is a different body
)
def test_tampered_body_is_refused(body: bytes) -> None:
    failure = refused(HMAC, sw_headers(), body=body)
    assert (failure.status, failure.reason) == (401, "invalid-signature")


def test_tampered_signature_and_foreign_signatures_are_refused() -> None:
    assert refused(HMAC, sw_headers(SW["tamperedSignature"]), body=SW_BODY).reason == "invalid-signature"
    assert (
        refused(HMAC, sw_headers(" ".join(SW["otherSignatures"])), body=SW_BODY).reason == "invalid-signature"
    )
    v2_only = SW["signature"].replace("v1,", "v2,")
    assert refused(HMAC, sw_headers(v2_only), body=SW_BODY).reason == "invalid-signature"


def test_signature_over_another_id_or_timestamp_is_refused() -> None:
    other_id = {**sw_headers(), "webhook-id": "msg_other"}
    assert refused(HMAC, other_id, body=SW_BODY).reason == "invalid-signature"
    shifted = sw_headers(timestamp=str(SW["timestamp"] + 1))
    assert refused(HMAC, shifted, body=SW_BODY).reason == "invalid-signature"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_standard_webhooks_header_is_missing_credentials(missing: str) -> None:
    headers = sw_headers()
    del headers[missing]
    failure = refused(HMAC, headers, body=SW_BODY)
    assert (failure.status, failure.reason) == (401, "missing-credentials")


@pytest.mark.parametrize("timestamp", ["hello", "1614265330.5", "-1614265330", ""])
def test_malformed_timestamp_is_refused(timestamp: str) -> None:
    failure = refused(HMAC, sw_headers(timestamp=timestamp), body=SW_BODY)
    assert failure.reason in {"invalid-timestamp", "missing-credentials"}
    assert failure.status == 401


@pytest.mark.parametrize(
    ("offset", "accepted"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_timestamp_tolerance_is_five_minutes_either_way(offset: int, accepted: bool) -> None:
    now = SW_NOW + offset
    if accepted:
        assert verify(HMAC, sw_headers(), body=SW_BODY, now=now).scheme == "hmac"
    else:
        assert refused(HMAC, sw_headers(), body=SW_BODY, now=now).reason == "stale-timestamp"


def test_tolerance_is_configurable() -> None:
    strict = InboundAuthConfig("hmac", (SW["secret"],), tolerance_seconds=10)
    assert refused(strict, sw_headers(), body=SW_BODY, now=SW_NOW + 11).reason == "stale-timestamp"


def test_rotated_secrets_both_verify_and_report_which_matched() -> None:
    new_secret = "whsec_" + base64.b64encode(b"n" * 32).decode()
    rotated = InboundAuthConfig("hmac", (new_secret, SW["secret"]))
    assert verify(rotated, sw_headers(), body=SW_BODY).credential_index == 1  # the old one, still valid
    signed_new = sign_standard_webhook(new_secret, SW["id"], SW["timestamp"], SW_BODY)
    assert verify(rotated, sw_headers(signed_new), body=SW_BODY).credential_index == 0
    retired = InboundAuthConfig("hmac", (new_secret,))
    assert refused(retired, sw_headers(), body=SW_BODY).reason == "invalid-signature"


def test_outbound_headers_with_two_secrets_verify_against_either() -> None:
    old = SW["secret"]
    new = "whsec_" + base64.b64encode(b"k" * 24).decode()
    headers = standard_webhook_headers([new, old], "msg_1", 1_700_000_000, b"{}")
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == "1700000000"
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        config = InboundAuthConfig("hmac", (secret,))
        assert verify(config, headers, body=b"{}", now=1_700_000_000).message_id == "msg_1"


def test_sign_standard_webhook_rejects_a_malformed_secret() -> None:
    with pytest.raises(ValueError, match="not base64"):
        sign_standard_webhook("whsec_not base64!", "id", 1, b"")
    with pytest.raises(ValueError, match="at least one signing secret"):
        standard_webhook_headers([], "id", 1, b"")


def test_replayed_message_id_is_refused_within_the_window() -> None:
    guard = ReplayGuard()
    first = verify(HMAC, sw_headers(), body=SW_BODY, guard=guard)
    assert first.replay_key is not None
    failure = refused(HMAC, sw_headers(), body=SW_BODY, guard=guard, now=SW_NOW + 1)
    assert (failure.status, failure.reason) == (401, "replayed")


def test_a_retry_with_the_same_id_and_a_fresh_signature_is_still_a_replay() -> None:
    guard = ReplayGuard()
    verify(HMAC, sw_headers(), body=SW_BODY, guard=guard)
    later = SW["timestamp"] + 60
    resigned = sign_standard_webhook(SW["secret"], SW["id"], later, SW_BODY)
    failure = refused(HMAC, sw_headers(resigned, str(later)), body=SW_BODY, guard=guard, now=later)
    assert failure.reason == "replayed"


def test_released_replay_key_lets_the_senders_retry_through() -> None:
    guard = ReplayGuard()
    outcome = verify(HMAC, sw_headers(), body=SW_BODY, guard=guard)
    assert outcome.replay_key is not None
    guard.release(outcome.replay_key)  # e.g. the target was down and the gateway answered 503
    assert verify(HMAC, sw_headers(), body=SW_BODY, guard=guard, now=SW_NOW + 5).scheme == "hmac"


def test_unverified_requests_cannot_poison_the_replay_guard() -> None:
    guard = ReplayGuard()
    refused(HMAC, sw_headers(SW["tamperedSignature"]), body=SW_BODY, guard=guard)
    assert len(guard) == 0
    assert verify(HMAC, sw_headers(), body=SW_BODY, guard=guard).scheme == "hmac"


def test_replay_scope_separates_consumers_sharing_a_guard() -> None:
    guard = ReplayGuard()
    verify(HMAC, sw_headers(), body=SW_BODY, guard=guard, scope="ns/a")
    assert verify(HMAC, sw_headers(), body=SW_BODY, guard=guard, scope="ns/b").scheme == "hmac"
    assert refused(HMAC, sw_headers(), body=SW_BODY, guard=guard, scope="ns/a").reason == "replayed"


# --------------------------------------------------------------------------- ReplayGuard


def test_replay_guard_forgets_after_the_ttl() -> None:
    guard = ReplayGuard()
    assert guard.first_seen("a", now=100.0, ttl=10.0)
    assert not guard.first_seen("a", now=109.9, ttl=10.0)
    assert guard.first_seen("a", now=110.0, ttl=10.0)
    assert len(guard) == 1


def test_replay_guard_is_bounded_and_evicts_the_soonest_to_expire() -> None:
    guard = ReplayGuard(max_entries=3)
    for index, key in enumerate("abcde"):
        assert guard.first_seen(key, now=float(index), ttl=100.0)
    assert len(guard) == 3
    assert guard.first_seen("a", now=5.0, ttl=100.0)  # evicted, so new again
    assert not guard.first_seen("e", now=5.0, ttl=100.0)  # the newest survived


def test_replay_guard_purges_expired_entries_first() -> None:
    guard = ReplayGuard(max_entries=2)
    guard.first_seen("short", now=0.0, ttl=1.0)
    guard.first_seen("long", now=0.0, ttl=100.0)
    assert guard.first_seen("new", now=50.0, ttl=100.0)
    assert not guard.first_seen("long", now=51.0, ttl=100.0)


def test_replay_guard_rejects_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        ReplayGuard(max_entries=0)


# --------------------------------------------------------------------------- GitHub

GITHUB = InboundAuthConfig("github", (GH["secret"],))


def test_github_published_vector_signs_and_verifies() -> None:
    body = GH["payload"].encode()
    assert sign_github(GH["secret"], body) == GH["signature"]
    headers = {
        "X-Hub-Signature-256": GH["signature"],
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    outcome = verify(GITHUB, headers, body=body)
    assert outcome == AuthOutcome(
        "github", credential_index=0, message_id="72d3162e-cc78-11e3-81ab-4c9367dc0958"
    )


def test_github_uppercase_hex_is_accepted() -> None:
    headers = {"x-hub-signature-256": "sha256=" + GH["signature"].removeprefix("sha256=").upper()}
    assert verify(GITHUB, headers, body=GH["payload"].encode()).scheme == "github"


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({"X-Hub-Signature-256": GH["signature"]}, b"Hello, World?", "invalid-signature"),
        ({"X-Hub-Signature-256": GH["signature"][:-1] + "8"}, GH["payload"].encode(), "invalid-signature"),
        ({"X-Hub-Signature-256": GH["signature"][:30]}, GH["payload"].encode(), "invalid-signature"),
        ({"X-Hub-Signature": "sha1=" + "0" * 40}, GH["payload"].encode(), "missing-credentials"),
        ({"X-Hub-Signature-256": "sha1=" + "0" * 64}, GH["payload"].encode(), "invalid-signature"),
        ({}, GH["payload"].encode(), "missing-credentials"),
    ],
)
def test_github_bad_signatures_are_refused(headers: dict[str, str], body: bytes, reason: str) -> None:
    failure = refused(GITHUB, headers, body=body)
    assert (failure.status, failure.reason) == (401, reason)


def test_github_secret_rotation() -> None:
    rotated = InboundAuthConfig("github", ("new secret", GH["secret"]))
    headers = {"X-Hub-Signature-256": GH["signature"]}
    assert verify(rotated, headers, body=GH["payload"].encode()).credential_index == 1


# --------------------------------------------------------------------------- bearer, basic, apiKey, none

BEARER = InboundAuthConfig("bearer", ("token-new", "token-old"))


def test_bearer_token_matches_any_configured_token() -> None:
    assert verify(BEARER, {"Authorization": "Bearer token-new"}).credential_index == 0
    assert verify(BEARER, {"authorization": "bearer   token-old "}).credential_index == 1
    assert verify(BEARER, {"AUTHORIZATION": "BEARER token-new"}).scheme == "bearer"


def test_bearer_access_token_query_parameter_is_accepted_on_receive() -> None:
    assert verify(BEARER, {}, query={"access_token": "token-old"}).credential_index == 1


def test_bearer_failures() -> None:
    missing = refused(BEARER, {})
    assert (missing.status, missing.reason) == (401, "missing-credentials")
    assert missing.www_authenticate == 'Bearer realm="openconnector"'
    for headers in (
        {"Authorization": "Bearer token-ne"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic x"},
    ):
        failure = refused(BEARER, headers)
        assert (failure.status, failure.reason) == (401, "invalid-credentials")
        assert failure.www_authenticate == 'Bearer realm="openconnector", error="invalid_token"'
    assert refused(BEARER, {}, query={"access_token": "nope"}).reason == "invalid-credentials"


BASIC = InboundAuthConfig("basic", ("alice:s3cret:with:colons", "bob:pw"))


def basic_header(user_password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user_password.encode()).decode()}


def test_basic_credentials() -> None:
    outcome = verify(BASIC, basic_header("alice:s3cret:with:colons"))
    assert (outcome.principal, outcome.credential_index) == ("alice", 0)
    assert verify(BASIC, basic_header("bob:pw")).principal == "bob"


@pytest.mark.parametrize(
    "headers",
    [
        basic_header("alice:wrong"),
        basic_header("mallory:pw"),
        basic_header("bob"),
        {"Authorization": "Basic not*base64"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},
        {"Authorization": "Bearer bob:pw"},
    ],
)
def test_basic_failures_are_invalid_credentials(headers: dict[str, str]) -> None:
    failure = refused(BASIC, headers)
    assert (failure.status, failure.reason) == (401, "invalid-credentials")
    assert failure.www_authenticate == 'Basic realm="openconnector", charset="UTF-8"'


def test_basic_missing_header() -> None:
    assert refused(BASIC, {}).reason == "missing-credentials"


API_KEY = InboundAuthConfig("apiKey", ("key-1", "key-2"), header="X-Consumer-Key")


def test_api_key_in_the_configured_header() -> None:
    assert verify(API_KEY, {"x-consumer-key": "key-2"}).credential_index == 1
    assert refused(API_KEY, {"X-API-Key": "key-1"}).reason == "missing-credentials"
    assert refused(API_KEY, {"X-Consumer-Key": "key-3"}).reason == "invalid-credentials"
    assert refused(API_KEY, {"X-Consumer-Key": ""}).reason == "invalid-credentials"


def test_none_accepts_everything() -> None:
    assert verify(InboundAuthConfig("none"), {}) == AuthOutcome("none")


# --------------------------------------------------------------------------- JWT

NOW = 1_750_000_000.0
HS_SECRET = "a-shared-secret-of-at-least-32-bytes!"
ISSUER = "zaaksysteem"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "iat": int(NOW) - 10, "client_id": ISSUER, "user_id": "u1"}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


HS_CONFIG = InboundAuthConfig("jwt", (HS_SECRET,), algorithms=("HS256",), issuer=ISSUER)


def test_jwt_hs256_zgw_token() -> None:
    token = jwt.encode(claims(), HS_SECRET, algorithm="HS256")
    outcome = verify(HS_CONFIG, bearer(token), now=NOW)
    assert (outcome.scheme, outcome.principal, outcome.credential_index) == ("jwt", ISSUER, 0)
    assert outcome.claims["user_id"] == "u1"


def test_jwt_wrong_issuer_is_refused() -> None:
    token = jwt.encode(claims(iss="someone-else"), HS_SECRET, algorithm="HS256")
    failure = refused(HS_CONFIG, bearer(token), now=NOW)
    assert (failure.status, failure.reason) == (401, "invalid-claims")
    assert (
        refused(HS_CONFIG, bearer(jwt.encode(claims(iss=None), HS_SECRET)), now=NOW).reason
        == "invalid-claims"
    )


def test_jwt_alg_none_is_refused() -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        assert refused(HS_CONFIG, bearer(token), now=NOW).reason == "invalid-token"
    assert "algorithms" in " ".join(
        inbound_auth_problems(InboundAuthConfig("jwt", (HS_SECRET,), algorithms=("none",), issuer=ISSUER))
    )


def test_jwt_algorithm_confusion_hs256_signed_with_the_rsa_public_key_is_refused(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    pem = public_pem(rsa_key)
    config = InboundAuthConfig("jwt", (pem,), algorithms=("RS256",), issuer=ISSUER)
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    signature = b64url(hmac.new(pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    failure = refused(config, bearer(f"{header}.{payload}.{signature}"), now=NOW)
    assert (failure.status, failure.reason) == (401, "invalid-token")
    # And the configuration that would make it possible is refused up front.
    mixed = InboundAuthConfig("jwt", (pem,), algorithms=("RS256", "HS256"), issuer=ISSUER)
    assert any("HS* cannot be combined" in problem for problem in inbound_auth_problems(mixed))
    with pytest.raises(InboundAuthConfigError):
        verify(mixed, bearer(f"{header}.{payload}.{signature}"), now=NOW)


@pytest.mark.parametrize(
    ("exp_offset", "reason"),
    [(-301, "expired-token"), (-299, None), (3600, None)],
)
def test_jwt_exp_is_enforced_with_leeway(exp_offset: int, reason: str | None) -> None:
    token = jwt.encode(claims(iat=int(NOW) - 4000, exp=int(NOW) + exp_offset), HS_SECRET, algorithm="HS256")
    if reason is None:
        assert verify(HS_CONFIG, bearer(token), now=NOW).scheme == "jwt"
    else:
        assert refused(HS_CONFIG, bearer(token), now=NOW).reason == reason


@pytest.mark.parametrize(("iat_age", "accepted"), [(3600 + 299, True), (3600 + 301, False)])
def test_jwt_without_exp_expires_an_hour_after_iat(iat_age: int, accepted: bool) -> None:
    token = jwt.encode(claims(iat=int(NOW) - iat_age), HS_SECRET, algorithm="HS256")
    if accepted:
        assert verify(HS_CONFIG, bearer(token), now=NOW).scheme == "jwt"
    else:
        assert refused(HS_CONFIG, bearer(token), now=NOW).reason == "expired-token"


@pytest.mark.parametrize(
    "token_claims",
    [
        claims(iat=None),
        claims(iat="yesterday"),
        claims(iat=True),
        claims(iat=int(NOW) + 301),  # issued in the future beyond the leeway
        claims(nbf=int(NOW) + 301),
        claims(exp="never"),
    ],
)
def test_jwt_claims_that_are_missing_or_malformed_are_refused(token_claims: dict[str, Any]) -> None:
    token = jwt.encode(token_claims, HS_SECRET, algorithm="HS256")
    failure = refused(HS_CONFIG, bearer(token), now=NOW)
    assert (failure.status, failure.reason) == (401, "invalid-claims")


def test_jwt_token_problems_are_invalid_token() -> None:
    good = jwt.encode(claims(), HS_SECRET, algorithm="HS256")
    tampered = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    other_secret = jwt.encode(claims(), "another-shared-secret-of-32-bytes!!", algorithm="HS256")
    hs512 = jwt.encode(claims(), HS_SECRET * 2, algorithm="HS512")
    for token in (tampered, other_secret, hs512, "not.a.token", "garbage", good + ".extra"):
        failure = refused(HS_CONFIG, bearer(token), now=NOW)
        assert (failure.status, failure.reason) == (401, "invalid-token"), token
        assert failure.www_authenticate == 'Bearer realm="openconnector", error="invalid_token"'
    assert refused(HS_CONFIG, {}, now=NOW).reason == "missing-credentials"
    assert refused(HS_CONFIG, {"Authorization": "Basic abc"}, now=NOW).reason == "invalid-token"


def test_jwt_non_object_payload_is_invalid_token() -> None:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(b"[1,2]")
    signature = b64url(hmac.new(HS_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert refused(HS_CONFIG, bearer(f"{header}.{payload}.{signature}"), now=NOW).reason == "invalid-token"


def test_jwt_rs256_and_ps256_with_a_pem_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    config = InboundAuthConfig("jwt", (public_pem(rsa_key),), algorithms=("RS256", "PS256"), issuer=ISSUER)
    for algorithm in ("RS256", "PS256"):
        token = jwt.encode(claims(), rsa_key, algorithm=algorithm)
        assert verify(config, bearer(token), now=NOW).principal == ISSUER
    rs512 = jwt.encode(claims(), rsa_key, algorithm="RS512")
    assert refused(config, bearer(rs512), now=NOW).reason == "invalid-token"  # not pinned


def test_jwt_openconnector_base64_pem_and_certificates_are_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    encoded = base64.b64encode(public_pem(rsa_key).encode()).decode()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rsa_key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2034, 1, 1, tzinfo=dt.UTC))
        .sign(rsa_key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    for credential in (encoded, cert_pem):
        config = InboundAuthConfig("jwt", (credential,), algorithms=("RS256",), issuer=ISSUER)
        assert verify(config, bearer(token), now=NOW).scheme == "jwt"


def test_jwt_key_rotation_tries_every_key(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    config = InboundAuthConfig(
        "jwt", (public_pem(other), public_pem(rsa_key)), algorithms=("RS256",), issuer=ISSUER
    )
    assert (
        verify(config, bearer(jwt.encode(claims(), rsa_key, algorithm="RS256")), now=NOW).credential_index
        == 1
    )
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused(config, bearer(jwt.encode(claims(), stranger, algorithm="RS256")), now=NOW).reason == (
        "invalid-token"
    )


def test_jwt_es256_and_key_type_matching(
    ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    config = InboundAuthConfig(
        "jwt", (public_pem(rsa_key), public_pem(ec_key)), algorithms=("RS256", "ES256"), issuer=ISSUER
    )
    assert (
        verify(config, bearer(jwt.encode(claims(), ec_key, algorithm="ES256")), now=NOW).credential_index == 1
    )
    assert (
        verify(config, bearer(jwt.encode(claims(), rsa_key, algorithm="RS256")), now=NOW).credential_index
        == 0
    )
    rsa_only = InboundAuthConfig("jwt", (public_pem(rsa_key),), algorithms=("RS256",), issuer=ISSUER)
    assert refused(rsa_only, bearer(jwt.encode(claims(), ec_key, algorithm="ES256")), now=NOW).reason == (
        "invalid-token"
    )


def test_jwt_configuration_problems(rsa_key: rsa.RSAPrivateKey) -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cases: list[tuple[InboundAuthConfig, str]] = [
        (InboundAuthConfig("jwt", ("short",), issuer=ISSUER), "HS256 needs a secret of at least 32 bytes"),
        (InboundAuthConfig("jwt", (HS_SECRET,), algorithms=("HS512",), issuer=ISSUER), "at least 64 bytes"),
        (InboundAuthConfig("jwt", (public_pem(rsa_key),), issuer=ISSUER), "cannot be an HS* shared secret"),
        (InboundAuthConfig("jwt", (HS_SECRET,), issuer=""), "issuer"),
        (InboundAuthConfig("jwt", (HS_SECRET,), algorithms=(), issuer=ISSUER), "at least one JWT algorithm"),
        (
            InboundAuthConfig("jwt", (HS_SECRET,), algorithms=("RS256",), issuer=ISSUER),
            "not a PEM public key",
        ),
        (
            InboundAuthConfig("jwt", (public_pem(small_rsa),), algorithms=("RS256",), issuer=ISSUER),
            "at least 2048 bits",
        ),
        (InboundAuthConfig("jwt", (private_pem,), algorithms=("RS256",), issuer=ISSUER), "is a private key"),
        (
            InboundAuthConfig("jwt", (public_pem(p384),), algorithms=("ES256",), issuer=ISSUER),
            "does not fit any of the algorithms",
        ),
        (InboundAuthConfig("jwt", (), issuer=ISSUER), "at least one credential"),
    ]
    for config, fragment in cases:
        problems = inbound_auth_problems(config)
        assert any(fragment in problem for problem in problems), (fragment, problems)
        with pytest.raises(InboundAuthConfigError):
            verify(config, bearer("x.y.z"), now=NOW)


def test_other_configuration_problems() -> None:
    assert inbound_auth_problems(InboundAuthConfig("hmac", ("whsec_***",))) == [
        "credentials[0]: not a Standard Webhooks secret (whsec_ followed by base64)"
    ]
    assert inbound_auth_problems(InboundAuthConfig("basic", ("no-colon",))) == [
        "credentials[0]: a basic credential is 'user:password'"
    ]
    assert inbound_auth_problems(InboundAuthConfig("bearer", ())) == [
        "credentials: at least one credential is needed unless type is none"
    ]
    assert inbound_auth_problems(InboundAuthConfig("apiKey", ("k",), header=" ")) == [
        "header: the apiKey header name is empty"
    ]
    assert "unknown auth type" in inbound_auth_problems(InboundAuthConfig("oauth", ("x",)))[0]  # type: ignore[arg-type]
    assert inbound_auth_problems(HMAC) == []
    assert inbound_auth_problems(HS_CONFIG) == []


# --------------------------------------------------------------------------- client address

PROXIES = ["10.0.0.0/8", "fd00::/8"]


@pytest.mark.parametrize(
    ("remote", "forwarded_for", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # untrusted peer: X-Forwarded-For is ignored
        ("10.0.0.2", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # a client-supplied left part is not believed
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.7", "1.2.3.4"),  # chained trusted proxies are skipped
        ("10.0.0.2", "10.0.0.8, 10.0.0.7", "10.0.0.8"),  # all trusted: the left-most is the client
        ("10.0.0.2", "garbage, 10.0.0.7", "10.0.0.7"),  # trust stops at the last trusted hop
        ("10.0.0.2", "1.2.3.4:5678", "1.2.3.4"),
        ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
        ("::ffff:10.0.0.2", "1.2.3.4", "1.2.3.4"),  # IPv4-mapped peer of a dual-stack socket
        ("fd00::1", "2001:db8::5", "2001:db8::5"),
        ("fe80::1%eth0", "1.2.3.4", "fe80::1"),
    ],
)
def test_client_ip(remote: str, forwarded_for: str | None, expected: str) -> None:
    assert str(TrustedProxies(PROXIES).client_address(remote, forwarded_for)) == expected


def ip_allowed(
    remote: str, allowed_cidrs: list[str], forwarded_for: str | None, trusted_proxies: list[str]
) -> bool:
    client = TrustedProxies(trusted_proxies).client_address(remote, forwarded_for)
    return IpAllowList(allowed_cidrs).allows(client)


def test_ip_allowed() -> None:
    allowed = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]
    assert ip_allowed("192.0.2.55", allowed, None, [])
    assert ip_allowed("::ffff:192.0.2.55", allowed, None, [])
    assert ip_allowed("2001:db8::abcd", allowed, None, [])
    assert ip_allowed("198.51.100.7", allowed, None, [])
    assert not ip_allowed("198.51.100.8", allowed, None, [])
    assert not ip_allowed("203.0.113.1", allowed, "192.0.2.55", [])  # spoofed header, untrusted peer
    assert ip_allowed("10.1.1.1", allowed, "192.0.2.55", PROXIES)
    assert not ip_allowed("10.1.1.1", allowed, "192.0.2.55, 203.0.113.1", PROXIES)
    assert not ip_allowed("not an address", allowed, None, [])
    assert ip_allowed("anything", [], None, [])  # no allow-list: everyone


def test_ip_allow_list_and_trusted_proxies_are_validated_when_parsed() -> None:
    with pytest.raises(ValueError, match=r"ips\[1\]: '300.1.1.1/8' is not an IP address or CIDR range"):
        IpAllowList(["10.0.0.0/8", "300.1.1.1/8"])
    with pytest.raises(ValueError, match=r"trustedProxies\[0\]"):
        TrustedProxies(["nope"])
    allow_list, proxies = IpAllowList(["192.0.2.0/24"]), TrustedProxies(["10.0.0.0/8"])
    assert allow_list.allows(proxies.client_address("10.0.0.1", "192.0.2.1"))
    assert not allow_list.allows(proxies.client_address("203.0.113.1", None))
    assert not allow_list.allows(None)  # an unparseable peer is not in any range
