"""The compiler reuses what an unchanged resource compiled to, and only that: a burst of applies must not
re-validate every resource on every compile, and a change anywhere a route depends on must show."""

from __future__ import annotations

import dataclasses
from typing import Any

from openconnector.egress import EgressPolicy
from openconnector.resources import Resource, ResourceKey, SecretOrConfigMap
from openconnector.routing.compiler import Memo, compile_table
from openconnector.routing.table import RoutingTable, SubscriptionRoute

TYPE = "nl.example.thing.created"


def sub(name: str, **spec: Any) -> Resource:
    body = {"eventType": TYPE, "endpoint": "http://127.0.0.1:1/x", **spec}
    return Resource(kind="EventSubscription", namespace="ns", name=name, spec=body)


def compile_all(
    *items: Resource,
    memo: Memo,
    secrets: tuple[SecretOrConfigMap, ...] = (),
    egress: EgressPolicy | None = None,
) -> RoutingTable:
    return compile_table(
        {r.key: r for r in items}, {s.key: s for s in secrets}, version=1, memo=memo, egress=egress
    )


def route(table: RoutingTable, name: str) -> SubscriptionRoute:
    return next(r for r in table.subscriptions() if r.key.name == name)


def test_an_unchanged_subscription_keeps_its_route_and_a_changed_one_is_compiled_again() -> None:
    memo = Memo()
    a, b = sub("a"), sub("b")
    first = compile_all(a, b, memo=memo)
    # The same objects, or equal ones (a directory rescan builds new objects): the same route.
    second = compile_all(a, dataclasses.replace(b), sub("c"), memo=memo)
    assert route(second, "a") is route(first, "a")
    assert route(second, "b") is route(first, "b")
    assert second.results[ResourceKey("EventSubscription", "ns", "a")].extra["url"] == "http://127.0.0.1:1/x"

    changed = sub("a", endpoint="http://127.0.0.1:2/y")
    third = compile_all(changed, b, memo=memo)
    assert route(third, "a").target.url == "http://127.0.0.1:2/y"
    bumped = compile_all(dataclasses.replace(changed, generation=2), b, memo=memo)
    assert route(bumped, "a").generation == 2


def test_a_new_egress_policy_checks_every_endpoint_again() -> None:
    memo = Memo()
    assert compile_all(sub("a"), memo=memo).subscriptions()
    strict = EgressPolicy.build("default", deny=["127.0.0.0/8"])
    refused = compile_all(sub("a"), memo=memo, egress=strict)
    result = refused.results[ResourceKey("EventSubscription", "ns", "a")]
    assert (result.ready, result.reason) == (False, "EgressDenied")


def test_a_subscription_that_references_a_secret_or_a_source_is_compiled_every_time() -> None:
    memo = Memo()
    auth = {"type": "bearer", "secretRef": {"name": "creds", "key": "token"}}
    with_secret = sub("a", auth=auth)
    old = SecretOrConfigMap("ns", "creds", {"token": b"old"})
    new = SecretOrConfigMap("ns", "creds", {"token": b"new"})
    compile_all(with_secret, memo=memo, secrets=(old,))
    rotated = compile_all(with_secret, memo=memo, secrets=(new,))
    assert route(rotated, "a").target.auth_headers == {"Authorization": "Bearer new"}

    via_source = sub("b", endpoint="source:api/hooks")
    source = Resource(kind="Source", namespace="ns", name="api", spec={"location": "http://127.0.0.1:9/v1/"})
    moved = dataclasses.replace(source, spec={"location": "http://127.0.0.1:9/v2/"}, generation=2)
    compile_all(via_source, source, memo=memo)
    assert route(compile_all(via_source, moved, memo=memo), "b").target.url == "http://127.0.0.1:9/v2/hooks"


def test_what_a_deleted_resource_compiled_to_is_let_go() -> None:
    memo = Memo()
    compile_all(sub("a"), sub("b"), memo=memo)
    compile_all(sub("b"), memo=memo)
    assert memo.route(sub("a"), EgressPolicy()) is None
    assert memo.route(sub("b"), EgressPolicy()) is not None


def test_a_kept_result_names_where_the_resource_is_now() -> None:
    memo = Memo()
    compile_all(dataclasses.replace(sub("a"), origin="one.yaml:1"), memo=memo)
    moved = compile_all(dataclasses.replace(sub("a"), origin="two.yaml:3"), memo=memo)
    assert moved.results[ResourceKey("EventSubscription", "ns", "a")].origin == "two.yaml:3"
