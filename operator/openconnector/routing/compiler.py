"""Compile resources and Secrets into a :class:`RoutingTable`.

Pure: no I/O. A problem in one resource becomes that resource's Ready=False result and never stops the
others from compiling. Expensive leaf compilations (filters, mapping templates, JSON Schemas) are memoised
by their definition, so a change to one resource recompiles only that resource's parts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema
import yaml
from pydantic import BaseModel

from openconnector.api.common import SecretKeySelector
from openconnector.api.kinds import (
    CONFIG_MAP,
    CONSUMER,
    EVENT,
    EVENT_SUBSCRIPTION,
    KINDS_BY_NAME,
    MAPPING,
    SECRET,
    SOURCE,
    Kind,
)
from openconnector.api.models import (
    ConsumerSpec,
    EventSpec,
    EventSubscriptionSpec,
    MappingSpec,
    SourceSpec,
)
from openconnector.ce import is_uri_reference
from openconnector.consumers.allow_list import IpAllowList
from openconnector.consumers.ingest import event_disabled_reason
from openconnector.consumers.verifiers import InboundAuthConfig, InboundAuthConfigError, compile_verifier
from openconnector.delivery.durations import parse_duration
from openconnector.delivery.health import HealthConfig
from openconnector.delivery.policy import BackoffPolicy, DeliveryPolicy
from openconnector.delivery.target import ContentMode, DeliveryTarget
from openconnector.egress import EgressPolicy
from openconnector.filters import FilterError, compile_filters
from openconnector.mapping import MappingError, compile_mapping
from openconnector.resources import FieldProblem, Resource, ResourceKey, SecretOrConfigMap, parse_spec
from openconnector.routing.table import (
    ConsumerRoute,
    EventRoute,
    ResourceResult,
    RoutingTable,
    SourceLocation,
    SourceRoute,
    SubscriptionRoute,
    normalise_endpoint,
)
from openconnector.schema_guard import linear_validator_class, schema_pattern_problems

T = TypeVar("T")


# One object across compiles, so that a kept route's policy check is an identity test.
_DEFAULT_EGRESS = EgressPolicy()


class CompileProblem(Exception):
    """Raised inside one resource's compilation; becomes its Ready=False condition."""

    def __init__(self, reason: str, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}" if field_path else message)
        self.reason = reason
        self.field_path = field_path
        self.message = message


class Memo:
    """Compiled artefacts kept across snapshots, keyed by their JSON definition."""

    def __init__(self, limit: int = 50_000) -> None:
        self._store: dict[tuple[str, str], Any] = {}
        self._limit = limit
        # Per resource, the last version compiled: its parsed spec, and for a subscription that references
        # no Secret and no Source, its route. A compile then costs O(changed) rather than O(resources) of
        # validation and URL checks: a burst of N applies compiles ~N/batch times.
        self._parsed: dict[
            ResourceKey, tuple[Mapping[str, Any], tuple[BaseModel | None, list[FieldProblem]]]
        ] = {}
        self._routes: dict[ResourceKey, tuple[Resource, EgressPolicy, SubscriptionRoute, ResourceResult]] = {}

    def parsed(self, res: Resource, kind: Kind) -> tuple[BaseModel | None, list[FieldProblem]]:
        """``parse_spec`` of ``res``, reused while its spec is unchanged."""
        found = self._parsed.get(res.key)
        if found is not None and (found[0] is res.spec or found[0] == res.spec):
            return found[1]
        parsed = parse_spec(kind, res.spec)
        self._parsed[res.key] = (res.spec, parsed)
        return parsed

    def route(self, res: Resource, egress: EgressPolicy) -> tuple[SubscriptionRoute, ResourceResult] | None:
        """The route and result compiled for this very spec and generation under this egress policy."""
        found = self._routes.get(res.key)
        if found is None:
            return None
        kept, policy, route, result = found
        same = kept is res or (
            kept.spec == res.spec and kept.generation == res.generation and kept.origin == res.origin
        )
        return (route, result) if same and (policy is egress or policy == egress) else None

    def keep_route(
        self, res: Resource, egress: EgressPolicy, route: SubscriptionRoute, result: ResourceResult
    ) -> None:
        self._routes[res.key] = (res, egress, route, result)
        # The parsed spec is not needed while the route is kept (memory: ~2 KiB per subscription).
        self._parsed.pop(res.key, None)

    def forget_missing(self, present: Mapping[ResourceKey, Any]) -> None:
        """Drop what deleted resources left behind."""
        for cache in (self._parsed, self._routes):
            if any(key not in present for key in cache):
                for key in [k for k in cache if k not in present]:
                    del cache[key]

    def get(self, namespace: str, definition: Any, build: Callable[[], T]) -> T:
        key = (namespace, json.dumps(definition, sort_keys=True, default=str))
        try:
            return self._store[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        value = build()
        if len(self._store) >= self._limit:
            self._store.clear()
        self._store[key] = value
        return value


@dataclass
class _Context:
    resources: Mapping[ResourceKey, Resource]
    secrets: Mapping[ResourceKey, SecretOrConfigMap]
    memo: Memo
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    results: dict[ResourceKey, ResourceResult] = field(default_factory=dict)
    referenced: set[ResourceKey] = field(default_factory=set)

    def ok(self, res: Resource, message: str = "compiled", reason: str = "Compiled", **extra: Any) -> None:
        self.results[res.key] = ResourceResult(
            res.key, res.generation, True, reason, message, res.origin, extra
        )

    def fail(self, res: Resource, reason: str, problems: list[FieldProblem]) -> None:
        message = "; ".join(str(p) for p in problems)
        self.results[res.key] = ResourceResult(
            res.key, res.generation, False, reason, message, res.origin, {}, tuple(problems)
        )

    def secret(self, namespace: str, ref: SecretKeySelector, field_path: str) -> str:
        key = ResourceKey(SECRET, namespace, ref.name)
        self.referenced.add(key)
        found = self.secrets.get(key)
        if found is None:
            raise CompileProblem("SecretNotFound", field_path, f"Secret {ref.name!r} not found")
        if ref.key not in found.data:
            raise CompileProblem("SecretNotFound", field_path, f"Secret {ref.name!r} has no key {ref.key!r}")
        try:
            return found.data[ref.key].decode("utf-8").strip()
        except UnicodeDecodeError as error:
            raise CompileProblem("InvalidSecret", field_path, "Secret value is not UTF-8 text") from error


def _ordered(resources: list[Resource]) -> list[Resource]:
    # The older resource wins a conflict; name order breaks ties (and orders standalone manifests).
    return sorted(resources, key=lambda r: (r.created or "~", r.namespace, r.name))


def _duration(value: str, field_path: str) -> float:
    try:
        seconds = parse_duration(value, field=field_path)
    except ValueError as error:
        raise CompileProblem("InvalidSpec", field_path, str(error).removeprefix(f"{field_path}: ")) from error
    if seconds <= 0:
        raise CompileProblem("InvalidSpec", field_path, f"must be longer than zero, got {value!r}")
    return seconds


def _auth_header(auth_type: str, credential: str, api_key_header: str = "X-API-Key") -> tuple[str, str]:
    """The one header that carries an outbound credential (to a Source or a subscriber)."""
    if auth_type == "bearer":
        return "Authorization", f"Bearer {credential}"
    if auth_type == "basic":
        return "Authorization", "Basic " + base64.b64encode(credential.encode()).decode()
    return api_key_header, credential


# -------------------------------------------------------------------------------------- per kind


def _compile_source(ctx: _Context, res: Resource, spec: SourceSpec) -> SourceRoute:
    headers = dict(spec.headers)
    if spec.auth is not None and spec.auth.type != "none" and spec.auth.secretRef is not None:
        value = ctx.secret(res.namespace, spec.auth.secretRef, "spec.auth.secretRef")
        name, header_value = _auth_header(spec.auth.type, value, spec.auth.header)
        headers[name] = header_value
    _check_egress(ctx.egress, spec.location, "spec.location")
    target = SourceLocation(spec.location.rstrip("/"), headers, _duration(spec.timeout, "spec.timeout"))
    return SourceRoute(res.key, spec.type, target, spec.register_ or res.name)


_SCHEMA_URI = "urn:openconnector:event-schema"


def _refs(node: Any) -> list[str]:
    """Every $ref in a schema (JSON Schema keywords may nest anywhere)."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _json_schema_validator(schema: dict[str, Any], field_path: str) -> Callable[[Any], list[str]]:
    """A validator that never fetches anything: every $ref must resolve inside the schema itself.

    jsonschema's default registry would fetch remote $refs with blocking I/O on the event loop, per
    event: a stall, and a way to make the gateway call internal addresses. Unresolvable references are
    a compile error here, not a failure on every request later.
    """
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "/".join(str(p) for p in error.absolute_path)
        raise CompileProblem(
            "InvalidSchema", field_path, f"not a valid JSON Schema at /{where}: {error.message}"
        ) from None
    resource = referencing.Resource.from_contents(
        schema, default_specification=referencing.jsonschema.DRAFT202012
    )
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(_SCHEMA_URI, resource)
    resolver = registry.resolver(base_uri=_SCHEMA_URI)
    for ref in _refs(schema):
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            raise CompileProblem(
                "InvalidSchema",
                field_path,
                f"$ref {ref!r} does not resolve inside the schema (nothing is fetched)",
            ) from None
    for problem in schema_pattern_problems(schema):  # linear-time validation: openconnector.schema_guard
        raise CompileProblem("InvalidSchema", field_path, problem)
    validator = linear_validator_class(cls)(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)

    def validate(data: Any) -> list[str]:
        try:
            errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
        except referencing.exceptions.Unresolvable as error:  # e.g. a $ref inside a nested $id scope
            return [f"/: the schema could not be applied ({error})"]
        return [f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in errors]

    return validate


def _compile_event(ctx: _Context, res: Resource, spec: EventSpec) -> EventRoute:
    if not is_uri_reference(spec.source):
        # Caught here, not at the first emission, when a target would already hold the payload.
        raise CompileProblem("InvalidSpec", "spec.source", f"{spec.source!r} is not a URI-reference")
    validate = None
    dataschema = None
    if spec.schema_ is not None:
        if spec.schema_.inline is not None:
            inline = spec.schema_.inline
            validate = ctx.memo.get(
                "schema", inline, lambda: _json_schema_validator(inline, "spec.schema.inline")
            )
        elif spec.schema_.configMapKeyRef is not None:
            ref = spec.schema_.configMapKeyRef
            configmap = ResourceKey(CONFIG_MAP, res.namespace, ref.name)
            ctx.referenced.add(configmap)
            found = ctx.secrets.get(configmap)
            if found is None or ref.key not in found.data:
                raise CompileProblem(
                    "ConfigMapNotFound",
                    "spec.schema.configMapKeyRef",
                    f"ConfigMap key {ref.name}/{ref.key} not found",
                )
            try:
                loaded = yaml.safe_load(found.data[ref.key])
            except yaml.YAMLError as error:
                raise CompileProblem(
                    "InvalidSchema", "spec.schema.configMapKeyRef", f"not JSON or YAML: {error}"
                ) from None
            if not isinstance(loaded, dict):
                raise CompileProblem(
                    "InvalidSchema", "spec.schema.configMapKeyRef", "the schema must be an object"
                )
            validate = ctx.memo.get(
                "schema", loaded, lambda: _json_schema_validator(loaded, "spec.schema.configMapKeyRef")
            )
        else:
            dataschema = spec.schema_.url
    return EventRoute(res.key, spec.type, spec.source, spec.profile, spec.isEnabled, dataschema, validate)


def _check_egress(egress: EgressPolicy, url: str, field_path: str) -> None:
    refusal = egress.url_refusal(url)
    if refusal is not None:
        raise CompileProblem("EgressDenied", field_path, refusal)


def resolve_endpoint(
    endpoint: str,
    namespace: str,
    sources: Mapping[ResourceKey, SourceRoute],
    field_path: str,
    egress: EgressPolicy | None = None,
) -> str:
    """An endpoint URL, or an internal reference: source:<name>[/path] or
    service:<name>[.<namespace>][:port][/path]; refused (CompileProblem) when the egress policy denies it."""
    egress = egress or EgressPolicy()
    if endpoint.startswith(("http://", "https://")):
        _check_egress(egress, endpoint, field_path)
        return endpoint
    scheme, _, rest = endpoint.partition(":")
    name, slash, path = rest.partition("/")
    if scheme == "source":
        source = sources.get(ResourceKey(SOURCE.kind, namespace, name))
        if source is None:
            raise CompileProblem("SourceNotFound", field_path, f"Source {name!r} not found or not ready")
        return source.target.url + (f"/{path}" if slash else "")
    host, _, port = name.partition(":")
    service, _, service_ns = host.partition(".")
    refusal = egress.service_refusal(namespace, service_ns or namespace)
    if refusal is not None:
        raise CompileProblem("EgressDenied", field_path, refusal)
    return f"http://{service}.{service_ns or namespace}.svc:{port or '80'}/{path}"


def _self_contained(spec: EventSubscriptionSpec) -> bool:
    """Compiled from its own spec and the egress policy alone (no Secret, no ``source:`` endpoint), so its
    route can be reused while the spec is unchanged."""
    dead_letter = spec.delivery.deadLetter
    endpoints = (spec.endpoint, dead_letter.endpoint if dead_letter is not None else "")
    secrets = spec.auth is not None and (
        spec.auth.secretRef is not None or spec.auth.signingSecretRef is not None
    )
    return not secrets and not any(e.startswith("source:") for e in endpoints)


# DeliveryTarget's own field names -> the CR field a user must fix.
_TARGET_FIELDS = {
    "url": "spec.endpoint",
    "headers": "spec.headers",
    "auth_headers": "spec.auth.secretRef",
    "signing_secret": "spec.auth.signingSecretRef",
    "dead_letter": "spec.delivery.deadLetter.endpoint",
    "backoff_max": "spec.delivery.backoffMax",
    "backoff_delay": "spec.delivery.backoffDelay",
    "timeout": "spec.delivery.timeout",
}


def _compile_subscription(
    ctx: _Context, res: Resource, spec: EventSubscriptionSpec, sources: Mapping[ResourceKey, SourceRoute]
) -> SubscriptionRoute:
    definition = spec.filters
    try:
        predicate = ctx.memo.get(
            "filters", definition, lambda: compile_filters(definition, path="spec.filters")
        )
    except FilterError as error:
        raise CompileProblem("InvalidFilter", error.path, error.message) from error
    url = resolve_endpoint(spec.endpoint, res.namespace, sources, "spec.endpoint", ctx.egress)
    d = spec.delivery
    dead_letter = None
    if d.deadLetter is not None:
        dead_letter = resolve_endpoint(
            d.deadLetter.endpoint, res.namespace, sources, "spec.delivery.deadLetter.endpoint", ctx.egress
        )
    auth_headers: dict[str, str] = {}
    signing = None
    if spec.auth is not None:
        if spec.auth.type != "none" and spec.auth.secretRef is not None:
            value = ctx.secret(res.namespace, spec.auth.secretRef, "spec.auth.secretRef")
            name, header_value = _auth_header(spec.auth.type, value)
            auth_headers[name] = header_value
        if spec.auth.signingSecretRef is not None:
            signing = ctx.secret(res.namespace, spec.auth.signingSecretRef, "spec.auth.signingSecretRef")
    try:
        policy = DeliveryPolicy(
            retries=d.retries,
            backoff_policy=BackoffPolicy(d.backoffPolicy),
            backoff_delay=_duration(d.backoffDelay, "spec.delivery.backoffDelay"),
            backoff_max=_duration(d.backoffMax, "spec.delivery.backoffMax"),
            timeout=_duration(d.timeout, "spec.delivery.timeout"),
            dead_letter=dead_letter,
        )
        target = DeliveryTarget(
            key=res.key,
            url=url,
            method=spec.method,
            content_mode=ContentMode(spec.contentMode),
            headers=dict(spec.headers),
            auth_headers=auth_headers,
            signing_secret=signing,
            policy=policy,
            health=HealthConfig(auto_pause_after=d.autoPauseAfter or None),
            max_concurrency=d.maxConcurrency,
        )
    except ValueError as error:
        name, sep, message = str(error).partition(": ")
        field_path = _TARGET_FIELDS.get(name, "spec") if sep else "spec"
        raise CompileProblem("InvalidSpec", field_path, message if sep else str(error)) from error
    return SubscriptionRoute(
        key=res.key,
        generation=res.generation,
        event_type=spec.eventType,
        source=spec.source,
        paused=spec.status == "paused",
        matches=predicate,
        target=target,
        style=spec.style,
        unfiltered=not definition,  # None, [] or {}: filters that match every event
    )


def _compile_mapping(ctx: _Context, res: Resource, spec: MappingSpec) -> Any:
    definition = spec.model_dump(by_alias=True, exclude_none=True)
    try:
        return ctx.memo.get("mapping", definition, lambda: compile_mapping(definition, name=res.name))
    except MappingError as error:
        raise CompileProblem(
            "InvalidMapping", f"spec.{error.path}" if error.path else "spec", error.message
        ) from error


def _compile_consumer(
    ctx: _Context,
    res: Resource,
    spec: ConsumerSpec,
    mappings: Mapping[ResourceKey, Any],
    sources: Mapping[ResourceKey, SourceRoute],
    events: Mapping[ResourceKey, EventRoute],
) -> ConsumerRoute:
    mapping = mapping_key = None
    if spec.mappingId is not None:
        mapping_key = ResourceKey(MAPPING.kind, res.namespace, spec.mappingId)
        if mapping_key not in mappings:
            why = "not ready" if mapping_key in ctx.resources else "not found"
            raise CompileProblem("MappingNotFound", "spec.mappingId", f"Mapping {spec.mappingId!r} {why}")
        mapping = mappings[mapping_key]
    target = schema = None
    if spec.targetType == "source" and spec.targetId is not None:
        target = sources.get(ResourceKey(SOURCE.kind, res.namespace, spec.targetId))
        if target is None:
            raise CompileProblem(
                "SourceNotFound", "spec.targetId", f"Source {spec.targetId!r} not found or not ready"
            )
    elif spec.targetType == "register/schema" and spec.targetId is not None:
        register, _, schema = spec.targetId.partition("/")
        target = sources.get(ResourceKey(SOURCE.kind, res.namespace, register))
        if target is None:
            raise CompileProblem(
                "SourceNotFound", "spec.targetId", f"register Source {register!r} not found or not ready"
            )
        if target.type != "register":
            raise CompileProblem(
                "InvalidTarget",
                "spec.targetId",
                f"Source {register!r} is of type {target.type!r}, not register",
            )
    event = None
    if spec.event is not None:
        event = events.get(ResourceKey(EVENT.kind, res.namespace, spec.event))
        if event is None:
            raise CompileProblem(
                "EventNotFound", "spec.event", f"Event {spec.event!r} not found or not ready"
            )
    try:
        allow_list = IpAllowList(spec.allowedIPs)
    except ValueError as error:
        where, _, message = str(error).partition(": ")
        raise CompileProblem("InvalidSpec", "spec.allowedIPs" + where.removeprefix("ips"), message) from error
    credentials = tuple(
        ctx.secret(res.namespace, ref, f"spec.auth.secretRefs[{i}]")
        for i, ref in enumerate(spec.auth.secretRefs)
    )
    auth = InboundAuthConfig(
        type=spec.auth.type,
        credentials=credentials,
        header=spec.auth.header,
        algorithms=tuple(spec.auth.algorithms),
        tolerance_seconds=spec.auth.toleranceSeconds,
        issuer=spec.name or res.name,
    )
    try:
        verifier = compile_verifier(auth)
    except InboundAuthConfigError as error:
        raise CompileProblem("InvalidAuth", "spec.auth", "; ".join(error.problems)) from None
    return ConsumerRoute(
        key=res.key,
        endpoint=normalise_endpoint(spec.endpoint),
        verifier=verifier,
        allow_list=allow_list,
        max_body_bytes=spec.maxBodyBytes,
        mapping=mapping,
        mapping_key=mapping_key,
        target_type=spec.targetType,
        target=target,
        schema=schema,
        event=event,
    )


# ------------------------------------------------------------------------------------------ main


def compile_table(
    resources: Mapping[ResourceKey, Resource],
    secrets: Mapping[ResourceKey, SecretOrConfigMap],
    *,
    version: int,
    memo: Memo | None = None,
    egress: EgressPolicy | None = None,
) -> RoutingTable:
    """Compile everything. Never raises for a bad resource: it gets a Ready=False result instead."""
    ctx = _Context(resources, secrets, memo or Memo(), egress or _DEFAULT_EGRESS)
    by_kind: dict[str, list[tuple[Resource, BaseModel | None]]] = {k: [] for k in KINDS_BY_NAME}
    for res in _ordered(list(resources.values())):
        if res.kind == EVENT_SUBSCRIPTION.kind:
            # Parsed where its route is built, if no route is kept: one parsed spec at a time is alive.
            by_kind[res.kind].append((res, None))
            continue
        spec, problems = ctx.memo.parsed(res, KINDS_BY_NAME[res.kind])
        if spec is None:
            ctx.fail(res, problems[0].reason, problems)  # InvalidFilter for spec.filters
            continue
        by_kind[res.kind].append((res, spec))

    def attempt(res: Resource, build: Callable[..., T], *args: Any) -> T | None:
        try:
            return build(ctx, res, *args)
        except CompileProblem as problem:
            ctx.fail(res, problem.reason, [FieldProblem(problem.field_path, problem.message, problem.reason)])
            return None

    sources: dict[ResourceKey, SourceRoute] = {}
    for res, spec in by_kind[SOURCE.kind]:
        route = attempt(res, _compile_source, spec)
        if route is not None:
            sources[res.key] = route
            ctx.ok(res, url=route.target.url)

    events: dict[ResourceKey, EventRoute] = {}
    events_by_type: dict[str, EventRoute] = {}
    defined_here: dict[tuple[str, str], EventRoute] = {}
    for res, spec in by_kind[EVENT.kind]:
        event = attempt(res, _compile_event, spec)
        if event is None:
            continue
        winner = defined_here.get((res.namespace, event.type))
        if event.enabled and winner is not None:
            message = f"{event.type!r} is already defined by Event {winner.key.name} in this namespace"
            ctx.fail(res, "TypeConflict", [FieldProblem("spec.type", message)])
            continue
        events[res.key] = event
        if event.enabled:
            defined_here[(res.namespace, event.type)] = event
            # /events is one endpoint for all namespaces: the oldest definition of a type governs it.
            events_by_type.setdefault(event.type, event)
        ctx.ok(res, "compiled" if event.enabled else "disabled (isEnabled: false)")

    mappings: dict[ResourceKey, Any] = {}
    for res, spec in by_kind[MAPPING.kind]:
        compiled = attempt(res, _compile_mapping, spec)
        if compiled is not None:
            mappings[res.key] = compiled
            ctx.ok(res)

    by_type: dict[tuple[str, str], list[SubscriptionRoute]] = {}
    wildcard: dict[str, list[SubscriptionRoute]] = {}
    for res, _ in by_kind[EVENT_SUBSCRIPTION.kind]:
        kept = ctx.memo.route(res, ctx.egress)
        if kept is None:
            spec, problems = ctx.memo.parsed(res, EVENT_SUBSCRIPTION)
            if spec is None:
                ctx.fail(res, problems[0].reason, problems)  # InvalidFilter for spec.filters
                continue
            assert isinstance(spec, EventSubscriptionSpec)
            sub = attempt(res, _compile_subscription, spec, sources)
            if sub is None:
                continue
            ctx.ok(res, url=sub.target.redacted_url, style=sub.style)
            if _self_contained(spec):
                ctx.memo.keep_route(res, ctx.egress, sub, ctx.results[res.key])
        else:
            sub, ctx.results[res.key] = kept
        if sub.event_type == "*":
            wildcard.setdefault(res.namespace, []).append(sub)
        else:
            by_type.setdefault((res.namespace, sub.event_type), []).append(sub)

    consumers: dict[str, ConsumerRoute] = {}
    for res, spec in by_kind[CONSUMER.kind]:
        assert isinstance(spec, ConsumerSpec)
        if not spec.isEnabled:
            ctx.ok(res, "disabled (isEnabled: false)")
            continue
        consumer = attempt(res, _compile_consumer, spec, mappings, sources, events)
        if consumer is None:
            continue
        holder = consumers.get(consumer.endpoint)
        if holder is not None:
            message = (
                f"/webhooks/{consumer.endpoint} is already served by Consumer {holder.key.namespaced_name}"
            )
            ctx.fail(res, "EndpointConflict", [FieldProblem("spec.endpoint", message)])
            continue
        consumers[consumer.endpoint] = consumer
        if consumer.event is not None and not consumer.event.enabled:
            # Served (a target still stores), but says why nothing is emitted.
            message = event_disabled_reason(consumer.event)
            ctx.ok(res, message, "EventDisabled", url=f"/webhooks/{consumer.endpoint}")
            continue
        ctx.ok(res, url=f"/webhooks/{consumer.endpoint}")

    ctx.memo.forget_missing(resources)
    return RoutingTable(
        version=version,
        events_by_type=events_by_type,
        events_by_namespace_type=defined_here,
        subscriptions_by_namespace_type={k: tuple(s) for k, s in by_type.items()},
        wildcard_subscriptions={ns: tuple(s) for ns, s in wildcard.items()},
        consumers_by_endpoint=consumers,
        sources=sources,
        results=ctx.results,
        referenced=frozenset(ctx.referenced),
    )


def problems_of(table: RoutingTable) -> list[tuple[ResourceResult, FieldProblem]]:
    """Every problem of every not-ready resource (for the validator's output)."""
    return [(r, p) for r in table.results.values() if not r.ready for p in r.problems]
