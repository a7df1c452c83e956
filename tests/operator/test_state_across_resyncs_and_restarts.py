"""The operator's state across resyncs and restarts, against kmock: ghosts dropped by the resync, counters
that survive not-ready spells, restarts and re-creation, stale status fields cleared, recompiles only for
referenced Secrets, and no repeated Warning Events after a restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from openconnector.resources import ResourceKey
from tests.support.polling import eventually
from tests.support.sinks import RefusingEndpoint, Reply, Sink

from .conftest import RunningOperator, StartOperator
from .kube import NAMESPACE, Apiserver, Kubectl, condition, ready_reason
from .specs import ZAAK_UPDATED, cloud_event, event_spec, subscription_spec

BROKEN_FILTER = {"filters": [{"sql": "type = "}]}  # CESQL that does not parse: InvalidFilter
BEARER = {"type": "bearer", "secretRef": {"name": "subscriber-credentials", "key": "token"}}


async def stored_status(
    kube: Kubectl, kind: str, name: str, check: Callable[[dict[str, Any]], object], what: str
) -> dict[str, Any]:
    """Wait until the status kmock stores (what the operator PATCHed) passes ``check``; returns it."""
    await eventually(lambda: check(kube.status(kind, name)), what=f"{kind} {name}: {what} in stored status")
    return kube.status(kind, name)


async def live_status(op: RunningOperator, kind: str, name: str) -> dict[str, Any]:
    status = await op.resource_status(kind, name)
    assert status is not None, f"the gateway does not know {kind} {name}"
    return status


async def subscribed(kube: Kubectl, op: RunningOperator, endpoint: str, **extra: Any) -> None:
    """An Event and a subscription ``notifier`` to it, compiled and routed."""
    await kube.create("Event", "zaak-created", event_spec())
    await kube.create("EventSubscription", "notifier", subscription_spec(endpoint, **extra))
    await op.wait_observed("EventSubscription", "notifier", 1)


async def posts_settled(op: RunningOperator) -> None:
    """Every core/v1 Event the operator decided to post has been answered."""
    await eventually(lambda: not op.core.events.pending, what="the operator's Event posts answered")


# ------------------------------------------------------------------------------------------ 1. ghosts


async def test_resync_drops_objects_deleted_while_the_watch_was_away(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink() as subscriber:
        op = await start_operator()
        await subscribed(kube, op, subscriber.url)
        await kube.create("Consumer", "intake", {"endpoint": "intake", "event": "zaak-created"})
        await op.wait_observed("Consumer", "intake", 1)
        assert (await op.webhook("intake")).status == 200
        await subscriber.wait_for(1)

        kube.vanish("Consumer", "intake")
        kube.vanish("EventSubscription", "notifier")
        # The watch saw nothing: both are still routed (ghosts).
        assert (await op.webhook("intake")).status == 200
        await subscriber.wait_for(2)

        assert await op.core.resync() == 2
        await op.wait_gone("Consumer", "intake")
        await op.wait_gone("EventSubscription", "notifier")
        assert (await op.webhook("intake")).status == 404
        assert (await op.publish(cloud_event())).json()["deliveries"] == 0
        assert await op.core.resync() == 0  # nothing left to drop
    assert len(subscriber.requests) == 2


async def test_resync_drops_a_ghost_secret_and_adds_an_object_the_watch_missed(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    op = await start_operator()
    await kube.create_secret("subscriber-credentials", {"token": "t"})
    await subscribed(kube, op, "http://127.0.0.1:9/hooks", auth=BEARER)

    kube.vanish("Secret", "subscriber-credentials")
    kube.preload("Event", "zaak-updated", event_spec(ZAAK_UPDATED))  # created without a watch event
    assert (await op.publish(cloud_event(ZAAK_UPDATED))).status == 422

    assert await op.core.resync() == 1
    status = await op.wait_observed("EventSubscription", "notifier", 1, reason="SecretNotFound")
    assert "spec.auth.secretRef" in condition(status, "Ready")["message"]
    await op.wait_observed("Event", "zaak-updated", 1)
    assert (await op.publish(cloud_event(ZAAK_UPDATED))).status == 202


async def test_resync_leaves_alone_what_the_watch_touched_during_its_list(
    kube: Kubectl, start_operator: StartOperator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LIST is a snapshot: an object created after it (absent from it) or deleted after it (still in
    it) is reported by the watch while the LIST is under way. The watch is newer and wins."""
    op = await start_operator()
    await kube.create("Event", "zaak-created", event_spec())
    await op.wait_observed("Event", "zaak-created", 1)
    late = kube.manifest("Event", "zaak-updated", event_spec(ZAAK_UPDATED))
    Apiserver._on_create(late)
    original = op.core._list_all

    async def list_while_the_watch_reports() -> list[dict[str, Any]]:
        snapshot = await original()
        assert [i["metadata"]["name"] for i in snapshot if i["kind"] == "Event"] == ["zaak-created"]
        op.core.on_object("ADDED", late)
        op.core.on_object("DELETED", kube.stored("Event", "zaak-created"))
        return snapshot

    monkeypatch.setattr(op.core, "_list_all", list_while_the_watch_reports)
    assert await op.core.resync() == 0
    store = op.core.reconciler.store.resources
    assert ResourceKey("Event", NAMESPACE, "zaak-updated") in store
    assert ResourceKey("Event", NAMESPACE, "zaak-created") not in store
    await op.wait_observed("Event", "zaak-updated", 1)
    await op.wait_gone("Event", "zaak-created")


# ------------------------------------------------------------------------ 2. counters and not-ready


async def test_counters_survive_a_not_ready_spell(kube: Kubectl, start_operator: StartOperator) -> None:
    async with Sink() as subscriber:
        op = await start_operator(status_interval=0.2)
        await subscribed(kube, op, subscriber.url)
        for _ in range(2):
            await op.publish(cloud_event())
        await subscriber.wait_for(2)
        await stored_status(kube, "EventSubscription", "notifier", lambda s: s.get("delivered") == 2, "2")

        await kube.patch_spec("EventSubscription", "notifier", BROKEN_FILTER)
        await op.wait_observed("EventSubscription", "notifier", 2, reason="InvalidFilter")
        await stored_status(
            kube, "EventSubscription", "notifier", lambda s: ready_reason(s) == "InvalidFilter", "not ready"
        )

        await kube.patch_spec("EventSubscription", "notifier", {"filters": None})
        status = await op.wait_observed("EventSubscription", "notifier", 3)
        assert (status["delivered"], status["phase"]) == (2, "Active")
        stored = await stored_status(
            kube, "EventSubscription", "notifier", lambda s: ready_reason(s) == "Compiled", "ready again"
        )
        assert stored["delivered"] == 2

        await op.publish(cloud_event())
        await subscriber.wait_for(3)
        await stored_status(kube, "EventSubscription", "notifier", lambda s: s.get("delivered") == 3, "3")


async def test_counters_survive_a_restart_during_a_not_ready_spell(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink() as subscriber:
        first = await start_operator(status_interval=0.2)
        await subscribed(kube, first, subscriber.url)
        for _ in range(2):
            await first.publish(cloud_event())
        await subscriber.wait_for(2)
        await kube.patch_spec("EventSubscription", "notifier", BROKEN_FILTER)
        await first.wait_observed("EventSubscription", "notifier", 2, reason="InvalidFilter")
        await first.stop()
        assert kube.status("EventSubscription", "notifier")["delivered"] == 2  # what the next one seeds from

        second = await start_operator(status_interval=0.2)
        await kube.patch_spec("EventSubscription", "notifier", {"filters": None})
        status = await second.wait_observed("EventSubscription", "notifier", 3)
        assert status["delivered"] == 2


# ------------------------------------------------------------------------ 3. suspended across restart


async def suspended(kube: Kubectl, op: RunningOperator, subscriber: Sink) -> None:
    """Subscribe ``subscriber`` (answering 410 Gone) and deliver once: the subscription suspends."""
    await subscribed(kube, op, subscriber.url)
    await op.publish(cloud_event())
    await subscriber.wait_for(1)
    status = await stored_status(
        kube, "EventSubscription", "notifier", lambda s: s.get("phase") == "Suspended", "phase Suspended"
    )
    healthy = condition(status, "Healthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "EndpointGone")
    await eventually(lambda: kube.core_events(name="notifier", type_="Warning"), what="a Warning Event")


async def test_a_suspended_subscription_stays_suspended_across_a_restart_until_its_spec_changes(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink(default=Reply(410)) as subscriber:
        first = await start_operator(status_interval=0.2)
        await suspended(kube, first, subscriber)
        await first.stop()

        second = await start_operator(status_interval=0.2)
        status = await live_status(second, "EventSubscription", "notifier")
        assert status["phase"] == "Suspended"
        assert condition(status, "Healthy")["reason"] == "EndpointGone"
        failed = status["failed"]
        await second.publish(cloud_event())  # given up at once, never sent
        await second.wait_status(
            "EventSubscription", "notifier", lambda s: s["failed"] == failed + 1, "the event given up"
        )
        assert len(subscriber.requests) == 1
        await posts_settled(second)
        assert len(kube.core_events(name="notifier", type_="Warning")) == 1  # not announced again

        subscriber.default = Reply(200)
        await kube.patch_spec("EventSubscription", "notifier", {"delivery": {"timeout": "PT4S"}})
        status = await second.wait_observed("EventSubscription", "notifier", 2)
        assert status["phase"] == "Active"
        await second.publish(cloud_event())
        await subscriber.wait_for(2)
        await stored_status(kube, "EventSubscription", "notifier", lambda s: s.get("delivered") == 1, "1")


async def test_a_spec_change_while_the_operator_was_away_resumes_a_suspended_subscription(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink(default=Reply(410)) as subscriber:
        first = await start_operator(status_interval=0.2)
        await suspended(kube, first, subscriber)
        await first.stop()

        subscriber.default = Reply(200)
        await kube.patch_spec("EventSubscription", "notifier", {"delivery": {"timeout": "PT4S"}})
        second = await start_operator(status_interval=0.2)
        status = await second.wait_observed("EventSubscription", "notifier", 2)
        assert status["phase"] == "Active"
        assert (await second.publish(cloud_event())).json()["deliveries"] == 1
        await subscriber.wait_for(2)


# ----------------------------------------------------------------------------------- 4. re-created


async def test_a_consumer_recreated_behind_the_watch_counts_from_zero(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    """Deleted and created again while the watch was away: the watch reports it as one with a new uid."""
    op = await start_operator(status_interval=0.2)
    await kube.create("Event", "zaak-created", event_spec())
    consumer = {"endpoint": "intake", "event": "zaak-created"}
    old = await kube.create("Consumer", "intake", consumer)
    await op.wait_observed("Consumer", "intake", 1)
    for _ in range(2):
        assert (await op.webhook("intake")).status == 200
    await stored_status(kube, "Consumer", "intake", lambda s: s.get("received") == 2, "received=2")

    kube.vanish("Consumer", "intake")
    new = await kube.create("Consumer", "intake", consumer)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    await op.wait_status("Consumer", "intake", lambda s: s["received"] == 0, "received=0")
    await stored_status(kube, "Consumer", "intake", lambda s: s.get("received") == 0, "received=0")
    assert (await op.webhook("intake")).status == 200
    await stored_status(kube, "Consumer", "intake", lambda s: s.get("received") == 1, "received=1")


@pytest.mark.parametrize("recreate", ["behind-the-watch", "delete-then-create"])
async def test_a_recreated_subscription_counts_from_zero(
    kube: Kubectl, start_operator: StartOperator, recreate: str
) -> None:
    async with Sink() as subscriber:
        op = await start_operator(status_interval=0.2)
        await subscribed(kube, op, subscriber.url)
        for _ in range(2):
            await op.publish(cloud_event())
        await subscriber.wait_for(2)
        await stored_status(kube, "EventSubscription", "notifier", lambda s: s.get("delivered") == 2, "2")

        if recreate == "behind-the-watch":
            kube.vanish("EventSubscription", "notifier")
        else:
            await kube.delete("EventSubscription", "notifier")
        await kube.create("EventSubscription", "notifier", subscription_spec(subscriber.url))
        uid = kube.stored("EventSubscription", "notifier")["metadata"]["uid"]

        key = ResourceKey("EventSubscription", NAMESPACE, "notifier")
        store, reconciler = op.core.reconciler.store, op.core.reconciler

        def recompiled() -> bool:
            known = store.resources.get(key)
            return known is not None and known.uid == uid and reconciler.compiled_revision == store.revision

        await eventually(recompiled, what="a routing table with the new subscription")
        status = await live_status(op, "EventSubscription", "notifier")
        assert status["delivered"] == 0
        await stored_status(kube, "EventSubscription", "notifier", lambda s: s.get("delivered") == 0, "0")
        assert (await op.publish(cloud_event())).json()["deliveries"] == 1  # and it is still routed
        await subscriber.wait_for(3)
        await stored_status(kube, "EventSubscription", "notifier", lambda s: s.get("delivered") == 1, "1")


# ---------------------------------------------------------------------------------- 5. stale fields


async def test_fields_no_longer_in_the_status_are_removed_from_the_stored_status(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    """Not routed (not ready): url, phase and successRatio no longer apply and must go; the counters and
    the last error are kept aside for when it compiles again, and still shown."""
    async with Sink(default=Reply(500)) as subscriber:
        op = await start_operator(status_interval=0.2)
        await subscribed(kube, op, subscriber.url)
        await op.publish(cloud_event())
        await subscriber.wait_for(1)
        before = await stored_status(
            kube, "EventSubscription", "notifier", lambda s: "lastError" in s, "a lastError"
        )
        assert (before["url"], before["phase"], before["successRatio"]) == (subscriber.url, "Active", 0.0)

        await kube.patch_spec("EventSubscription", "notifier", BROKEN_FILTER)
        after = await stored_status(
            kube, "EventSubscription", "notifier", lambda s: ready_reason(s) == "InvalidFilter", "not ready"
        )
        assert {"url", "phase", "successRatio"}.isdisjoint(after)
        assert [c["type"] for c in after["conditions"]] == ["Ready"]  # Healthy went with the route
        assert (after["failed"], after["lastError"]) == (1, before["lastError"])
        last_patch = kube.status_patches("EventSubscription", "notifier")[-1]["status"]
        assert (last_patch["url"], last_patch["phase"], last_patch["successRatio"]) == (None, None, None)


async def test_a_nested_field_no_longer_in_the_status_is_removed_from_the_stored_status(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink(default=Reply(500)) as subscriber:
        op = await start_operator(status_interval=0.2)
        await subscribed(kube, op, subscriber.url)
        await op.publish(cloud_event())
        await stored_status(
            kube,
            "EventSubscription",
            "notifier",
            lambda s: (s.get("lastError") or {}).get("statusCode") == 500,
            "lastError with statusCode 500",
        )
        with RefusingEndpoint() as refusing:  # the next error has no HTTP status at all
            await kube.patch_spec("EventSubscription", "notifier", {"endpoint": refusing.url})
            await op.wait_observed("EventSubscription", "notifier", 2)
            await op.publish(cloud_event())
            live = await op.wait_status(
                "EventSubscription", "notifier", lambda s: s["failed"] == 2, "the second event failed"
            )
            assert "statusCode" not in live["lastError"]
            stored = await stored_status(
                kube, "EventSubscription", "notifier", lambda s: s.get("failed") == 2, "failed=2"
            )
            assert stored["lastError"] == live["lastError"]


async def test_a_consumer_url_is_removed_when_it_stops_being_routed(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    op = await start_operator(status_interval=0.2)
    await kube.create("Event", "zaak-created", event_spec())
    await kube.create("Mapping", "zaak-in", {"mapping": {"id": "zaak.id"}})
    spec = {"endpoint": "intake", "mappingId": "zaak-in", "event": "zaak-created"}
    await kube.create("Consumer", "intake", spec)
    await op.wait_observed("Consumer", "intake", 1)
    await stored_status(kube, "Consumer", "intake", lambda s: s.get("url") == "/webhooks/intake", "url")

    await kube.delete("Mapping", "zaak-in")
    status = await stored_status(
        kube, "Consumer", "intake", lambda s: ready_reason(s) == "MappingNotFound", "MappingNotFound"
    )
    assert "url" not in status


# ---------------------------------------------------------------------------- 6. referenced Secrets


async def test_only_referenced_secrets_trigger_a_recompile(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    op = await start_operator()
    await kube.create_secret("subscriber-credentials", {"token": "first"})
    await subscribed(kube, op, "http://127.0.0.1:9/hooks", auth=BEARER)
    reconciler = op.core.reconciler
    version, revision = await op.table_version(), reconciler.compiled_revision
    notified: list[None] = []
    original = reconciler.notify

    def counting_notify() -> None:
        notified.append(None)
        original()

    reconciler.notify = counting_notify  # type: ignore[method-assign]
    await kube.create_secret("unrelated", {"token": "one"})
    await kube.patch_secret("unrelated", {"token": "two"})
    # Same name as the referenced one, another namespace: not referenced either.
    await kube.create_secret("subscriber-credentials", {"token": "elsewhere"}, namespace="other")
    await kube.create_configmap("unrelated-schema", {"schema.json": "{}"})

    def seen(kind: str, name: str, namespace: str, value: bytes | None = None) -> bool:
        found = reconciler.store.secrets.get(ResourceKey(kind, namespace, name))
        return found is not None and (value is None or value in found.data.values())

    await eventually(lambda: seen("Secret", "unrelated", NAMESPACE, b"two"), what="unrelated Secret stored")
    await eventually(lambda: seen("Secret", "subscriber-credentials", "other"), what="other namespace")
    await eventually(lambda: seen("ConfigMap", "unrelated-schema", NAMESPACE), what="ConfigMap stored")
    # on_object notifies synchronously with the store update: had it wanted a compile, we would know.
    assert notified == []
    assert (await op.table_version(), reconciler.compiled_revision) == (version, revision)

    await kube.patch_secret("subscriber-credentials", {"token": "second"})
    await op.wait_recompiled(after=version)
    assert len(notified) == 1


async def test_creating_a_missing_referenced_secret_triggers_a_recompile(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    op = await start_operator()
    await kube.create("Event", "zaak-created", event_spec())
    spec = subscription_spec("http://127.0.0.1:9/hooks", auth=BEARER)
    await kube.create("EventSubscription", "notifier", spec)
    await op.wait_observed("EventSubscription", "notifier", 1, reason="SecretNotFound")
    await kube.create_secret("subscriber-credentials", {"token": "t"})
    await op.wait_observed("EventSubscription", "notifier", 1)


# ---------------------------------------------------------------------- 7. Warning Events on restart


async def test_a_restart_does_not_repeat_a_warning_event(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    first = await start_operator(status_interval=0.2)
    await kube.create("Event", "zaak-created", event_spec())
    spec = {"endpoint": "intake", "mappingId": "zaak-in", "event": "zaak-created"}
    await kube.create("Consumer", "intake", spec)
    await stored_status(
        kube, "Consumer", "intake", lambda s: ready_reason(s) == "MappingNotFound", "MappingNotFound"
    )
    await eventually(lambda: kube.core_events(name="intake", type_="Warning"), what="a Warning Event")
    await first.stop()

    second = await start_operator(status_interval=0.2)
    version = await second.table_version()
    await kube.create("Event", "other", event_spec(ZAAK_UPDATED))  # one more compile after the replay
    await second.wait_recompiled(after=version)
    await posts_settled(second)
    assert len(kube.core_events(name="intake", type_="Warning")) == 1
    assert second.core.client is not None
    assert second.core.client.events_posted == 0

    # The seeded state is the last announced one, not a gag: the recovery is announced.
    await kube.create("Mapping", "zaak-in", {"mapping": {"id": "zaak.id"}})
    await second.wait_observed("Consumer", "intake", 1)
    await eventually(lambda: kube.core_events(name="intake", type_="Normal"), what="a Normal Event")
    assert len(kube.core_events(name="intake", type_="Warning")) == 1


async def test_a_problem_that_changed_while_the_operator_was_away_is_announced(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    first = await start_operator(status_interval=0.2)
    await kube.create("Event", "zaak-created", event_spec())
    await kube.create(
        "Consumer", "intake", {"endpoint": "intake", "mappingId": "zaak-in", "event": "zaak-created"}
    )
    await stored_status(
        kube, "Consumer", "intake", lambda s: ready_reason(s) == "MappingNotFound", "MappingNotFound"
    )
    await eventually(lambda: kube.core_events(name="intake", type_="Warning"), what="a Warning Event")
    await first.stop()

    await kube.patch_spec("Consumer", "intake", {"mappingId": "zaak-in-v2"})
    await start_operator(status_interval=0.2)
    await eventually(
        lambda: len(kube.core_events(name="intake", type_="Warning")) == 2, what="a second Warning Event"
    )
    assert "zaak-in-v2" in kube.core_events(name="intake", type_="Warning")[-1]["message"]
