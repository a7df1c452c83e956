"""Status shards (pure): each replica writes its own shard; the top level is recomputed, never added to."""

from __future__ import annotations

from typing import Any

from openconnector.kube.status_writer import merge_patch_removing, own_part
from openconnector.status import shards

KIND = "EventSubscription"


def body(
    delivered: int, *, healthy: str = "True", message: str = "ok", last: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "observedGeneration": 3,
        "phase": "Active",
        "url": "http://127.0.0.1:1/x",
        "delivered": delivered,
        "failed": 0,
        "retried": 1,
        "deadLettered": 0,
        "dropped": 0,
        "consecutiveFailures": 0,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Compiled", "message": ""},
            {"type": "Healthy", "status": healthy, "reason": "DeliverySucceeding", "message": message},
        ],
    }
    if last is not None:
        out["lastDelivery"] = {"time": last, "statusCode": 200, "latencyMs": 1.0}
    return out


def test_a_replica_writes_its_own_shard_and_the_sum_over_every_shard_it_read() -> None:
    stored = {"replicas": {"b": shards.split(KIND, body(7, last="2026-01-01T00:00:09Z"))[0]}}
    written, healthy = shards.sharded_body(KIND, "a", body(5, last="2026-01-01T00:00:01Z"), stored)
    assert list(written["replicas"]) == ["a"]  # never another replica's key
    assert written["replicas"]["a"]["delivered"] == 5
    assert written["delivered"] == 12
    assert written["retried"] == 2
    assert written["lastDelivery"]["time"] == "2026-01-01T00:00:09Z"  # the latest over replicas
    assert "retired" not in written
    assert healthy == ("True", "DeliverySucceeding", "ok")


def test_recomputing_with_a_newer_own_shard_replaces_it_rather_than_adding_to_it() -> None:
    stored = {"replicas": {"a": shards.split(KIND, body(5))[0]}, "delivered": 5}
    written, _ = shards.sharded_body(KIND, "a", body(6), stored)
    assert written["delivered"] == 6


def test_healthy_is_false_when_any_replica_is_unhealthy_and_names_it() -> None:
    stored = {"replicas": {"b": shards.split(KIND, body(1, healthy="False", message="5 failed in a row"))[0]}}
    _, healthy = shards.sharded_body(KIND, "a", body(5), stored)
    assert healthy is not None
    assert healthy[0] == "False"
    assert "replica b: 5 failed in a row" in healthy[2]


def test_the_holder_folds_a_departed_shard_into_retired_and_the_sums_do_not_move() -> None:
    stored: dict[str, Any] = {
        "replicas": {"a": shards.split(KIND, body(5))[0], "b": shards.split(KIND, body(7))[0]},
        "retired": {"delivered": 100},
        "delivered": 112,
    }
    patch = shards.retire(KIND, stored, {"b", "unknown"})
    assert patch is not None
    assert patch["replicas"] == {"b": None}
    assert patch["retired"]["delivered"] == 107
    assert patch["delivered"] == 112
    assert shards.retire(KIND, stored, {"unknown"}) is None


def test_a_status_from_before_the_shards_becomes_the_retired_baseline_once() -> None:
    legacy = {"delivered": 40, "failed": 2, "conditions": []}
    written, _ = shards.sharded_body(KIND, "a", body(1), legacy)
    assert written["retired"]["delivered"] == 40
    assert written["delivered"] == 41
    after = {**written, "replicas": written["replicas"]}
    again, _ = shards.sharded_body(KIND, "a", body(2), after)
    assert "retired" not in again  # only the first sharded write stores it
    assert again["delivered"] == 42


def test_a_stale_top_level_is_detected_and_repaired_from_the_shards() -> None:
    stored = {
        "replicas": {"a": shards.split(KIND, body(5))[0], "b": shards.split(KIND, body(7))[0]},
        "delivered": 9,
    }
    assert not shards.consistent(KIND, stored)
    assert shards.repair(KIND, stored)["delivered"] == 12
    assert shards.consistent(KIND, {**stored, "delivered": 12, "retried": 2})


def test_consumer_reasons_are_summed_key_by_key() -> None:
    one = {"received": 3, "forwarded": 1, "rejected": 2, "rejectedByReason": {"auth": 2}}
    two = {"received": 1, "forwarded": 0, "rejected": 1, "rejectedByReason": {"auth": 1, "mapping": 0}}
    written, healthy = shards.sharded_body(
        "Consumer", "a", {"observedGeneration": 1, **one}, {"replicas": {"b": two}}
    )
    assert written["rejectedByReason"] == {"auth": 3, "mapping": 0}
    assert written["received"] == 4
    assert healthy is None


def test_a_restart_continues_from_its_own_shard_only() -> None:
    stored = {
        "observedGeneration": 3,
        "delivered": 12,
        "replicas": {"a": {"delivered": 5}, "b": {"delivered": 7}},
        "retired": {"delivered": 0},
    }
    seed = shards.own_seed(KIND, "a", stored)
    assert seed["delivered"] == 5
    assert seed["observedGeneration"] == 3
    assert "replicas" not in seed
    assert "delivered" not in shards.own_seed(KIND, "new-pod", stored)


def test_the_merge_patch_never_names_another_replicas_shard_nor_retired() -> None:
    stored = {"delivered": 12, "replicas": {"a": {"delivered": 5, "lastError": {}}, "b": {"delivered": 7}},
              "retired": {"delivered": 0}}  # fmt: skip
    mine = own_part(stored, "a")
    new = {"delivered": 13, "replicas": {"a": {"delivered": 6}}}
    patch = merge_patch_removing(mine, new)
    assert patch == {"delivered": 13, "replicas": {"a": {"delivered": 6, "lastError": None}}}
