"""What the operator writes back: status subresource patches and core/v1 Events, as kmock received them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kmock
import pytest

from tests.support.polling import eventually
from tests.support.sinks import Sink

from .conftest import RunningOperator, StartOperator
from .kube import NAMESPACE, Kubectl, condition, ready_reason
from .specs import cloud_event, event_spec, subscription_spec

INVALID = [
    pytest.param(
        "EventSubscription",
        subscription_spec("http://127.0.0.1:9/hooks", filters=[{"regex": {"type": "nl\\..*"}}]),
        "InvalidFilter",
        "spec.filters[0]",
        id="unknown-filter-dialect",
    ),
    pytest.param(
        "Consumer",
        {"endpoint": "zaken", "mappingId": "no-such-mapping", "event": "zaak-created"},
        "MappingNotFound",
        "spec.mappingId",
        id="mapping-id-naming-no-mapping",
    ),
    pytest.param(
        "EventSubscription",
        subscription_spec("http://127.0.0.1:9/hooks", status="stopped"),
        "InvalidSpec",
        "spec.status",
        id="schema-violation",  # the apiserver's schema would refuse it; kmock has none: we still must
    ),
]


async def wait_patched_status(
    kube: Kubectl, kind: str, name: str, check: Callable[[dict[str, Any]], object], what: str
) -> dict[str, Any]:
    """Wait until the status kmock stores for an object (what the operator PATCHed) passes ``check``."""
    await eventually(
        lambda: check(kube.status(kind, name)), what=f"{kind} {name}: {what} in the stored status"
    )
    return kube.status(kind, name)


async def settle_status_writer(kube: Kubectl, op: RunningOperator) -> None:
    """Wait until every status PATCH kmock received has also been answered to the operator."""

    def all_answered() -> bool:
        sent = sum(
            1 for r in kube.requests() if r.method == kmock.method.PATCH and r.url.path.endswith("/status")
        )
        return op.core.client is not None and op.core.client.patches == sent

    await eventually(all_answered, what="the status writer idle")


@pytest.mark.parametrize(("kind", "spec", "reason", "field"), INVALID)
async def test_invalid_spec_gives_ready_false_and_a_warning_naming_the_field(
    kube: Kubectl, start_operator: StartOperator, kind: str, spec: dict[str, Any], reason: str, field: str
) -> None:
    await start_operator()
    await kube.create("Event", "zaak-created", event_spec())
    created = await kube.create(kind, "broken", spec)

    status = await wait_patched_status(kube, kind, "broken", lambda s: ready_reason(s) == reason, reason)
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert field in ready["message"]
    assert ready["observedGeneration"] == 1

    await eventually(lambda: kube.core_events(name="broken"), what="a core/v1 Event about broken")
    (warning,) = kube.core_events(name="broken")
    assert (warning["type"], warning["reason"]) == ("Warning", reason)
    assert field in warning["message"]
    assert warning["involvedObject"] == {
        "apiVersion": "openconnector.nl/v1alpha1",
        "kind": kind,
        "name": "broken",
        "namespace": NAMESPACE,
        "uid": created["metadata"]["uid"],
    }
    assert warning["metadata"]["namespace"] == NAMESPACE


async def test_a_fixed_spec_turns_ready_and_says_so_once(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    op = await start_operator()
    await kube.create("Event", "zaak-created", event_spec())
    await kube.create(
        "Consumer", "zaken", {"endpoint": "zaken", "mappingId": "zaak-in", "event": "zaak-created"}
    )
    await wait_patched_status(
        kube, "Consumer", "zaken", lambda s: s.get("conditions"), "the first status of Consumer zaken"
    )
    # Unrelated changes recompile the table: the unchanged problem is not announced again.
    for index in range(3):
        version = await op.table_version()
        await kube.create("Event", f"other-{index}", event_spec(f"nl.vng.zgw.other{index}.created"))
        await op.wait_recompiled(after=version)
    assert len(kube.core_events(name="zaken", type_="Warning")) == 1

    await kube.create("Mapping", "zaak-in", {"mapping": {"id": "zaak.id"}})
    status = await wait_patched_status(
        kube,
        "Consumer",
        "zaken",
        lambda s: ready_reason(s) == "Compiled",
        "Consumer zaken Ready=True in its stored status",
    )
    assert condition(status, "Ready")["reason"] == "Compiled"
    assert status["url"] == "/webhooks/zaken"
    await eventually(lambda: kube.core_events(name="zaken", type_="Normal"), what="a Normal Event")
    (recovered,) = kube.core_events(name="zaken", type_="Normal")
    assert recovered["reason"] == "Compiled"
    assert len(kube.core_events(name="zaken", type_="Warning")) == 1


async def test_delivery_counters_flow_into_status(kube: Kubectl, start_operator: StartOperator) -> None:
    async with Sink() as subscriber:
        op = await start_operator(status_interval=0.2)
        await kube.create("Event", "zaak-created", event_spec())
        await kube.create("EventSubscription", "notifier", subscription_spec(subscriber.url))
        first = await wait_patched_status(
            kube, "EventSubscription", "notifier", lambda s: s.get("conditions"), "a first status"
        )
        assert (first["delivered"], first["phase"]) == (0, "Active")
        assert condition(first, "Healthy")["reason"] == "NoDeliveries"

        assert (await op.publish(cloud_event())).json()["deliveries"] == 1
        await subscriber.wait_for(1)
        status = await wait_patched_status(
            kube, "EventSubscription", "notifier", lambda s: s.get("delivered") == 1, "delivered=1 in status"
        )
        assert status["lastDelivery"]["statusCode"] == 200
        assert status["lastDelivery"]["time"].endswith("Z")
        assert status["successRatio"] == 1.0
        # One attempt is below the minimum sample (issue 16): not judged yet.
        assert condition(status, "Healthy")["reason"] == "NotEnoughAttempts"

        # Nothing changed since: the writer has nothing to say, whatever the interval.
        await settle_status_writer(kube, op)
        patches = len(kube.status_patches("EventSubscription", "notifier"))
        assert await op.core.flush_status() == 0
        assert len(kube.status_patches("EventSubscription", "notifier")) == patches


async def test_counters_are_written_at_most_once_per_interval(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink() as subscriber:
        op = await start_operator(status_interval=3600)
        await kube.create("Event", "zaak-created", event_spec())
        await kube.create("EventSubscription", "notifier", subscription_spec(subscriber.url))
        await wait_patched_status(
            kube, "EventSubscription", "notifier", lambda s: s.get("conditions"), "a first status"
        )
        # The first delivery turns Healthy to True: a condition change is written within a second.
        await op.publish(cloud_event())
        await wait_patched_status(
            kube, "EventSubscription", "notifier", lambda s: s.get("delivered") == 1, "delivered=1 in status"
        )
        await settle_status_writer(kube, op)
        patches = len(kube.status_patches("EventSubscription", "notifier"))

        # Two more deliveries move only counters: held back until the interval has passed.
        await op.publish(cloud_event())
        await op.publish(cloud_event())
        await subscriber.wait_for(3)
        live = await op.resource_status("EventSubscription", "notifier")
        assert live is not None
        assert live["delivered"] == 3
        assert await op.core.flush_status() == 0
        assert kube.status("EventSubscription", "notifier")["delivered"] == 1
        assert len(kube.status_patches("EventSubscription", "notifier")) == patches

        # A spec change (new generation) is written at once, and carries the held-back counters.
        await kube.patch_spec("EventSubscription", "notifier", {"delivery": {"timeout": "PT4S"}})
        status = await wait_patched_status(
            kube,
            "EventSubscription",
            "notifier",
            lambda s: s.get("observedGeneration") == 2,
            "observedGeneration=2 in status",
        )
        assert status["delivered"] == 3
        assert len(kube.status_patches("EventSubscription", "notifier")) == patches + 1


def previous_status(delivered: int) -> dict[str, Any]:
    """A status as a previous operator process left it."""
    ready = {"type": "Ready", "status": "True", "reason": "Compiled", "message": "compiled",
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}  # fmt: skip
    return {"observedGeneration": 1, "delivered": delivered, "failed": 0, "conditions": [ready]}


async def test_restart_continues_counting_from_the_stored_status(
    kube: Kubectl, start_operator: StartOperator
) -> None:
    async with Sink() as subscriber:
        kube.preload("Event", "zaak-created", event_spec(), status={"observedGeneration": 1, "received": 7})
        kube.preload(
            "EventSubscription", "notifier", subscription_spec(subscriber.url), status=previous_status(5)
        )
        kube.preload(
            "Consumer",
            "intake",
            {"endpoint": "intake", "event": "zaak-created"},
            status={"observedGeneration": 1, "received": 4, "forwarded": 4},
        )
        op = await start_operator(status_interval=0.2)

        assert (await op.webhook("intake", b'{"zaak": "Z-1"}')).status == 200
        await subscriber.wait_for(1)
        await wait_patched_status(
            kube, "EventSubscription", "notifier", lambda s: s.get("delivered") == 6, "delivered=6 in status"
        )
        await wait_patched_status(
            kube, "Consumer", "intake", lambda s: s.get("received") == 5, "received=5 in status"
        )
        await wait_patched_status(kube, "Event", "zaak-created", lambda s: s.get("emitted") == 1, "emitted=1")
        await settle_status_writer(kube, op)
        # Kopf's own listing and watch replayed every object as ADDED after the operator's LIST: the seed
        # was taken once, so nothing was counted twice.
        assert await op.core.flush_status() == 0
        assert kube.status("EventSubscription", "notifier")["delivered"] == 6
        assert (
            kube.status("Consumer", "intake")["received"],
            kube.status("Consumer", "intake")["forwarded"],
        ) == (5, 5)
        assert kube.status("Event", "zaak-created")["received"] == 7


async def test_counts_survive_an_operator_restart(kube: Kubectl, start_operator: StartOperator) -> None:
    async with Sink() as subscriber:
        # A long interval: the counts after the last periodic write reach the status only at shutdown.
        first = await start_operator(status_interval=3600)
        await kube.create("Event", "zaak-created", event_spec())
        await kube.create("EventSubscription", "notifier", subscription_spec(subscriber.url))
        await first.wait_observed("EventSubscription", "notifier", 1)
        for _ in range(2):
            await first.publish(cloud_event())
        await subscriber.wait_for(2)
        await first.stop()
        assert kube.status("EventSubscription", "notifier")["delivered"] == 2

        second = await start_operator(status_interval=3600)
        await second.publish(cloud_event())
        await subscriber.wait_for(3)
        await second.stop()
        assert kube.status("EventSubscription", "notifier")["delivered"] == 3


async def test_a_recreated_object_counts_from_zero(kube: Kubectl, start_operator: StartOperator) -> None:
    op = await start_operator(status_interval=0.2)
    await kube.create("Event", "zaak-created", event_spec())
    await kube.create("Consumer", "intake", {"endpoint": "intake", "event": "zaak-created"})
    await op.wait_observed("Consumer", "intake", 1)
    assert (await op.webhook("intake")).status == 200
    await wait_patched_status(kube, "Consumer", "intake", lambda s: s.get("received") == 1, "received=1")

    await kube.delete("Consumer", "intake")
    await op.wait_gone("Consumer", "intake")
    await kube.create("Consumer", "intake", {"endpoint": "intake", "event": "zaak-created"})
    status = await op.wait_observed("Consumer", "intake", 1)
    assert (status["received"], status["forwarded"]) == (0, 0)
