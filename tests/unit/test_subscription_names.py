"""A subscription's NATS names come from its ResourceKey through one function, and are the names the
gateways had before subscriptions were keyed by ResourceKey (a running stream stays valid)."""

from __future__ import annotations

from tests.support.keys import sub_key

from openconnector.api.keys import ResourceKey
from openconnector.api.kinds import EVENT_SUBSCRIPTION
from openconnector.delivery.durable import (
    consumer_name,
    delivery_subject,
    escape_token,
    subscription_key_from_path,
    subscription_names,
)
from openconnector.delivery.target import DeliveryTarget

KEY = ResourceKey(EVENT_SUBSCRIPTION.kind, "gemeente", "zaak.created")


def test_the_names_are_those_a_running_stream_already_holds() -> None:
    names = subscription_names(KEY)
    # Written out: the strings every earlier gateway derived from "gemeente/zaak.created".
    assert names.path == "gemeente/zaak.created"
    assert names.token == "gemeente_2fzaak_2ecreated"
    assert names.subject_tail == "gemeente.zaak_2ecreated"
    assert names.consumer == "sub_gemeente_2fzaak_2ecreated"
    assert names.token == escape_token("gemeente/zaak.created")
    assert delivery_subject("OC", KEY) == "OC.d.gemeente.zaak_2ecreated"
    assert consumer_name(KEY) == names.consumer


def test_a_stored_path_reads_back_as_the_same_key() -> None:
    assert subscription_key_from_path(subscription_names(KEY).path) == KEY
    assert subscription_key_from_path("ns/sub") == sub_key("ns/sub")


def test_the_bus_key_of_a_target_is_its_resource_key() -> None:
    target = DeliveryTarget(key=KEY, url="http://127.0.0.1:9/")
    assert target.key is KEY
    assert (target.key.namespace, target.key.name) == ("gemeente", "zaak.created")
