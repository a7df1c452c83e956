"""Consumers: what happens to a webhook between the HTTP server and delivery, without the HTTP server.

- :mod:`~openconnector.consumers.verifiers`: a Consumer's ``auth`` block compiled into a verifier;
- :mod:`~openconnector.consumers.standard_webhooks`: Standard Webhooks signing (outbound deliveries) and
  verification (inbound), with the one secret decoder;
- :mod:`~openconnector.consumers.replay`: the replay store interface and the in-process store;
- :mod:`~openconnector.consumers.allow_list`: ``allowedIPs`` and trusted proxies;
- :mod:`~openconnector.consumers.targets`: the request to a Source or register, and its answer;
- :mod:`~openconnector.consumers.ingest`: the steps of one request, with the gateway behind ports.

Nothing here imports aiohttp; ``gateway/webhooks.py`` is the HTTP adapter.
"""
