"""NL GOV profile for CloudEvents: each profile rule, conformant and violating."""

from __future__ import annotations

from typing import Any

import pytest

from openconnector.ce import CloudEvent, Profile, check_nlgov, parse_http, validate_event

# The NL GOV profile's own example, minus its hyphenated extension names (invalid in CloudEvents).
CONFORMANT: dict[str, Any] = {
    "specversion": "1.0",
    "type": "nl.overheid.zaken.zaakstatus-gewijzigd",
    "source": "urn:nld:oin:00000001823288444000:systeem:BRP-component",
    "subject": "123456789",
    "id": "f3dce042-cd6e-4977-844d-05be8dce7cea",
    "time": "2021-12-10T17:31:00Z",
    "dataref": "https://gemeenteX/api/persoon/123456789",
    "sequence": "1234",
    "sequencetype": "Integer",
    "datacontenttype": "application/json",
}


def event(data: object = None, drop: tuple[str, ...] = (), **changes: Any) -> CloudEvent:
    attributes = {k: v for k, v in CONFORMANT.items() if k not in drop}
    attributes.update(changes)
    return CloudEvent(attributes, data)


CONFORMANT_CASES: list[tuple[str, CloudEvent]] = [
    ("profile example", event({"bsn": "1234567789"})),
    ("type with a version suffix", event(type="nl.brp.persoon-verhuisd.v2")),
    ("type with underscores after the domain", event(type="com.github.pull_request.opened")),
    ("type with an IDNA top-level label", event(type="xn--p1ai.example.created")),
    ("source an https URL", event(source="https://openconnector.yourdomain.nl")),
    ("source an nld URN without OIN", event(source="urn:nld:gemeente-nijmegen.burgerzakensysteem")),
    (
        "source a percent-encoded nld URN",
        event(source="urn:nld:gemeente-Bergen%20%28L%29.burgerzakensysteem"),
    ),
    ("source with an upper-case NID", event(source="urn:NLD:kvknr:09220932.burgerzakensysteem")),
    # issue 16: an absolute URI is accepted, and a URN in another namespace is one.
    ("source a URN outside nld", event(source="urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66")),
    ("no sequence at all", event(drop=("sequence", "sequencetype"))),
    ("sequence 1", event(sequence="1")),
    ("sequence at 2^31-1", event(sequence="2147483647")),
    ("+json payload", event(datacontenttype="application/vnd.zaak+json")),
    ("no data and no datacontenttype", event(drop=("datacontenttype",))),
    ("extension name of 20 characters", event(abcdefghijklmnopqrst="x")),
]


@pytest.mark.parametrize("ce", [c[1] for c in CONFORMANT_CASES], ids=[c[0] for c in CONFORMANT_CASES])
def test_conformant(ce: CloudEvent) -> None:
    assert validate_event(ce) == []
    assert check_nlgov(ce) == []


VIOLATIONS: list[tuple[str, CloudEvent, str]] = [
    ("type a bare word", event(type="zaakCreated"), "type"),
    ("type a single label", event(type="nl"), "type"),
    ("type with an empty label", event(type="nl..zaak"), "type"),
    ("type with a trailing dot", event(type="nl.vng.zaak."), "type"),
    ("type starting with a numeric label", event(type="123.vng.zaak"), "type"),
    ("type with two versions", event(type="nl.brp.persoon-verhuisd.v1.v2"), "type"),
    ("type with a version in the middle", event(type="nl.brp.v1.persoon-verhuisd"), "type"),
    ("type with a space", event(type="nl.brp.persoon verhuisd"), "type"),
    ("type with a slash", event(type="nl.brp/persoon"), "type"),
    ("source relative", event(source="/sensors/1"), "source"),
    ("source an opaque string", event(source="BRP-component"), "source"),
    ("source an empty nld URN", event(source="urn:nld:"), "source"),
    ("source with a short OIN", event(source="urn:nld:oin:123:systeem:x"), "source"),
    ("sequence without sequencetype", event(drop=("sequencetype",)), "sequencetype"),
    ("sequencetype without sequence", event(drop=("sequence",)), "sequence"),
    ("sequencetype lower-case", event(sequencetype="integer"), "sequencetype"),
    ("sequencetype unknown", event(sequencetype="Lexical"), "sequencetype"),
    ("sequence 0", event(sequence="0"), "sequence"),
    ("sequence negative", event(sequence="-5"), "sequence"),
    ("sequence beyond 2^31-1", event(sequence="2147483648"), "sequence"),
    ("sequence with a leading zero", event(sequence="007"), "sequence"),
    ("sequence not a number", event(sequence="abc"), "sequence"),
    ("sequence a JSON number", event(sequence=5), "sequence"),
    ("non-JSON payload", event("<a/>", datacontenttype="text/xml"), "datacontenttype"),
    ("binary payload without a content type", event(b"\x00", drop=("datacontenttype",)), "datacontenttype"),
    ("extension name over 20 characters", event(abcdefghijklmnopqrstu="x"), "abcdefghijklmnopqrstu"),
]


@pytest.mark.parametrize(("ce", "attribute"), [c[1:] for c in VIOLATIONS], ids=[c[0] for c in VIOLATIONS])
def test_violation(ce: CloudEvent, attribute: str) -> None:
    problems = check_nlgov(ce)
    assert [(p.attribute, p.status) for p in problems] == [(attribute, 400)]
    assert problems[0].detail.startswith((f"{attribute}:", "extension name"))


def test_problems_carry_the_batch_index() -> None:
    (problem,) = check_nlgov(event(type="x"), index=3)
    assert problem.index == 3
    assert str(problem).startswith("event[3]: type:")


def test_every_violation_is_listed() -> None:
    ce = event("<a/>", source="/x", type="x", sequencetype="integer", datacontenttype="text/plain")
    assert sorted(p.attribute or "" for p in check_nlgov(ce)) == [
        "datacontenttype",
        "sequencetype",
        "source",
        "type",
    ]


def test_parsed_seed_event_is_conformant() -> None:
    body = (
        b'{"specversion":"1.0","type":"nl.vng.zgw.zaken.zaak.created",'
        b'"source":"https://openconnector.yourdomain.nl","id":"550e8400-e29b-41d4-a716-446655440000",'
        b'"time":"2024-06-15T10:30:00Z","datacontenttype":"application/json",'
        b'"data":{"zaakUrl":"https://zaakregister.yourdomain.nl/api/v1/zaken/abc123"}}'
    )
    (ce,) = parse_http("POST", {"Content-Type": "application/cloudevents+json"}, body).events
    assert check_nlgov(ce) == []


def test_profile_values() -> None:
    assert Profile("nl-gov") is Profile.NL_GOV
    assert Profile("cloudevents") is Profile.CLOUDEVENTS
    assert [p.value for p in Profile] == ["nl-gov", "cloudevents"]
