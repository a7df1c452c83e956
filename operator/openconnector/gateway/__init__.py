"""The aiohttp gateway: webhook ingress, CloudEvents ingress, fan-out and the status API."""
