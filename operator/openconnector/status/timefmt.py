"""Time formats: RFC 3339 as Kubernetes writes it (seconds for ``metav1.Time``, microseconds for
``metav1.MicroTime``)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(timestamp: float) -> str:
    """Unix time as RFC 3339 UTC with second precision, the form Kubernetes uses for times."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(timestamp: float) -> str:
    """Unix time as RFC 3339 UTC with microseconds (``metav1.MicroTime``: Leases, events.k8s.io)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
