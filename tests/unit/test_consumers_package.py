"""The consumers package is pure, its verifiers and allow-lists are compiled with the Consumer's route,
and inbound and outbound Standard Webhooks read a secret the same way."""

from __future__ import annotations

import base64
import ipaddress
import subprocess
import sys

import pytest

from openconnector.consumers.standard_webhooks import SecretError, decode_secret
from openconnector.consumers.verifiers import (
    InboundAuthConfig,
    InboundAuthConfigError,
    InboundVerifier,
    compile_verifier,
)
from openconnector.delivery.signing import decode_signing_secret
from openconnector.resources import Resource, SecretOrConfigMap
from openconnector.routing.compiler import compile_table

KEY = b"k" * 24
EVENT = Resource(
    kind="Event",
    namespace="ns",
    name="thing",
    spec={"type": "nl.example.thing.created", "source": "urn:nld:x"},
)
PADDED = base64.b64encode(KEY + b"!").decode()  # 25 bytes: base64 with padding


def test_the_consumers_package_imports_no_http_library() -> None:
    code = (
        "import sys, pkgutil, importlib, openconnector.consumers as c\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module(f'openconnector.consumers.{m.name}')\n"
        "print(sorted(n for n in ('aiohttp', 'kopf', 'prometheus_client') if n in sys.modules))\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "secret",
    [f"whsec_{PADDED}", PADDED, f"  whsec_{PADDED}  ", f"whsec_{PADDED.rstrip('=')}", PADDED.rstrip("=")],
)
def test_one_decoder_serves_signing_and_verification(secret: str) -> None:
    assert decode_secret(secret) == KEY + b"!"
    assert decode_signing_secret(secret) == KEY + b"!"  # outbound (delivery)
    compile_verifier(InboundAuthConfig("hmac", (secret,)))  # inbound (Consumer) accepts it too


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!!", "whsec_c2hvcnQ="])
def test_a_secret_refused_outbound_is_refused_inbound(secret: str) -> None:
    with pytest.raises(SecretError):
        decode_secret(secret)
    with pytest.raises(ValueError, match=r"^signing_secret: "):
        decode_signing_secret(secret)
    with pytest.raises(InboundAuthConfigError) as refused:
        compile_verifier(InboundAuthConfig("hmac", (secret,)))
    assert refused.value.problems[0].startswith("credentials[0]: ")
    assert secret.removeprefix("whsec_") not in str(refused.value) or not secret.removeprefix("whsec_")


def test_a_consumers_verifier_and_allow_list_are_compiled_with_its_route() -> None:
    secret = SecretOrConfigMap("ns", "hook", {"key": f"whsec_{PADDED}".encode()})
    consumer = Resource(
        kind="Consumer",
        namespace="ns",
        name="orders",
        spec={
            "endpoint": "orders",
            "event": "thing",
            "allowedIPs": ["192.0.2.0/24"],
            "auth": {"type": "hmac", "secretRefs": [{"name": "hook", "key": "key"}]},
        },
    )
    resources = {r.key: r for r in (consumer, EVENT)}
    table = compile_table(resources, {secret.key: secret}, version=1)

    route = table.consumer("orders")
    assert route is not None
    assert isinstance(route.verifier, InboundVerifier)
    assert route.verifier.hmac_keys == (KEY + b"!",)  # decoded once, here, not per request
    assert route.allow_list.allows(ipaddress.ip_address("192.0.2.9"))
    assert not route.allow_list.allows(ipaddress.ip_address("198.51.100.1"))


def test_an_unusable_allow_list_entry_names_its_field() -> None:
    consumer = Resource(
        kind="Consumer",
        namespace="ns",
        name="orders",
        spec={"endpoint": "o", "event": "thing", "allowedIPs": ["10.0.0.0/8", "x"]},
    )
    table = compile_table({r.key: r for r in (consumer, EVENT)}, {}, version=1)

    result = table.results[consumer.key]
    assert (result.ready, result.reason) == (False, "InvalidSpec")
    assert result.message == "spec.allowedIPs[1]: 'x' is not an IP address or CIDR range"
