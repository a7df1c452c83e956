"""Status shards: each replica writes only ``status.replicas.<pod-name>``; the top level is derived.

Pure functions over status bodies (camelCase dicts, as stored):

- :func:`split` cuts one replica's full status body (what ``StatusBook.body`` builds) into its
  shard (counters, last times, lastError, its own health) and the fields every replica computes alike
  (observedGeneration, Ready, url).
- :func:`sharded_body` builds what a replica writes: the shared fields, its own shard under
  ``replicas``, and the top-level counters *recomputed* as the sum over every shard it read plus its
  own plus ``retired``; the Healthy condition is False when any shard is unhealthy, naming the replica.
- :func:`retire` is the Lease holder's patch that folds departed replicas' shards into ``retired``,
  so a rolling update never loses the old pod's counts.
- :func:`consistent` says whether a stored status's top level equals the sum over its shards.

Nothing here increments a top-level counter: every write recomputes it from shards, so a race can show
a stale sum for a moment, never a double count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from openconnector.api.kinds import CONSUMER, EVENT, EVENT_SUBSCRIPTION, SOURCE

# Counters summed over shards (and kept in ``retired`` when a replica leaves), per kind.
SUMMED: dict[str, tuple[str, ...]] = {
    EVENT_SUBSCRIPTION.kind: ("delivered", "failed", "retried", "deadLettered", "dropped"),
    CONSUMER.kind: ("received", "forwarded", "rejected"),
    EVENT.kind: ("received", "emitted", "refused"),
    SOURCE.kind: ("requests", "failures"),
}
# Counters by reason, summed key by key.
SUMMED_MAPS: dict[str, tuple[str, ...]] = {CONSUMER.kind: ("rejectedByReason",)}
# Times (RFC 3339, or objects with a ``time``): the latest over shards is shown at the top level.
LATEST: dict[str, tuple[str, ...]] = {
    EVENT_SUBSCRIPTION.kind: ("lastDelivery", "lastError"),
    CONSUMER.kind: ("lastReceived", "lastError"),
    EVENT.kind: ("lastEmitted",),
    SOURCE.kind: ("lastError",),
}
# Per replica only; the top level shows the worst replica.
WORST: dict[str, tuple[str, ...]] = {EVENT_SUBSCRIPTION.kind: ("consecutiveFailures", "successRatio")}

HEALTHY = "Healthy"
HEALTH = "health"  # a shard's own Healthy condition: {status, reason, message}
PHASE = "phase"


def shard_fields(kind: str) -> tuple[str, ...]:
    return SUMMED.get(kind, ()) + SUMMED_MAPS.get(kind, ()) + LATEST.get(kind, ()) + WORST.get(kind, ())


def is_sharded(kind: str) -> bool:
    return kind in SUMMED


def split(kind: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(this replica's shard, the fields every replica computes alike) of one full status body."""
    fields = set(shard_fields(kind))
    shard = {k: v for k, v in body.items() if k in fields}
    shared = {k: v for k, v in body.items() if k not in fields}
    if kind == EVENT_SUBSCRIPTION.kind:
        healthy = _condition(body, HEALTHY)
        if healthy is not None:
            shard[HEALTH] = {k: healthy[k] for k in ("status", "reason", "message") if k in healthy}
        if PHASE in body:
            shard[PHASE] = body[PHASE]
    return shard, shared


def _condition(body: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in body.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _time_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("time") or "")
    return str(value or "")


def counters(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The summable counters of one shard (or of a status written before shards existed)."""
    out: dict[str, Any] = {name: _int(body.get(name)) for name in SUMMED.get(kind, ())}
    for name in SUMMED_MAPS.get(kind, ()):
        raw = body.get(name)
        out[name] = {str(k): _int(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
    return out


def add_counters(kind: str, parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    total = counters(kind, {})
    for part in parts:
        one = counters(kind, part)
        for name in SUMMED.get(kind, ()):
            total[name] += one[name]
        for name in SUMMED_MAPS.get(kind, ()):
            for reason, count in one[name].items():
                total[name][reason] = total[name].get(reason, 0) + count
    for name in SUMMED_MAPS.get(kind, ()):
        total[name] = dict(sorted(total[name].items()))
    return total


def retired_of(kind: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """The counts of replicas that left. A status written before shards existed (counters, no
    ``replicas``, no ``retired``) counts as retired, so an upgrade neither loses nor repeats them."""
    retired = status.get("retired")
    if isinstance(retired, Mapping):
        return counters(kind, retired)
    if "replicas" not in status:
        return counters(kind, status)
    return counters(kind, {})


def needs_retired_baseline(kind: str, status: Mapping[str, Any]) -> bool:
    """True for a pre-shard status with counts: the first sharded write must store them as ``retired``."""
    if "retired" in status or "replicas" in status:
        return False
    return any(_int(status.get(name)) for name in SUMMED.get(kind, ()))


def shards_of(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    replicas = status.get("replicas")
    if not isinstance(replicas, Mapping):
        return {}
    return {str(name): shard for name, shard in replicas.items() if isinstance(shard, Mapping)}


def aggregate(
    kind: str, shards: Mapping[str, Mapping[str, Any]], retired: Mapping[str, Any]
) -> dict[str, Any]:
    """The top-level fields derived from the shards: sums, latest times, the worst replica."""
    out = add_counters(kind, [retired, *shards.values()])
    for name in LATEST.get(kind, ()):
        candidates = [shard[name] for shard in shards.values() if shard.get(name) is not None]
        if candidates:
            out[name] = max(candidates, key=_time_of)
    if kind == EVENT_SUBSCRIPTION.kind:
        failures = [_int(shard.get("consecutiveFailures")) for shard in shards.values()]
        out["consecutiveFailures"] = max(failures, default=0)
        ratios = [
            s["successRatio"] for s in shards.values() if isinstance(s.get("successRatio"), int | float)
        ]
        if ratios:
            out["successRatio"] = min(ratios)
        phases = {str(shard.get(PHASE)) for shard in shards.values() if shard.get(PHASE)}
        for phase in ("Paused", "Suspended", "Active"):
            if phase in phases:
                out[PHASE] = phase
                break
    return out


def healthy(shards: Mapping[str, Mapping[str, Any]]) -> tuple[str, str, str] | None:
    """(status, reason, message) of the Healthy condition over every replica; None without any.

    False as soon as one replica is unhealthy, naming it (and every other unhealthy one); True when at
    least one is healthy and none is unhealthy; otherwise Unknown.
    """
    health = {
        name: shard[HEALTH]
        for name, shard in sorted(shards.items())
        if isinstance(shard.get(HEALTH), Mapping)
    }
    if not health:
        return None
    unhealthy = [(name, h) for name, h in health.items() if h.get("status") == "False"]
    if unhealthy:
        reason = str(unhealthy[0][1].get("reason") or "DeliveryFailing")
        message = "; ".join(f"replica {name}: {h.get('message') or h.get('reason')}" for name, h in unhealthy)
        return "False", reason, message
    for status in ("True", "Unknown"):
        same = [(name, h) for name, h in health.items() if h.get("status") == status]
        if same:
            first = same[0][1]
            return status, str(first.get("reason") or ""), str(first.get("message") or "")
    return None


def sharded_body(
    kind: str, pod: str, body: Mapping[str, Any], observed: Mapping[str, Any]
) -> tuple[dict[str, Any], tuple[str, str, str] | None]:
    """What replica ``pod`` writes, given its full body and the stored status it last read.

    Returns the body (shared fields, top-level aggregates, ``replicas: {pod: shard}``, and ``retired``
    only when a pre-shard status must be kept as the baseline) and the merged Healthy condition's
    (status, reason, message), which the caller turns into a condition with its transition time.
    """
    if not is_sharded(kind):
        return dict(body), None
    shard, shared = split(kind, body)
    shards = dict(shards_of(observed))
    shards[pod] = shard
    retired = retired_of(kind, observed)
    out = {k: v for k, v in shared.items() if k != PHASE}
    out.update(aggregate(kind, shards, retired))
    if needs_retired_baseline(kind, observed):
        out["retired"] = retired
    out["replicas"] = {pod: shard}
    return out, healthy(shards)


def retire(kind: str, observed: Mapping[str, Any], gone: Iterable[str]) -> dict[str, Any] | None:
    """The Lease holder's patch folding the shards of departed replicas into ``retired``, with the top
    level recomputed; None when none of them has a shard here. Sent with the resourceVersion it was
    computed from, so a concurrent change makes it fail (409) instead of counting twice."""
    shards = shards_of(observed)
    leaving = sorted(set(gone) & shards.keys())
    if not leaving:
        return None
    retired = add_counters(kind, [retired_of(kind, observed), *(shards[name] for name in leaving)])
    remaining = {name: shard for name, shard in shards.items() if name not in leaving}
    patch: dict[str, Any] = aggregate(kind, remaining, retired)
    patch["retired"] = retired
    patch["replicas"] = {name: None for name in leaving}
    return patch


def consistent(kind: str, observed: Mapping[str, Any]) -> bool:
    """Whether the stored top-level counters are the sum over the stored shards and ``retired``."""
    if not is_sharded(kind) or "replicas" not in observed:
        return True
    expected = add_counters(kind, [retired_of(kind, observed), *shards_of(observed).values()])
    return counters(kind, observed) == expected


def repair(kind: str, observed: Mapping[str, Any]) -> dict[str, Any]:
    """The top level recomputed from what is stored (the Lease holder's fix for a stale sum)."""
    return aggregate(kind, shards_of(observed), retired_of(kind, observed))


def own_seed(kind: str, pod: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """What a (re)starting replica continues from: the shared fields of the stored status and its own
    shard's counters (a pod restarted under the same name); never another replica's counts."""
    fields = set(shard_fields(kind))
    seed = {k: v for k, v in status.items() if k not in fields and k not in ("replicas", "retired")}
    if is_sharded(kind):
        own = shards_of(status).get(pod) or {}
        seed.update({k: v for k, v in own.items() if k in fields})
        if own.get(PHASE):
            seed[PHASE] = own[PHASE]
    return seed
