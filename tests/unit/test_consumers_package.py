"""The consumers package is pure, and inbound and outbound Standard Webhooks read a secret the same way."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from openconnector.consumers.standard_webhooks import SecretError, decode_secret
from openconnector.consumers.verifiers import InboundAuthConfig, InboundAuthConfigError, compile_verifier
from openconnector.delivery.signing import decode_signing_secret

KEY = b"k" * 24
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
