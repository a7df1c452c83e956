"""Issue 17 (hardening): the SSRF egress policy, at compile time and after DNS resolution.

No packet is ever sent: refusals are checked on URLs, on compiled resources and with a resolver stub.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from openconnector.api.kinds import EVENT_SUBSCRIPTION, SOURCE
from openconnector.egress import EgressPolicy, parse_host_address
from openconnector.egress_resolver import EgressResolver, connector_for
from openconnector.resources import Resource, ResourceKey
from openconnector.routing.compiler import compile_table

METADATA_SPELLINGS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[::169.254.169.254]/",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0xA9.0xFE.0xA9.0xFE/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://169.16689662/",
    "http://169.254.169.254./",
    "http://[fe80::1%25eth0]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.GOOGLE.INTERNAL./",
    "http://169.254.170.2/v2/credentials",
]


@pytest.mark.parametrize("url", METADATA_SPELLINGS)
def test_default_policy_refuses_metadata_and_link_local_in_every_spelling(url: str) -> None:
    assert EgressPolicy().url_refusal(url) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hooks",
        "http://[::1]:9000/",
        "http://localhost:9000/",
        "http://10.0.0.5/",
        "http://notifier.zaken.svc:80/",
        "https://example.org/hook",
    ],
)
def test_default_policy_allows_loopback_private_and_public(url: str) -> None:
    assert EgressPolicy().url_refusal(url) is None


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/", "http://[::1]/", "http://localhost/", "http://10.1.2.3/", "http://2130706433/",
     "http://[::ffff:192.168.1.1]/", "http://0.0.0.0/", "http://172.20.0.1/", "http://[fd12::1]/"],
)  # fmt: skip
def test_strict_preset_also_refuses_loopback_and_private(url: str) -> None:
    assert EgressPolicy.build("strict").url_refusal(url) is not None
    assert EgressPolicy.build("strict").url_refusal("https://example.org/") is None


def test_allowed_ranges_and_hosts_win_over_denied() -> None:
    policy = EgressPolicy.build("strict", allow=["10.96.0.0/12"], allow_hosts=["localhost"])
    assert policy.url_refusal("http://10.96.0.10/") is None
    assert policy.url_refusal("http://localhost/") is None
    assert policy.url_refusal("http://10.0.0.1/") is not None
    extra = EgressPolicy.build(deny=["203.0.113.0/24"], deny_hosts=["evil.example"])
    assert extra.url_refusal("http://203.0.113.9/") is not None
    assert extra.url_refusal("http://api.evil.example/") is not None


def test_unknown_preset_and_bad_cidr_are_refused() -> None:
    with pytest.raises(ValueError, match="preset"):
        EgressPolicy.build("lenient")
    with pytest.raises(ValueError, match="not-a-cidr"):
        EgressPolicy.build(deny=["not-a-cidr"])


def test_host_address_parsing() -> None:
    assert str(parse_host_address("0x7f.1")) == "127.0.0.1"
    assert str(parse_host_address("017700000001")) == "127.0.0.1"
    assert parse_host_address("example.org") is None
    assert parse_host_address("1.2.3.4.5") is None
    assert parse_host_address("256.1.1.1") is None


# ------------------------------------------------------------------------------------ compile time


def _resource(kind: str, name: str, spec: dict[str, Any], namespace: str = "tenant-a") -> Resource:
    return Resource(kind=kind, namespace=namespace, name=name, spec=spec, generation=1)


def _subscription(endpoint: str, **spec: Any) -> Resource:
    return _resource(EVENT_SUBSCRIPTION.kind, "sub", {"eventType": "t", "endpoint": endpoint, **spec})


def _result(resources: list[Resource], policy: EgressPolicy | None = None) -> dict[ResourceKey, Any]:
    table = compile_table({r.key: r for r in resources}, {}, version=1, egress=policy)
    return dict(table.results)


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        (_subscription("http://169.254.169.254/latest/meta-data/"), "spec.endpoint"),
        (_subscription("http://[::ffff:169.254.169.254]/"), "spec.endpoint"),
        (
            _subscription(
                "http://127.0.0.1:9/ok", delivery={"deadLetter": {"endpoint": "http://2852039166/"}}
            ),
            "spec.delivery.deadLetter.endpoint",
        ),
        (_resource(SOURCE.kind, "api", {"location": "http://0xa9fea9fe/api"}), "spec.location"),
        (_subscription("service:notifier.kube-system:80/hook"), "spec.endpoint"),
    ],
)
def test_compile_time_refusal_names_the_field_and_why(resource: Resource, field: str) -> None:
    result = _result([resource])[resource.key]
    assert not result.ready
    assert result.reason == "EgressDenied"
    assert result.problems[0].field == field
    assert result.message.startswith(field + ": ")


def test_service_references_into_allowed_namespaces_compile() -> None:
    own = _subscription("service:notifier:80/hook")
    other = _subscription("service:notifier.shared:80/hook")
    assert _result([own])[own.key].ready
    assert not _result([other])[other.key].ready
    assert _result([other], EgressPolicy.build(allow_service_namespaces=["shared"]))[other.key].ready
    assert _result([other], EgressPolicy.build(allow_service_namespaces=["*"]))[other.key].ready


def test_strict_preset_refuses_loopback_at_compile_time() -> None:
    sub = _subscription("http://127.0.0.1:9000/hooks")
    assert _result([sub])[sub.key].ready
    assert _result([sub], EgressPolicy.build("strict"))[sub.key].reason == "EgressDenied"


# ------------------------------------------------------------------------------------ connect time


class StubResolver(AbstractResolver):
    """Answers every name with fixed addresses: DNS rebinding, without DNS and without a packet."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("answers", [("169.254.169.254",), ("203.0.113.7", "169.254.169.254"), ("fe80::1",)])
async def test_resolver_refuses_a_name_that_resolves_to_a_denied_address(answers: tuple[str, ...]) -> None:
    stub = StubResolver(*answers)
    resolver = EgressResolver(EgressPolicy(), stub)
    with pytest.raises(OSError, match="refused after resolution"):
        await resolver.resolve("rebind.example", 80)
    assert stub.asked == ["rebind.example"]


async def test_resolver_refuses_denied_names_before_asking_dns() -> None:
    stub = StubResolver("127.0.0.1")
    with pytest.raises(OSError, match="refused"):
        await EgressResolver(EgressPolicy(), stub).resolve("metadata.google.internal", 80)
    with pytest.raises(OSError, match="refused"):
        await EgressResolver(EgressPolicy(), stub).resolve("2852039166", 80)
    assert stub.asked == []


async def test_resolver_passes_allowed_answers_through() -> None:
    stub = StubResolver("127.0.0.1")
    answers = await EgressResolver(EgressPolicy(), stub).resolve("sink.local", 9000)
    assert [a["host"] for a in answers] == ["127.0.0.1"]
    with pytest.raises(OSError, match="refused after resolution"):
        await EgressResolver(EgressPolicy.build("strict"), stub).resolve("sink.local", 9000)


async def test_a_session_with_the_connector_refuses_before_connecting() -> None:
    connector = connector_for(EgressPolicy(), dns=StubResolver("169.254.169.254"))
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as raised:
            await session.get("http://rebind.example:9/")
    assert "refused after resolution" in str(raised.value.os_error)
