"""A Content-Type whose parameters CPython's email parser cannot read (aiohttp parses it with that parser)
is refused or accepted by its media type, never answered 500."""

from __future__ import annotations

from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from openconnector.gateway.core import Gateway
from openconnector.gateway.webhooks import _GatewayPorts


async def test_a_content_type_the_email_parser_fails_on_is_read_as_sent() -> None:
    headers = CIMultiDict({"Content-Type": "application/json; x*"})
    request = make_mocked_request("POST", "/webhooks/x", headers=headers, payload=EMPTY_PAYLOAD)
    ports = _GatewayPorts(Gateway(), request)
    inbound = await ports.read_request(1024)
    assert inbound.content_type == "application/json; x*"
    assert inbound.body == b""
