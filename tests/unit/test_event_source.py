"""Issue 16: Event.spec.source under the nl-gov profile. The docs, the spec validator and the codec's
profile check say the same thing: an absolute URI, preferably urn:nld:oin:<OIN>:systeem:<name>; a URN
in another namespace (urn:uuid:...) is an absolute URI and accepted (it used to be refused by the codec
although the docs allowed it); an nld URN must name an organisation, and an OIN is 20 digits."""

from __future__ import annotations

import pytest

from openconnector.api.kinds import KINDS_BY_NAME
from openconnector.api.models import EventSpec
from openconnector.ce import CloudEvent
from openconnector.ce.nlgov import check_nlgov
from openconnector.resources import parse_spec

SOURCES: list[tuple[str, bool]] = [
    ("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", True),
    ("urn:nld:oin:00000001823288444000:systeem:zaaksysteem", True),
    ("https://zaken.example.nl/api", True),
    ("zaaksysteem", False),
    ("/systems/zaken", False),
    ("urn:nld:", False),
    ("urn:nld:oin:123:systeem:zaken", False),
]


def event_problems(source: str) -> list[str]:
    event = CloudEvent(
        {"specversion": "1.0", "id": "1", "type": "nl.vng.zaken.zaak.created", "source": source}
    )
    return [p.detail for p in check_nlgov(event)]


def spec_problems(source: str, profile: str = "nl-gov") -> list[str]:
    spec = {"type": "nl.vng.zaken.zaak.created", "source": source, "profile": profile}
    return [f"{p.field}: {p.message}" for p in parse_spec(KINDS_BY_NAME["Event"], spec)[1]]


@pytest.mark.parametrize(("source", "accepted"), SOURCES)
def test_validator_and_codec_agree(source: str, accepted: bool) -> None:
    assert (spec_problems(source) == []) is accepted
    assert (event_problems(source) == []) is accepted
    if not accepted:
        # The same words in the resource's status as in the 400 answer to an event with that source.
        assert spec_problems(source) == [f"spec.{event_problems(source)[0]}"]


def test_the_cloudevents_profile_takes_any_uri_reference() -> None:
    assert spec_problems("zaaksysteem", profile="cloudevents") == []


def test_the_docs_say_so() -> None:
    description = EventSpec.model_fields["source"].description or ""
    assert "absolute URI" in description
    assert "urn:uuid" in description
    assert "urn:nld:oin:" in description
