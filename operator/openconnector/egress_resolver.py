"""The connect-time half of the egress policy (:mod:`openconnector.egress`): an aiohttp resolver that
refuses a name when any of its DNS answers is a denied address, so DNS rebinding cannot reach one.

Kept apart from the pure policy so that ``routing/`` can check URLs without importing aiohttp.
"""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from openconnector.egress import EgressPolicy, parse_host_address

__all__ = ["EgressResolver", "connector_for"]


class EgressResolver(AbstractResolver):
    """Resolves with the wrapped resolver, then refuses when any answer is a denied address.

    Refusing on *any* denied answer (not just dropping it) keeps a name with one public and one metadata
    address from reaching the metadata address on a retry.
    """

    def __init__(self, policy: EgressPolicy, resolver: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._resolver = resolver if resolver is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        refusal = self._policy.host_refusal(host)
        if refusal is not None:
            raise OSError(f"egress to {host} refused: {refusal}")
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            address = parse_host_address(result["host"])
            refusal = None if address is None else self._policy.address_refusal(address)
            if refusal is not None:
                raise OSError(f"egress to {host} refused after resolution: {refusal}")
        return results

    async def close(self) -> None:
        await self._resolver.close()


def connector_for(
    policy: EgressPolicy, *, dns: AbstractResolver | None = None, **kwargs: object
) -> aiohttp.TCPConnector:
    """A TCPConnector whose every name lookup goes through the policy (``kwargs`` go to TCPConnector;
    ``dns`` replaces aiohttp's default resolver underneath, e.g. in tests).

    aiohttp does not call the resolver for a literal IP address; literal addresses cannot be rebound, so
    the compile-time check of the URL covers them.
    """
    return aiohttp.TCPConnector(resolver=EgressResolver(policy, dns), **kwargs)  # type: ignore[arg-type]
