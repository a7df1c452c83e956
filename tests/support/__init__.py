"""Helpers every test tier shares: loopback sinks (``sinks``), an HTTP client with a problem+json check
(``http``) and one poller (``polling.eventually``)."""
