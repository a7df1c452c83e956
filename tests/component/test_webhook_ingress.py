"""POST /webhooks/<endpoint> on a real gateway: every auth scheme, the allow-list, limits and targets.

Valid requests are forwarded to a loopback Source; every refusal is an RFC 9457 problem with a precise
status, and a refused request reaches neither the target nor any subscriber.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from openconnector.standalone import StandaloneGateway
from tests.component.conftest import StartGateway
from tests.support.http import Answer, assert_problem, call, post
from tests.support.signing import sign_github, standard_webhook_headers
from tests.support.sinks import RefusingEndpoint, Reply, Sink

API = "openconnector.nl/v1alpha1"
JSON = {"Content-Type": "application/json"}
PAYLOAD = orjson.dumps({"order": {"id": 42, "status": "paid"}})

BEARER_TOKEN = "bearer-token-0123456789"
BASIC_CREDENTIAL = "alice:correct-horse-battery"
API_KEY = "api-key-0123456789"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_WHSEC = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
GITHUB_SECRET = "github-secret-0123456789"
JWT_SECRET = "jwt-shared-secret-" + "x" * 46  # 64 bytes: long enough for HS256..HS512
EVENT_TYPE = "nl.example.webshop.order.paid"


# ----------------------------------------------------------------------------------------- helpers


def resource(kind: str, name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, **metadata}, "spec": dict(spec)}


def secret(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": dict(data)}


def consumer(name: str, endpoint: str, *, target: str = "api", **spec: Any) -> dict[str, Any]:
    return resource(
        "Consumer", name, {"endpoint": endpoint, "targetType": "source", "targetId": target, **spec}
    )


def auth(type_: str, key: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "secretRefs": [{"name": "credentials", "key": key}], **extra}


def write(directory: Path, *docs: Mapping[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return directory


@functools.cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    """One 2048-bit key per label, generated once per test session."""
    del label
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def manifests(directory: Path, target: Sink) -> Path:
    """An api Source at the sink, and one Consumer per auth scheme (plus a few special ones)."""
    return write(
        directory,
        secret(
            "credentials",
            {
                "bearer": BEARER_TOKEN,
                "basic": BASIC_CREDENTIAL,
                "apikey": API_KEY,
                "hmac": WHSEC,
                "github": GITHUB_SECRET,
                "jwt-hs": JWT_SECRET,
                "jwt-rs": public_pem(rsa_key("gateway")),
            },
        ),
        resource("Source", "api", {"location": target.url_for("/api")}),
        consumer("open", "open"),
        consumer("bearer-hook", "auth/bearer", auth=auth("bearer", "bearer")),
        consumer("basic-hook", "auth/basic", auth=auth("basic", "basic")),
        consumer("apikey-hook", "auth/apikey", auth=auth("apiKey", "apikey", header="X-Api-Key")),
        consumer("hmac-hook", "auth/hmac", auth=auth("hmac", "hmac")),
        consumer("github-hook", "auth/github", auth=auth("github", "github")),
        consumer("jwt-hs-hook", "auth/jwt-hs", auth=auth("jwt", "jwt-hs", algorithms=["HS256"])),
        consumer("jwt-rs-hook", "auth/jwt-rs", auth=auth("jwt", "jwt-rs", algorithms=["RS256"])),
        consumer("internal", "internal", allowedIPs=["10.0.0.0/8"]),
        consumer("partners", "partners", allowedIPs=["203.0.113.0/24"]),
        consumer("loopback", "loopback", allowedIPs=["127.0.0.0/8", "::1/128"]),
        consumer("disabled", "disabled", isEnabled=False),
        consumer("small", "small", maxBodyBytes=64),
        consumer("slashed", "/partners/orders"),
        resource(
            "Mapping",
            "order-to-invoice",
            {
                "mapping": {"invoice.order": "order.id", "invoice.amount": "order.amount"},
                "cast": {"invoice.amount": "integer"},
            },
        ),
        consumer("mapped", "mapped", mappingId="order-to-invoice"),
    )


def assert_forwarded(answer: Answer, target: Sink, count: int = 1) -> None:
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/json"
    assert answer.json() == {"targetStatus": 200}
    assert len(target.requests) == count
    assert target.requests[-1].path == "/api"


async def resources(gw: StandaloneGateway) -> dict[tuple[str, str], dict[str, Any]]:
    """GET /api/v1alpha1/status as {(kind, name): status}."""
    answer = await call("GET", f"{gw.url}/api/v1alpha1/status")
    assert answer.status == 200, answer.body
    return {(r["kind"], r["name"]): r["status"] for r in answer.json()["resources"]}


def ready(status: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


@pytest.fixture
async def target() -> AsyncIterator[Sink]:
    async with Sink() as sink:
        yield sink


@pytest.fixture
async def gw(tmp_path: Path, start_gateway: StartGateway, target: Sink) -> StandaloneGateway:
    return await start_gateway(manifests(tmp_path / "m", target))


# ------------------------------------------------------------------------------ credentials


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256_by_hand(secret_bytes: bytes, claims: Mapping[str, Any]) -> str:
    """An HS256 token PyJWT refuses to make: a public key used as the HMAC secret (alg confusion)."""
    signing_input = _b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64url(orjson.dumps(dict(claims)))
    signature = hmac.new(secret_bytes, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def claims(issuer: str, **extra: Any) -> dict[str, Any]:
    return {"iss": issuer, "iat": int(time.time()), **extra}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(credential: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credential.encode()).decode()}


_counter = iter(range(1_000_000))


def hmac_headers(
    body: bytes, secret_value: str = WHSEC, *, signed_body: bytes | None = None
) -> dict[str, str]:
    msg_id = f"msg_{next(_counter)}"
    return standard_webhook_headers((secret_value,), msg_id, int(time.time()), signed_body or body)


HeaderBuilder = Callable[[bytes], dict[str, str]]


@dataclass(frozen=True)
class Scheme:
    endpoint: str
    valid: HeaderBuilder
    # Wrong credentials, each wrong in a different way; the answers must not tell them apart.
    invalid: tuple[HeaderBuilder, ...]
    challenge: str | None = None  # the WWW-Authenticate scheme of a 401, where the scheme has one


SCHEMES = {
    "bearer": Scheme(
        "auth/bearer",
        lambda _: bearer(BEARER_TOKEN),
        (lambda _: bearer("wrong-token"), lambda _: bearer(BEARER_TOKEN.upper()), lambda _: bearer("")),
        "Bearer",
    ),
    "basic": Scheme(
        "auth/basic",
        lambda _: basic(BASIC_CREDENTIAL),
        (
            lambda _: basic("alice:wrong-password"),
            lambda _: basic("mallory:correct-horse-battery"),
            lambda _: {"Authorization": "Basic !!not-base64!!"},
        ),
        "Basic",
    ),
    "apiKey": Scheme(
        "auth/apikey",
        lambda _: {"X-Api-Key": API_KEY},
        (lambda _: {"X-Api-Key": "wrong-key"}, lambda _: {"X-Api-Key": API_KEY + "x"}),
    ),
    "hmac": Scheme(
        "auth/hmac",
        hmac_headers,
        (
            lambda body: hmac_headers(body, OTHER_WHSEC),
            lambda body: hmac_headers(body, signed_body=b'{"order": "tampered"}'),
            lambda body: {**hmac_headers(body), "webhook-signature": "v1,AAAA"},
        ),
    ),
    "github": Scheme(
        "auth/github",
        lambda body: {"X-Hub-Signature-256": sign_github(GITHUB_SECRET, body)},
        (
            lambda body: {"X-Hub-Signature-256": sign_github("another-secret", body)},
            lambda _: {"X-Hub-Signature-256": sign_github(GITHUB_SECRET, b"{}")},
            lambda _: {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        ),
    ),
    "jwt-HS256": Scheme(
        "auth/jwt-hs",
        lambda _: bearer(jwt.encode(claims("jwt-hs-hook"), JWT_SECRET, algorithm="HS256")),
        (
            lambda _: bearer(jwt.encode(claims("jwt-hs-hook"), "y" * 64, algorithm="HS256")),
            # Right secret, but an algorithm the Consumer did not pin.
            lambda _: bearer(jwt.encode(claims("jwt-hs-hook"), JWT_SECRET, algorithm="HS384")),
            lambda _: bearer(jwt.encode(claims("jwt-hs-hook"), "", algorithm="none")),
            lambda _: bearer("not.a.token"),
        ),
        "Bearer",
    ),
    "jwt-RS256": Scheme(
        "auth/jwt-rs",
        lambda _: bearer(jwt.encode(claims("jwt-rs-hook"), rsa_key("gateway"), algorithm="RS256")),
        (
            lambda _: bearer(jwt.encode(claims("jwt-rs-hook"), rsa_key("attacker"), algorithm="RS256")),
            lambda _: bearer(hs256_by_hand(public_pem(rsa_key("gateway")).encode(), claims("jwt-rs-hook"))),
        ),
        "Bearer",
    ),
}


# ------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize("scheme", SCHEMES.values(), ids=SCHEMES.keys())
async def test_valid_credentials_are_forwarded(gw: StandaloneGateway, target: Sink, scheme: Scheme) -> None:
    answer = await post(f"{gw.url}/webhooks/{scheme.endpoint}", PAYLOAD, {**JSON, **scheme.valid(PAYLOAD)})

    assert_forwarded(answer, target)
    forwarded = target.requests[0]
    assert orjson.loads(forwarded.body) == orjson.loads(PAYLOAD)
    assert forwarded.headers["Content-Type"] == "application/json"
    # The sender's credentials are not passed on to the target.
    assert "Authorization" not in forwarded.headers
    assert not any(h.lower().startswith(("webhook-", "x-hub-", "x-api-key")) for h in forwarded.headers)


@pytest.mark.parametrize("scheme", SCHEMES.values(), ids=SCHEMES.keys())
async def test_invalid_credentials_are_401_without_saying_which_part_was_wrong(
    gw: StandaloneGateway, target: Sink, scheme: Scheme
) -> None:
    bodies = set()
    for make_headers in scheme.invalid:
        answer = await post(
            f"{gw.url}/webhooks/{scheme.endpoint}", PAYLOAD, {**JSON, **make_headers(PAYLOAD)}
        )
        problem = assert_problem(answer, 401, "unauthorized")
        assert set(problem) == {"type", "title", "status", "detail"}
        if scheme.challenge is not None:
            assert answer.headers["WWW-Authenticate"].startswith(scheme.challenge)
        bodies.add(answer.body)
    # Every way of being wrong gets the same answer: nothing to probe credentials with.
    assert len(bodies) == 1, bodies
    detail = orjson.loads(next(iter(bodies)))["detail"].lower()
    for word in ("user", "password", "issuer", "algorithm", "expired", "mismatch", "alice", "key "):
        assert word not in detail
    assert target.requests == []


@pytest.mark.parametrize("scheme", SCHEMES.values(), ids=SCHEMES.keys())
async def test_missing_credentials_are_401(gw: StandaloneGateway, target: Sink, scheme: Scheme) -> None:
    answer = await post(f"{gw.url}/webhooks/{scheme.endpoint}", PAYLOAD, JSON)

    assert_problem(answer, 401, "unauthorized")
    assert target.requests == []


async def test_bearer_token_in_the_query_is_accepted(gw: StandaloneGateway, target: Sink) -> None:
    answer = await post(f"{gw.url}/webhooks/auth/bearer?access_token={BEARER_TOKEN}", PAYLOAD, JSON)
    assert_forwarded(answer, target)
    wrong = await post(f"{gw.url}/webhooks/auth/bearer?access_token=wrong", PAYLOAD, JSON)
    assert_problem(wrong, 401, "unauthorized")


@pytest.mark.parametrize(
    "token_claims",
    [
        pytest.param({"iss": "someone-else", "iat": int(time.time())}, id="wrong-issuer"),
        pytest.param({"iss": "jwt-hs-hook"}, id="no-iat"),
        pytest.param({"iss": "jwt-hs-hook", "iat": int(time.time()) - 7200}, id="expired-by-default"),
        pytest.param(
            {"iss": "jwt-hs-hook", "iat": int(time.time()) - 600, "exp": int(time.time()) - 400}, id="expired"
        ),
    ],
)
async def test_jwt_with_unacceptable_claims_is_401(
    gw: StandaloneGateway, target: Sink, token_claims: dict[str, Any]
) -> None:
    token = jwt.encode(token_claims, JWT_SECRET, algorithm="HS256")

    answer = await post(f"{gw.url}/webhooks/auth/jwt-hs", PAYLOAD, {**JSON, **bearer(token)})

    assert_problem(answer, 401, "unauthorized")
    assert target.requests == []


async def test_stale_standard_webhook_timestamp_is_401(gw: StandaloneGateway, target: Sink) -> None:
    headers = standard_webhook_headers((WHSEC,), "msg_stale", int(time.time()) - 3600, PAYLOAD)

    answer = await post(f"{gw.url}/webhooks/auth/hmac", PAYLOAD, {**JSON, **headers})

    assert_problem(answer, 401, "unauthorized")
    assert target.requests == []


async def test_replayed_webhook_id_is_401(gw: StandaloneGateway, target: Sink) -> None:
    headers = {**JSON, **hmac_headers(PAYLOAD)}

    first = await post(f"{gw.url}/webhooks/auth/hmac", PAYLOAD, headers)
    assert_forwarded(first, target)
    replay = await post(f"{gw.url}/webhooks/auth/hmac", PAYLOAD, headers)

    assert_problem(replay, 401, "unauthorized")
    assert len(target.requests) == 1


# ---------------------------------------------------------------------------- client address


async def test_client_outside_allowed_ips_is_403(gw: StandaloneGateway, target: Sink) -> None:
    answer = await post(f"{gw.url}/webhooks/internal", PAYLOAD, JSON)

    assert_problem(answer, 403, "forbidden")
    assert target.requests == []
    assert_forwarded(await post(f"{gw.url}/webhooks/loopback", PAYLOAD, JSON), target)


async def test_x_forwarded_for_is_ignored_without_trusted_proxies(
    gw: StandaloneGateway, target: Sink
) -> None:
    answer = await post(f"{gw.url}/webhooks/partners", PAYLOAD, {**JSON, "X-Forwarded-For": "203.0.113.7"})

    assert_problem(answer, 403, "forbidden")
    assert target.requests == []


@pytest.mark.parametrize(
    ("endpoint", "forwarded_for", "allowed"),
    [
        pytest.param("partners", "203.0.113.7", True, id="partner-behind-proxy"),
        pytest.param("partners", "198.51.100.1", False, id="stranger-behind-proxy"),
        # The left-most entry is whatever the client wrote; only the hop the proxy appended counts.
        pytest.param("partners", "203.0.113.7, 198.51.100.1", False, id="spoofed-left-entry"),
        # The peer is loopback, but the real client is not: a loopback-only Consumer refuses it.
        pytest.param("loopback", "198.51.100.1", False, id="loopback-peer-remote-client"),
        pytest.param("loopback", None, True, id="loopback-without-header"),
    ],
)
async def test_trusted_proxy_forwards_the_client_address(
    tmp_path: Path,
    start_gateway: StartGateway,
    target: Sink,
    endpoint: str,
    forwarded_for: str | None,
    allowed: bool,
) -> None:
    gw = await start_gateway(manifests(tmp_path / "m", target), trusted_proxies=("127.0.0.1/32", "::1/128"))
    headers = {**JSON, **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})}

    answer = await post(f"{gw.url}/webhooks/{endpoint}", PAYLOAD, headers)

    if allowed:
        assert_forwarded(answer, target)
    else:
        assert_problem(answer, 403, "forbidden")
        assert target.requests == []


# ------------------------------------------------------------------------- endpoints, bodies


@pytest.mark.parametrize("path", ["no/such/endpoint", "disabled"])
async def test_unknown_or_disabled_endpoint_is_404(gw: StandaloneGateway, target: Sink, path: str) -> None:
    answer = await post(f"{gw.url}/webhooks/{path}", PAYLOAD, JSON)

    body = assert_problem(answer, 404, "unknown-endpoint")
    assert path in body["detail"]
    assert target.requests == []


@pytest.mark.parametrize("path", ["partners/orders", "partners/orders/"])
async def test_leading_and_trailing_slashes_of_an_endpoint_do_not_matter(
    gw: StandaloneGateway, target: Sink, path: str
) -> None:
    assert_forwarded(await post(f"{gw.url}/webhooks/{path}", PAYLOAD, JSON), target)
    status = (await resources(gw))[("Consumer", "slashed")]
    assert status["url"] == "/webhooks/partners/orders"


async def test_body_of_exactly_max_body_bytes_is_accepted(gw: StandaloneGateway, target: Sink) -> None:
    body = b'{"p": "' + b"x" * 55 + b'"}'
    assert len(body) == 64

    assert_forwarded(await post(f"{gw.url}/webhooks/small", body, JSON), target)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_max_body_bytes_is_413(gw: StandaloneGateway, target: Sink, chunked: bool) -> None:
    body = orjson.dumps({"p": "x" * 200})

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16):
            yield body[start : start + 16]

    answer = await call(
        "POST",
        f"{gw.url}/webhooks/small",
        body=chunks() if chunked else body,  # type: ignore[arg-type]
        headers=JSON,
    )

    problem = assert_problem(answer, 413, "body-too-large")
    assert "64" in problem["detail"]
    assert target.requests == []


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}],
    ids=["text", "form", "none"],
)
async def test_non_json_body_is_415(gw: StandaloneGateway, target: Sink, headers: dict[str, str]) -> None:
    answer = await post(f"{gw.url}/webhooks/open", b"order=42", headers)

    assert_problem(answer, 415, "unsupported-media-type")
    assert target.requests == []


async def test_json_flavoured_media_types_are_accepted(gw: StandaloneGateway, target: Sink) -> None:
    answer = await post(f"{gw.url}/webhooks/open", PAYLOAD, {"Content-Type": "application/vnd.shop+json"})
    assert_forwarded(answer, target)


@pytest.mark.parametrize(
    "body", [b"{not json", b"", b'{"a": 1} trailing'], ids=["broken", "empty", "trailing"]
)
async def test_invalid_json_is_400(gw: StandaloneGateway, target: Sink, body: bytes) -> None:
    answer = await post(f"{gw.url}/webhooks/open", body, JSON)

    assert_problem(answer, 400, "invalid-json")
    assert target.requests == []


async def test_mapping_failure_is_422_naming_the_path(gw: StandaloneGateway, target: Sink) -> None:
    answer = await post(
        f"{gw.url}/webhooks/mapped", orjson.dumps({"order": {"id": 7, "amount": "lots"}}), JSON
    )

    problem = assert_problem(answer, 422, "mapping-failed")
    assert problem["path"] == "cast.invoice.amount"
    assert "cast.invoice.amount" in problem["detail"]
    assert target.requests == []

    mapped = await post(f"{gw.url}/webhooks/mapped", orjson.dumps({"order": {"id": 7, "amount": "12"}}), JSON)
    assert_forwarded(mapped, target)
    assert orjson.loads(target.requests[0].body) == {"invoice": {"order": 7, "amount": 12}}


async def test_source_target_answers_200_with_the_target_status(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    async with Sink(Reply(202, body=b'{"queued": true}')) as accepting:
        gw = await start_gateway(manifests(tmp_path / "m", accepting))

        answer = await post(f"{gw.url}/webhooks/open", PAYLOAD, JSON)

        assert answer.status == 200, answer.body
        assert answer.content_type == "application/json"
        assert answer.json() == {"targetStatus": 202}


async def test_target_down_is_502_and_emits_no_event(tmp_path: Path, start_gateway: StartGateway) -> None:
    with RefusingEndpoint() as down:
        async with Sink() as subscriber:
            directory = write(
                tmp_path / "m",
                resource("Source", "down", {"location": f"http://127.0.0.1:{down.port}/api"}),
                resource("Event", "order-paid", {"type": EVENT_TYPE, "source": "urn:nld:webshop"}),
                resource(
                    "EventSubscription",
                    "to-subscriber",
                    {"eventType": EVENT_TYPE, "endpoint": subscriber.url},
                ),
                consumer("shop", "shop", target="down", event="order-paid"),
            )
            gw = await start_gateway(directory)

            answer = await post(f"{gw.url}/webhooks/shop", PAYLOAD, JSON)

            problem = assert_problem(answer, 502, "target-unreachable")
            assert problem["targetStatus"] is None
            assert "eventId" not in problem
            status = await resources(gw)
            assert status[("Event", "order-paid")]["emitted"] == 0
            assert status[("Source", "down")]["failures"] == 1
            assert status[("Consumer", "shop")]["rejectedByReason"] == {"target-unreachable": 1}
            assert status[("Consumer", "shop")]["forwarded"] == 0
            assert subscriber.requests == []


async def test_options_handshake_on_an_endpoint(gw: StandaloneGateway) -> None:
    handshake = {"WebHook-Request-Origin": "shop.example.com"}

    answer = await call("OPTIONS", f"{gw.url}/webhooks/auth/hmac", headers=handshake)

    assert answer.status == 200
    assert answer.headers["WebHook-Allowed-Origin"] == "shop.example.com"
    assert answer.headers["Allow"] == "POST"
    unknown = await call("OPTIONS", f"{gw.url}/webhooks/no/such/endpoint", headers=handshake)
    assert_problem(unknown, 404, "unknown-endpoint")


async def test_wrong_method_on_an_endpoint_is_405(gw: StandaloneGateway) -> None:
    answer = await call("GET", f"{gw.url}/webhooks/open")

    assert_problem(answer, 405, "method-not-allowed")
    assert "POST" in answer.headers["Allow"]


async def test_newer_consumer_with_the_same_endpoint_gets_endpoint_conflict(
    tmp_path: Path, start_gateway: StartGateway, target: Sink
) -> None:
    # The older one wins, though its name sorts last; the spellings differ only by slashes.
    directory = write(
        tmp_path / "m",
        resource("Source", "first", {"location": target.url_for("/first")}),
        resource("Source", "second", {"location": target.url_for("/second")}),
        resource(
            "Consumer",
            "aa-newer",
            {"endpoint": "/shared/hook", "targetType": "source", "targetId": "second"},
            creationTimestamp="2024-06-01T00:00:00Z",
        ),
        resource(
            "Consumer",
            "zz-older",
            {"endpoint": "shared/hook", "targetType": "source", "targetId": "first"},
            creationTimestamp="2024-01-01T00:00:00Z",
        ),
    )
    gw = await start_gateway(directory)

    status = await resources(gw)
    newer, older = ready(status[("Consumer", "aa-newer")]), ready(status[("Consumer", "zz-older")])
    assert older["status"] == "True"
    assert newer["status"] == "False"
    assert newer["reason"] == "EndpointConflict"
    assert "spec.endpoint" in newer["message"]
    assert "zz-older" in newer["message"]

    answer = await post(f"{gw.url}/webhooks/shared/hook", PAYLOAD, JSON)
    assert answer.status == 200, answer.body
    assert [r.path for r in target.requests] == ["/first"]


async def test_a_consumer_added_later_in_standalone_mode_does_not_take_a_served_endpoint(
    tmp_path: Path, start_gateway: StartGateway, target: Sink
) -> None:
    # Files carry no creationTimestamp: the store stamps when it first held each resource, so the
    # Consumer already serving the endpoint keeps it, though the newcomer's name sorts first.
    sources = [
        resource("Source", "first", {"location": target.url_for("/first")}),
        resource("Source", "second", {"location": target.url_for("/second")}),
    ]
    serving = resource(
        "Consumer", "zz-serving", {"endpoint": "shared", "targetType": "source", "targetId": "first"}
    )
    directory = write(tmp_path / "m", *sources, serving)
    gw = await start_gateway(directory)
    assert ready((await resources(gw))[("Consumer", "zz-serving")])["status"] == "True"

    newcomer = resource(
        "Consumer", "aa-newcomer", {"endpoint": "shared", "targetType": "source", "targetId": "second"}
    )
    write(directory, *sources, serving, newcomer)
    gw.reload()
    deadline = asyncio.get_running_loop().time() + 10
    while ("Consumer", "aa-newcomer") not in (status := await resources(gw)):
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.02)

    assert ready(status[("Consumer", "zz-serving")])["status"] == "True"
    assert ready(status[("Consumer", "aa-newcomer")])["reason"] == "EndpointConflict"
    assert "zz-serving" in ready(status[("Consumer", "aa-newcomer")])["message"]
    answer = await post(f"{gw.url}/webhooks/shared", PAYLOAD, JSON)
    assert answer.status == 200, answer.body
    assert [r.path for r in target.requests] == ["/first"]

    # An unchanged rescan keeps both stamps: nothing changes hands.
    assert gw.reload() is False


async def test_event_with_a_source_that_is_not_a_uri_reference_is_not_ready(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    directory = write(tmp_path / "m", resource("Event", "spaced", {"type": EVENT_TYPE, "source": "web shop"}))
    gw = await start_gateway(directory)

    condition = ready((await resources(gw))[("Event", "spaced")])

    assert condition["status"] == "False"
    assert "spec.source" in condition["message"]
