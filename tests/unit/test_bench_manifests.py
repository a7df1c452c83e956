"""The benchmark's manifests are valid resources: a typo there would measure a gateway with nothing routed."""

from __future__ import annotations

from bench.manifests import ingest_manifests
from pydantic import BaseModel

from openconnector.api.models import ConsumerSpec, EventSpec, EventSubscriptionSpec

MODELS: dict[str, type[BaseModel]] = {
    "Event": EventSpec,
    "Consumer": ConsumerSpec,
    "EventSubscription": EventSubscriptionSpec,
}


def test_ingest_manifests_validate_and_carry_the_concurrency() -> None:
    docs = ingest_manifests("http://127.0.0.1:9", subscriptions=2, max_concurrency=32)
    parsed = [MODELS[doc["kind"]].model_validate(doc["spec"]) for doc in docs]
    subscriptions = [p for p in parsed if isinstance(p, EventSubscriptionSpec)]
    assert len(subscriptions) == 2
    assert {s.delivery.maxConcurrency for s in subscriptions} == {32}
    default = ingest_manifests("http://127.0.0.1:9")[-1]
    assert EventSubscriptionSpec.model_validate(default["spec"]).delivery.maxConcurrency == 4
