"""The models: seed defaults, cross-field rules (mirrored as CEL), field-named errors."""

from __future__ import annotations

from typing import Any

import pytest

from openconnector.api.common import field_names_are_camel_case
from openconnector.api.kinds import ALL_KINDS, CONSUMER, EVENT, EVENT_SUBSCRIPTION, SOURCE
from openconnector.api.models import ConsumerSpec, EventSubscriptionSpec
from openconnector.resources import parse_spec


def problems(kind: Any, spec: dict[str, Any]) -> list[str]:
    return [str(p) for p in parse_spec(kind, spec)[1]]


def test_subscription_defaults_follow_the_seed() -> None:
    spec = EventSubscriptionSpec.model_validate({"eventType": "nl.a.b", "endpoint": "https://x.test/h"})
    assert (spec.method, spec.status, spec.contentMode) == ("POST", "active", "structured")
    assert spec.delivery.retries == 10
    assert spec.delivery.backoffPolicy == "exponential"


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [
        ("https://example.test/hook", True),
        ("http://127.0.0.1:9000/a", True),
        ("source:zaken/hooks", True),
        ("service:notifier.apps:8080/in", True),
        ("service:notifier", True),
        ("ftp://example.test", False),
        ("notifier", False),
        ("source:Bad_Name", False),
    ],
)
def test_subscription_endpoint_forms(endpoint: str, ok: bool) -> None:
    found = problems(EVENT_SUBSCRIPTION, {"eventType": "nl.a.b", "endpoint": endpoint})
    assert (found == []) is ok, found
    if not ok:
        assert found[0].startswith("spec.endpoint:")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"endpoint": "x", "targetType": "source"}, "spec.targetId: targetType and targetId go together"),
        ({"endpoint": "x"}, "spec: a consumer needs a target (targetType and targetId) or an event to emit"),
        (
            {"endpoint": "x", "targetType": "register/schema", "targetId": "no-slash"},
            "spec.targetId: a register/schema target is <register source name>/<schema>",
        ),
        (
            {"endpoint": "x", "event": "e", "auth": {"type": "hmac"}},
            "spec.auth.secretRefs: needs at least one entry unless type is none",
        ),
        ({"endpoint": "/bad path", "event": "e"}, "spec.endpoint: String should match pattern"),
        ({"endpoint": "x", "event": "e", "colour": "red"}, "spec.colour: unknown field"),
    ],
)
def test_consumer_rules_name_the_field(spec: dict[str, Any], expected: str) -> None:
    found = problems(CONSUMER, spec)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_consumer_needs_an_endpoint() -> None:
    assert problems(CONSUMER, {"event": "e"}) == ["spec.endpoint: required field missing"]


def test_event_type_must_be_reverse_dns() -> None:
    assert problems(EVENT, {"type": "nl.vng.zgw.zaken.zaak.created", "source": "urn:nld:x"}) == []
    assert problems(EVENT, {"type": "persoon-verhuisd.v2", "source": "urn:nld:x"})[0].startswith("spec.type:")
    assert problems(EVENT, {"type": "nl.brp.persoon-verhuisd.v2", "source": "urn:nld:x"}) == []


def test_event_schema_exactly_one_form() -> None:
    both = {"type": "nl.a.b", "source": "s", "schema": {"url": "https://x.test/s.json", "inline": {}}}
    assert problems(EVENT, both) == ["spec.schema: set exactly one of inline, configMapKeyRef or url"]


def test_source_auth_needs_a_secret() -> None:
    found = problems(SOURCE, {"location": "http://127.0.0.1:1", "auth": {"type": "bearer"}})
    assert found == ["spec.auth.secretRef: required unless type is none"]


def test_wire_names_are_camel_case() -> None:
    for kind in ALL_KINDS:
        assert field_names_are_camel_case(kind.spec), kind.kind
        assert field_names_are_camel_case(kind.status), kind.kind


def test_schema_keeps_its_seed_name() -> None:
    spec = EVENT.spec.model_validate(
        {"type": "nl.a.b", "source": "urn:nld:s", "schema": {"url": "https://x.test/s"}}
    )
    assert "schema" in spec.model_dump(by_alias=True)


def test_consumer_register_target() -> None:
    spec = ConsumerSpec.model_validate(
        {"endpoint": "/a/b", "targetType": "register/schema", "targetId": "zaken/zaak"}
    )
    assert spec.targetId == "zaken/zaak"
