"""The routing-table compiler: references, conflicts, namespaces, schemas, memoisation."""

from __future__ import annotations

from typing import Any

from openconnector.egress import EgressPolicy
from openconnector.resources import Resource, ResourceKey, SecretOrConfigMap
from openconnector.routing.compiler import Memo, compile_table, resolve_endpoint
from openconnector.routing.table import RoutingTable

TYPE = "nl.example.thing.created"


def res(kind: str, name: str, spec: dict[str, Any], namespace: str = "ns", created: str = "") -> Resource:
    return Resource(kind=kind, namespace=namespace, name=name, spec=spec, created=created)


def event(name: str = "thing", namespace: str = "ns", created: str = "", **spec: Any) -> Resource:
    return res("Event", name, {"type": TYPE, "source": "urn:nld:x", **spec}, namespace, created)


def sub(name: str, namespace: str = "ns", **spec: Any) -> Resource:
    return res(
        "EventSubscription", name, {"eventType": TYPE, "endpoint": "http://127.0.0.1:1/x", **spec}, namespace
    )


def table(
    *items: Resource, secrets: tuple[SecretOrConfigMap, ...] = (), memo: Memo | None = None
) -> RoutingTable:
    return compile_table({r.key: r for r in items}, {s.key: s for s in secrets}, version=1, memo=memo)


def result(t: RoutingTable, kind: str, name: str, namespace: str = "ns") -> tuple[bool, str, str]:
    r = t.results[ResourceKey(kind, namespace, name)]
    return r.ready, r.reason, r.message


def test_schema_refs_must_resolve_inside_the_schema_and_nothing_is_fetched() -> None:
    local = {
        "$defs": {"id": {"type": "string"}},
        "type": "object",
        "properties": {"id": {"$ref": "#/$defs/id"}},
    }
    t = table(event(schema={"inline": local}))
    assert result(t, "Event", "thing")[0]
    validate = t.events_by_type[TYPE].validate_data
    assert validate is not None
    assert validate({"id": 5}) == ["/id: 5 is not of type 'string'"]
    for ref in ("http://127.0.0.1:1/remote.json", "#/$defs/missing"):
        t = table(event(schema={"inline": {"$ref": ref}}))
        ready, reason, message = result(t, "Event", "thing")
        assert (ready, reason) == (False, "InvalidSchema")
        assert message.startswith(f"spec.schema.inline: $ref {ref!r} does not resolve inside the schema")


def test_a_type_is_unique_per_namespace_but_may_repeat_across_namespaces() -> None:
    t = table(
        event("first", created="2026-01-01T00:00:00Z"),
        event("second", created="2026-01-02T00:00:00Z"),
        event("elsewhere", namespace="other"),
    )
    assert result(t, "Event", "first")[0]
    assert result(t, "Event", "second")[:2] == (False, "TypeConflict")
    assert result(t, "Event", "elsewhere", "other")[0]
    assert sorted(t.namespaces_defining(TYPE)) == ["ns", "other"]


def test_the_older_consumer_keeps_a_contested_endpoint() -> None:
    spec = {"endpoint": "/shared/hook", "event": "thing"}
    t = table(
        event(),
        res("Consumer", "newer", spec, created="2026-01-02T00:00:00Z"),
        res("Consumer", "older", {**spec, "endpoint": "shared/hook"}, created="2026-01-01T00:00:00Z"),
    )
    assert result(t, "Consumer", "older")[0]
    ready, reason, message = result(t, "Consumer", "newer")
    assert (ready, reason) == (False, "EndpointConflict")
    assert message == "spec.endpoint: /webhooks/shared/hook is already served by Consumer ns/older"


def test_a_broken_resource_never_breaks_the_others() -> None:
    t = table(event(), sub("good"), sub("bad", filters=[{"sql": "AND"}]), sub("worse", method="DELETE"))
    assert result(t, "EventSubscription", "good")[0]
    assert result(t, "EventSubscription", "bad")[:2] == (False, "InvalidFilter")
    assert result(t, "EventSubscription", "worse")[:2] == (False, "InvalidSpec")
    assert [s.key.name for s in t.subscriptions()] == ["good"]


def test_subscriptions_only_see_their_own_namespace() -> None:
    t = table(event(), sub("here"), sub("there", namespace="other"), sub("all", eventType="*"))
    attributes = {"type": TYPE, "source": "urn:nld:x", "id": "1", "specversion": "1.0"}
    assert sorted(s.key.name for s in t.match("ns", attributes, None)) == ["all", "here"]
    assert [s.key.name for s in t.match("other", attributes, None)] == ["there"]
    assert t.match("nowhere", attributes, None) == []


def test_secret_references_resolve_and_a_missing_one_names_the_field() -> None:
    auth = {"type": "bearer", "secretRef": {"name": "creds", "key": "token"}}
    secret = SecretOrConfigMap("ns", "creds", {"token": b"s3cret\n"})
    t = table(sub("with-token", auth=auth), secrets=(secret,))
    route = t.subscriptions()[0]
    assert route.target.auth_headers == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(route)
    t = table(sub("with-token", auth=auth))
    assert result(t, "EventSubscription", "with-token") == (
        False, "SecretNotFound", "spec.auth.secretRef: Secret 'creds' not found",
    )  # fmt: skip


def test_internal_endpoint_references() -> None:
    source = res("Source", "api", {"location": "http://127.0.0.1:9100/base/"})
    t = table(source, sub("via-source", endpoint="source:api/hooks"))
    assert t.subscriptions()[0].target.url == "http://127.0.0.1:9100/base/hooks"
    into_apps = EgressPolicy.build(allow_service_namespaces=["apps"])  # other namespaces: refused by default
    assert resolve_endpoint("service:notifier.apps:8080/in", "ns", {}, "spec.endpoint", into_apps) == (
        "http://notifier.apps.svc:8080/in"
    )
    assert resolve_endpoint("service:notifier", "ns", {}, "spec.endpoint") == "http://notifier.ns.svc:80/"
    t = table(sub("dangling", endpoint="source:missing"))
    assert result(t, "EventSubscription", "dangling")[:2] == (False, "SourceNotFound")


def test_unchanged_definitions_are_not_compiled_again() -> None:
    memo = Memo()
    filters = [{"sql": "subject LIKE 'a%'"}]
    first = table(event(), sub("a", filters=filters), memo=memo)
    second = table(event(), sub("a", filters=filters), sub("b"), memo=memo)
    assert first.subscriptions()[0].matches is second.subscriptions()[0].matches
