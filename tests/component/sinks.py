"""Old import path: the loopback sinks live in :mod:`tests.support.sinks`."""

from tests.support.sinks import RecordedRequest, RefusingEndpoint, Reply, Sink, replies

__all__ = ["RecordedRequest", "RefusingEndpoint", "Reply", "Sink", "replies"]
