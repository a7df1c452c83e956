"""Generated resources for the benchmarks: the ingest path, fan-out and many filtered subscriptions.

Everything is built as plain manifest dicts (what ``kubectl apply`` and standalone mode read), so the same
generator feeds a manifest directory, the apiserver and :func:`resources` for the pure match benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from openconnector.api.common import GROUP, VERSION
from openconnector.resources import Resource, resource_from_object

API_VERSION = f"{GROUP}/{VERSION}"
NAMESPACE = "bench"
SOURCE = "urn:nld:oin:00000001823288444000:systeem:bench"
INGEST_TYPE = "nl.bench.ingest.created"
INGEST_EVENT = "bench-ingest"
INGEST_ENDPOINT = "bench/ingest"

Manifest = dict[str, Any]


def _object(kind: str, name: str, spec: dict[str, Any], namespace: str = NAMESPACE) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def event(name: str, type_: str, namespace: str = NAMESPACE) -> Manifest:
    return _object("Event", name, {"name": name, "type": type_, "source": SOURCE}, namespace)


def consumer(name: str, endpoint: str, event_name: str, namespace: str = NAMESPACE) -> Manifest:
    """A targetless Consumer without auth or mapping: every webhook only emits ``event_name``."""
    spec = {"endpoint": endpoint, "event": event_name, "auth": {"type": "none"}}
    return _object("Consumer", name, spec, namespace)


def subscription(
    name: str,
    event_type: str,
    endpoint: str,
    *,
    filters: list[dict[str, Any]] | None = None,
    content_mode: str = "structured",
    namespace: str = NAMESPACE,
    max_concurrency: int | None = None,
) -> Manifest:
    spec: dict[str, Any] = {"eventType": event_type, "endpoint": endpoint, "contentMode": content_mode}
    if filters is not None:
        spec["filters"] = filters
    # No retries: a benchmark delivery that fails must show up as a count, not as hidden extra load.
    spec["delivery"] = {"retries": 0}
    if max_concurrency is not None:
        spec["delivery"]["maxConcurrency"] = max_concurrency
    return _object("EventSubscription", name, spec, namespace)


def ingest_manifests(
    sink_url: str,
    subscriptions: int = 1,
    content_mode: str = "structured",
    max_concurrency: int | None = None,
) -> list[Manifest]:
    """Webhook -> targetless Consumer -> Event -> ``subscriptions`` subscriptions into one sink.

    ``max_concurrency`` (default: the spec's, 4): the ingest comparisons pass the load's connection
    count, so the gateway may have as many deliveries in flight as the proxy has forwards."""
    docs = [event(INGEST_EVENT, INGEST_TYPE), consumer("bench-ingest", INGEST_ENDPOINT, INGEST_EVENT)]
    docs += [
        subscription(
            f"bench-sub-{i:04d}",
            INGEST_TYPE,
            f"{sink_url}/deliver/{i}",
            content_mode=content_mode,
            max_concurrency=max_concurrency,
        )
        for i in range(subscriptions)
    ]
    return docs


# ------------------------------------------------------------------------------- filtered subscriptions

# One filter per dialect the gateway supports; every probe event carries the attributes they read.
# Each dialect appears with a few parameter values, so the compiled set is varied, as in a real cluster
# (shared filter shapes, different values), without compiling 10k distinct CESQL programs.
DIALECTS = ("none", "exact", "prefix", "suffix", "all", "any", "not", "sql", "jsonLogic")


def dialect_filter(dialect: str, variant: int) -> list[dict[str, Any]] | None:
    digit = str(variant % 10)
    if dialect == "none":
        return None
    if dialect == "exact":
        return [{"exact": {"source": SOURCE}}]
    if dialect == "prefix":
        return [{"prefix": {"subject": f"zaak-{digit}"}}]
    if dialect == "suffix":
        return [{"suffix": {"subject": digit}}]
    if dialect == "all":
        return [{"all": [{"exact": {"source": SOURCE}}, {"prefix": {"subject": "zaak-"}}]}]
    if dialect == "any":
        return [{"any": [{"prefix": {"subject": f"zaak-{digit}"}}, {"suffix": {"subject": digit}}]}]
    if dialect == "not":
        return [{"not": {"exact": {"subject": f"zaak-{digit}"}}}]
    if dialect == "sql":
        return [{"sql": f"source LIKE 'urn:nld:%' AND subject <> 'zaak-{digit}'"}]
    if dialect == "jsonLogic":
        rule = {
            "and": [
                {"!==": [{"var": "data.status"}, "gesloten"]},
                {">": [{"var": "data.amount"}, variant % 10]},
            ]
        }
        return [{"jsonLogic": rule}]
    raise ValueError(f"unknown dialect {dialect!r}")


def type_name(index: int) -> str:
    return f"nl.bench.t{index:05d}.created"


def filtered_subscriptions(
    count: int, types: int, endpoint: str, namespace: str = NAMESPACE
) -> Iterator[Manifest]:
    """``count`` subscriptions spread round-robin over ``types`` event types, dialects mixed evenly."""
    for i in range(count):
        dialect = DIALECTS[i % len(DIALECTS)]
        yield subscription(
            f"sub-{i:05d}",
            type_name(i % types),
            f"{endpoint}/{i}",
            filters=dialect_filter(dialect, i // len(DIALECTS)),
            namespace=namespace,
        )


def types_for(count: int) -> int:
    """Event types for ``count`` subscriptions: ten subscriptions per type, at most 1,000 types."""
    return max(1, min(1000, count // 10))


def resources(docs: Iterable[Manifest]) -> dict[Any, Resource]:
    found: dict[Any, Resource] = {}
    for doc in docs:
        resource = resource_from_object(doc)
        if resource is None:
            raise ValueError(f"not one of our resources: {doc.get('kind')}")
        found[resource.key] = resource
    return found


def write_dir(directory: Path, docs: Iterable[Manifest]) -> Path:
    """One YAML stream of JSON documents (JSON is YAML; dumping 10k documents as block YAML is slow)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "bench.yaml").open("w", encoding="utf-8") as out:
        for doc in docs:
            out.write("---\n")
            out.write(json.dumps(doc))
            out.write("\n")
    return directory
