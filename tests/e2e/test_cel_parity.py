"""The apiserver (structural schema + CEL) and the pydantic models refuse the same specs.

The models mirror each CEL rule in a validator; standalone mode and `openconnector validate` rely on that.
Each case is sent to the real apiserver with --dry-run=server and to the models; the verdicts must agree.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from openconnector.api.kinds import KINDS_BY_NAME
from openconnector.resources import parse_spec

from .testbed import Cluster

URL = "http://127.0.0.1:1/x"
SECRET = {"name": "s", "key": "k"}
SUB = {"eventType": "nl.a.b.c", "endpoint": URL}
HOOK = {"endpoint": "a/b", "event": "e"}
REGISTER = "register/schema"
EVENT = {"type": "nl.a.b.c", "source": "urn:nld:x"}
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("Consumer", "valid-source-target", {"endpoint": "a/b", "targetType": "source", "targetId": "api"}),
    ("Consumer", "valid-event-only", {"endpoint": "a/b", "event": "e"}),
    ("Consumer", "target-without-id", {"endpoint": "a/b", "targetType": "source"}),
    ("Consumer", "id-without-target", {"endpoint": "a/b", "targetId": "api", "event": "e"}),
    ("Consumer", "no-target-no-event", {"endpoint": "a/b"}),
    ("Consumer", "register-without-schema", {"endpoint": "a/b", "targetType": REGISTER, "targetId": "r"}),
    ("Consumer", "register-ok", {"endpoint": "a/b", "targetType": REGISTER, "targetId": "r/zaak"}),
    ("Consumer", "hmac-without-secrets", {**HOOK, "auth": {"type": "hmac"}}),
    ("Consumer", "hmac-with-secret", {**HOOK, "auth": {"type": "hmac", "secretRefs": [SECRET]}}),
    ("Consumer", "bad-endpoint", {"endpoint": "/a b", "event": "e"}),
    ("Consumer", "bad-target-type", {"endpoint": "a/b", "targetType": "db", "targetId": "x"}),
    ("Consumer", "huge-body", {**HOOK, "maxBodyBytes": 10**9}),
    ("EventSubscription", "valid", SUB),
    ("EventSubscription", "bearer-without-secret", {**SUB, "auth": {"type": "bearer"}}),
    ("EventSubscription", "bearer-with-secret",
     {**SUB, "auth": {"type": "bearer", "secretRef": SECRET}}),
    ("EventSubscription", "method-delete", {**SUB, "method": "DELETE"}),
    ("EventSubscription", "status-running", {**SUB, "status": "running"}),
    ("EventSubscription", "too-many-retries", {**SUB, "delivery": {"retries": 101}}),
    ("EventSubscription", "bad-duration", {**SUB, "delivery": {"timeout": "soon"}}),
    ("EventSubscription", "ftp-endpoint", {**SUB, "endpoint": "ftp://x"}),
    ("EventSubscription", "source-reference", {**SUB, "endpoint": "source:api/in"}),
    ("EventSubscription", "filters-list",
     {**SUB, "filters": [{"sql": "true"}, {"not": {"exact": {"a": "b"}}}, {"any": [{"sql": "true"}]}]}),
    ("EventSubscription", "filters-shorthand-map", {**SUB, "filters": {"subject": "x"}}),
    ("EventSubscription", "filters-misspelt-dialect", {**SUB, "filters": [{"sqll": "source LIKE 'x%'"}]}),
    ("EventSubscription", "filters-regex-string", {**SUB, "filters": [{"regex": "^x"}]}),
    ("EventSubscription", "filters-map-in-list", {**SUB, "filters": [{"subject": "x"}]}),
    ("EventSubscription", "filters-two-dialects", {**SUB, "filters": [{"sql": "true", "exact": {"a": "b"}}]}),
    ("EventSubscription", "filters-empty-item", {**SUB, "filters": [{}]}),
    ("EventSubscription", "filters-sql-number", {**SUB, "filters": [{"sql": 1}]}),
    ("EventSubscription", "filters-empty-any", {**SUB, "filters": [{"any": []}]}),
    ("EventSubscription", "filters-nested-typo", {**SUB, "filters": [{"any": [{"sqll": "true"}]}]}),
    ("EventSubscription", "filters-deep-typo", {**SUB, "filters": [{"all": [{"not": {"sqll": "true"}}]}]}),
    ("Event", "valid", {"type": "nl.a.b.c", "source": "urn:nld:x"}),
    ("Event", "two-schema-forms", {**EVENT, "schema": {"url": "https://x.t/s", "inline": {}}}),
    ("Event", "no-schema-form", {**EVENT, "schema": {}}),
    ("Event", "inline-schema", {**EVENT, "schema": {"inline": {"type": "object"}}}),
    ("Event", "not-reverse-dns", {**EVENT, "type": "created"}),
    ("Event", "bad-profile", {**EVENT, "profile": "strict"}),
    ("Event", "nlgov-urn-uuid", {**EVENT, "source": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"}),
    ("Event", "nlgov-https", {**EVENT, "source": "https://zaken.example.nl"}),
    ("Event", "nlgov-oin", {**EVENT, "source": "urn:nld:oin:00000001823288444000:systeem:zaken"}),
    ("Event", "nlgov-relative", {**EVENT, "source": "zaaksysteem"}),
    ("Event", "nlgov-short-oin", {**EVENT, "source": "urn:nld:oin:123:systeem:zaken"}),
    ("Event", "nlgov-empty-nld", {**EVENT, "source": "urn:nld:"}),
    ("Event", "cloudevents-relative", {**EVENT, "source": "zaaksysteem", "profile": "cloudevents"}),
    ("Source", "valid", {"location": "http://127.0.0.1:1"}),
    ("Source", "bearer-without-secret", {"location": "http://127.0.0.1:1", "auth": {"type": "bearer"}}),
    ("Source", "not-http", {"location": "ftp://x"}),
    ("Mapping", "valid", {"mapping": {"a": "b"}, "cast": {"a": "int"}, "unset": ["c"]}),
    ("Mapping", "cast-not-a-string", {"cast": {"a": 1}}),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "name", "spec"), CASES, ids=[f"{k}-{n}" for k, n, _ in CASES])
def test_apiserver_and_models_agree(testbed: Cluster, crds: None, namespace: str, kind: str, name: str,
                                    spec: dict[str, Any]) -> None:  # fmt: skip
    document = {
        "apiVersion": "openconnector.nl/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    server = testbed.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(document)
    )
    models_refuse = bool(parse_spec(KINDS_BY_NAME[kind], spec)[1])
    server_refuses = server.returncode != 0
    assert server_refuses == models_refuse, (
        server.stdout + server.stderr,
        parse_spec(KINDS_BY_NAME[kind], spec)[1],
    )
