"""Spec and status models of the five kinds: the single source of truth.

The CRDs in ``crds/``, the offline validator, standalone mode and the operator all read these models.
The seed's field names (name, slug, type, source, schema, isEnabled, eventType, endpoint, method,
status, filters, mappingId, targetType, targetId) are kept verbatim.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from openconnector.api.common import (
    DURATION_PATTERN,
    K8S_NAME_PATTERN,
    ApiModel,
    CelRule,
    CommonStatus,
    ConfigMapKeySelector,
    LastDelivery,
    LastError,
    SecretKeySelector,
)
from openconnector.ce.nlgov import check_source
from openconnector.filters.dialects import unknown_dialect_message

# Reverse-DNS CloudEvents type (a domain of two or more labels plus a name), optionally ending in
# a single version suffix such as ".v2".
EVENT_TYPE_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*(\.[A-Za-z0-9]+([-_][A-Za-z0-9]+)*){2,}$"
# A Consumer endpoint: URL path segments of unreserved characters, leading slash optional.
CONSUMER_ENDPOINT_PATTERN = r"^/?[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$"
# An EventSubscription endpoint: an absolute http(s) URL, or an internal reference.
SUBSCRIPTION_ENDPOINT_PATTERN = r"^(https?://[^\s]+|source:[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[^\s]*)?|service:[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?(:[0-9]{1,5})?(/[^\s]*)?)$"
HTTP_URL_PATTERN = r"^https?://[^\s]+$"
_REGISTER_TARGET = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[^/]+$")

PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}
# On a free-form field: the name of the model (in this module) that the items of its list form follow.
ITEMS_MODEL_KEY = "x-openconnector-items-model"


def _free_form(description: str) -> dict[str, Any]:
    """Schema override for a really free-form value (JSON Schema, JSON Logic, mapping templates)."""
    return {"description": description, **PRESERVE}


# --------------------------------------------------------------------------------------------- Event


class EventSchema(ApiModel):
    """Where the JSON Schema of the event's data comes from. Set exactly one field."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="[has(self.inline), has(self.configMapKeyRef), has(self.url)].filter(x, x).size() == 1",
            message="set exactly one of inline, configMapKeyRef or url",
        ),
    )

    inline: dict[str, Any] | None = Field(
        default=None,
        description="The JSON Schema itself (draft 2020-12 unless $schema says otherwise).",
        json_schema_extra=_free_form("The JSON Schema itself (draft 2020-12 unless $schema says otherwise)."),
    )
    configMapKeyRef: ConfigMapKeySelector | None = Field(
        default=None, description="A ConfigMap key holding the JSON Schema as JSON or YAML."
    )
    url: str | None = Field(
        default=None,
        pattern=r"^https://[^\s]+$",
        description="An https URL of the schema. It becomes the events' dataschema attribute; the gateway "
        "does not fetch it, so data is validated only with inline or configMapKeyRef.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EventSchema:
        if sum(x is not None for x in (self.inline, self.configMapKeyRef, self.url)) != 1:
            raise ValueError(self.cel_rules[0].message)
        return self


class EventSpec(ApiModel):
    """A CloudEvent type that the gateway can emit or receive."""

    # The NL GOV source rule of ce/nlgov.check_source, coarser (RE2 has no RFC 3986 grammar): the
    # routing-table compiler runs check_source itself, so what CEL lets through still ends not Ready.
    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.profile != 'nl-gov' || ("
            "self.source.matches('^[A-Za-z][A-Za-z0-9+.-]*:[^#[:space:]]*$')"
            " && (!self.source.lowerAscii().startsWith('urn:nld:') || self.source.size() > 8)"
            " && (!self.source.lowerAscii().startsWith('urn:nld:oin:')"
            " || self.source.matches('^[uU][rR][nN]:[nN][lL][dD]:[oO][iI][nN]:[0-9]{20}(:.*)?$')))",
            message="with profile nl-gov, source must be an absolute URI (preferably "
            "urn:nld:oin:<20-digit OIN>:systeem:<name>)",
            field_path=".source",
        ),
    )

    name: str | None = Field(default=None, description="Human-readable name.")
    slug: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
        description="URL-friendly identifier, as in OpenConnector (informational).",
    )
    type: str = Field(
        pattern=EVENT_TYPE_PATTERN,
        max_length=253,
        description="CloudEvents type, reverse-DNS (e.g. nl.vng.zgw.zaken.zaak.created), with an optional "
        "single version suffix such as .v2.",
    )
    source: str = Field(
        min_length=1,
        max_length=2048,
        description="CloudEvents source of emitted events: a URI-reference. With profile nl-gov it must "
        "be an absolute URI: the NL GOV profile recommends a URN in the nld namespace "
        "(urn:nld:oin:<20-digit OIN>:systeem:<name>); an https URL or a URN in another namespace "
        "(urn:uuid:...) is accepted too.",
    )
    schema_: EventSchema | None = Field(
        default=None,
        alias="schema",
        description="Optional JSON Schema of the event's data payload; received and emitted data is "
        "validated against it.",
    )
    isEnabled: bool = Field(default=True, description="Whether the event is active.")
    profile: Literal["nl-gov", "cloudevents"] = Field(
        default="nl-gov",
        description="nl-gov checks received events strictly against the NL GOV CloudEvents profile and "
        "refuses violations; cloudevents only logs and counts them.",
    )

    @model_validator(mode="after")
    def _nlgov_source(self) -> EventSpec:
        if self.profile == "nl-gov":
            problem = check_source(self.source)
            if problem is not None:
                raise ValueError(f"source: {problem}")
        return self


# The status shards (status/shards.py): the same two fields on every kind with counters.
REPLICAS_DESCRIPTION = (
    "Per replica (pod name): the counts of that replica alone; the top-level counters are the sum over "
    "these and retired. Written by each replica for itself; a departed replica's entry is folded into "
    "retired by the holder of the status Lease."
)
RETIRED_DESCRIPTION = (
    "Counts of replicas that are gone (and of a status written before replicas existed), so that a "
    "rolling update loses nothing."
)


class EventCounters(ApiModel):
    """Counters of an Event, summed over replicas."""

    received: int = Field(default=0, description="Events of this type accepted on /events.")
    emitted: int = Field(
        default=0,
        description="Events of this type published for fan-out: accepted on /events or emitted by Consumers.",
    )
    refused: int = Field(default=0, description="Events of this type refused (schema or profile violations).")


class EventShard(EventCounters):
    """One replica's part of an Event's status."""

    lastEmitted: datetime | None = Field(
        default=None, description="When the last event of this type was published for fan-out."
    )


class EventStatus(EventShard, CommonStatus):
    """Observed state of an Event."""

    replicas: dict[str, EventShard] = Field(default_factory=dict, description=REPLICAS_DESCRIPTION)
    retired: EventCounters | None = Field(default=None, description=RETIRED_DESCRIPTION)


# ------------------------------------------------------------------------------- EventSubscription


class DeadLetter(ApiModel):
    """Where events go once every retry failed."""

    endpoint: str = Field(
        pattern=SUBSCRIPTION_ENDPOINT_PATTERN,
        description="URL or internal reference (same forms as the subscription endpoint). Dead-lettered "
        "events carry the extensions ocerrordest, ocerrorcode and ocerrordata.",
    )


class Delivery(ApiModel):
    """Retry, backoff, timeout and dead-letter policy (Knative's delivery spec plus backoffMax)."""

    retries: int = Field(default=10, ge=0, le=100, description="Retry attempts after the first one.")
    backoffPolicy: Literal["exponential", "linear"] = Field(
        default="exponential",
        description="exponential waits backoffDelay*2^n, linear waits backoffDelay*n, both with full jitter.",
    )
    backoffDelay: str = Field(
        default="PT0.2S", pattern=DURATION_PATTERN, description="Base delay: ISO-8601 (PT0.2S) or 200ms."
    )
    backoffMax: str = Field(
        default="PT5M", pattern=DURATION_PATTERN, description="Upper bound of one wait, and of Retry-After."
    )
    timeout: str = Field(default="PT30S", pattern=DURATION_PATTERN, description="Timeout of each attempt.")
    deadLetter: DeadLetter | None = Field(
        default=None, description="Dead-letter sink; without one, exhausted events are counted as dropped."
    )
    maxConcurrency: int = Field(default=4, ge=1, le=256, description="Concurrent requests to this endpoint.")
    autoPauseAfter: int = Field(
        default=0,
        ge=0,
        description="Suspend delivery after this many consecutive failed events (0 = never), as Svix does.",
    )


class OutboundAuth(ApiModel):
    """Credentials sent to the subscriber; the secret material stays in Secrets."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!has(self.type) || self.type == 'none' || has(self.secretRef)",
            message="secretRef is required unless type is none",
            field_path=".secretRef",
        ),
    )

    type: Literal["none", "bearer", "basic"] = Field(
        default="none",
        description="bearer sends Authorization: Bearer <secret>; basic sends the secret 'user:password'.",
    )
    secretRef: SecretKeySelector | None = Field(default=None, description="Secret key with the credential.")
    signingSecretRef: SecretKeySelector | None = Field(
        default=None,
        description="Secret key with a Standard Webhooks secret (whsec_...); when set, every request is "
        "signed with webhook-id, webhook-timestamp and webhook-signature headers.",
    )

    @model_validator(mode="after")
    def _secret_needed(self) -> OutboundAuth:
        if self.type != "none" and self.secretRef is None:
            raise ValueError("secretRef: required unless type is none")
        return self


# The keys of a filter object: the dialects plus cesql, Knative's name for sql.
FILTER_KEYS = ("exact", "prefix", "suffix", "all", "any", "not", "sql", "cesql", "jsonLogic")


class Filter(ApiModel):
    """A filter object: exactly one dialect key."""

    # The CRD carries this shape for the list form of spec.filters (nested filters two levels deep,
    # deeper ones by their keys only), so the apiserver refuses a misspelt dialect at apply time; the
    # routing-table compiler checks the values (CESQL syntax, attribute names) at every depth.

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        frozen=True,
        json_schema_extra={
            "minProperties": 1,
            "maxProperties": 1,
            "oneOf": [{"required": [key]} for key in FILTER_KEYS],
        },
    )

    exact: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=_free_form("Attribute name -> value; each must be present and equal."),
    )
    prefix: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=_free_form("Attribute name -> value; each must be present and start with it."),
    )
    suffix: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=_free_form("Attribute name -> value; each must be present and end with it."),
    )
    all: list[Filter] | None = Field(default=None, min_length=1, description="Every nested filter matches.")
    any: list[Filter] | None = Field(default=None, min_length=1, description="Some nested filter matches.")
    not_: Filter | None = Field(default=None, alias="not", description="The nested filter does not match.")
    sql: str | None = Field(default=None, description="A Boolean CESQL v1 expression.")
    cesql: str | None = Field(default=None, description="Alias of sql (Knative's key).")
    jsonLogic: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=_free_form("A JSON Logic rule over {attributes, data}; a truthy result matches."),
    )

    @model_validator(mode="before")
    @classmethod
    def _one_dialect_key(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if key not in FILTER_KEYS:
                    raise ValueError(unknown_dialect_message(str(key), value))
            if len(data) != 1:
                raise ValueError(f"a filter object has exactly one dialect key, got {len(data)}")
        return data


_FILTER_LIST: TypeAdapter[list[Filter]] = TypeAdapter(list[Filter])
_FILTERS_DESCRIPTION = (
    "Filters narrowing which events match; all must match. A list of filter objects, each with exactly one "
    "dialect key: exact, prefix, suffix (maps of attribute to value, case-sensitive), all, any (non-empty "
    "lists of filters), not (one filter), sql (a CESQL expression; alias cesql) or jsonLogic (a JSON Logic "
    "rule over {attributes, data}). A plain map {attribute: value} as the whole value is shorthand for "
    "[{exact: map}]; the items of a list are always filter objects."
)


# A list or a map, so free-form; the CRD generator gives the list form's items the Filter schema.
_FILTERS_SCHEMA = {**_free_form(_FILTERS_DESCRIPTION), ITEMS_MODEL_KEY: "Filter"}


def _filter_list_problem(error: ValidationError) -> str:
    """The first problem of a filter list as "[0].all[1]: message" (relative to spec.filters)."""
    item = error.errors(include_url=False)[0]
    path = ""
    for part in item["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    message = str(item["msg"]).removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{path}: {message}"


class EventSubscriptionSpec(ApiModel):
    """Routes events of one CloudEvents type published in its namespace, narrowed by filters, to a
    handler endpoint."""

    eventType: str = Field(
        min_length=1,
        max_length=253,
        description="CloudEvents type to subscribe to (exact match). '*' subscribes to every type.",
    )
    endpoint: str = Field(
        pattern=SUBSCRIPTION_ENDPOINT_PATTERN,
        description="Handler endpoint: an absolute http(s) URL, 'source:<name>[/path]' (the location of a "
        "Source in this namespace plus path) or 'service:<name>[.<namespace>][:<port>][/path]' (a "
        "Kubernetes Service, http://<name>.<namespace>.svc:<port>/path).",
    )
    method: Literal["POST", "PUT", "PATCH"] = Field(default="POST", description="HTTP method for delivery.")
    style: Literal["push", "pull"] = Field(
        default="push",
        description="push: the gateway delivers to the endpoint; pull: nothing is delivered, the events are "
        "read from GET /api/v1alpha1/subscriptions/<ns>/<name>/pull (the endpoint is not called).",
    )
    status: Literal["active", "paused"] = Field(
        default="active",
        description="Desired state: paused never delivers. (This is spec, not the status subresource.)",
    )
    filters: list[dict[str, Any]] | dict[str, Any] | None = Field(
        default=None, json_schema_extra=_FILTERS_SCHEMA
    )
    source: str | None = Field(
        default=None, min_length=1, description="Only events with exactly this source."
    )
    contentMode: Literal["structured", "binary"] = Field(
        default="structured",
        description="structured sends application/cloudevents+json; binary sends ce- headers and the data.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers on every delivery (no secrets: use auth)."
    )
    auth: OutboundAuth | None = Field(default=None, description="Credentials and signing for deliveries.")
    delivery: Delivery = Field(
        default_factory=Delivery,
        description="Retry and dead-letter policy.",
        json_schema_extra={"default": {}},
    )

    @field_validator("filters")
    @classmethod
    def _list_items_are_filter_objects(cls, filters: Any) -> Any:
        # The shape the CRD's schema checks at apply time; the compiler checks the rest.
        if isinstance(filters, list):
            try:
                _FILTER_LIST.validate_python(filters, strict=True)
            except ValidationError as error:
                raise ValueError(_filter_list_problem(error)) from None
        return filters


class EventSubscriptionCounters(ApiModel):
    """Delivery counters of an EventSubscription, summed over replicas."""

    delivered: int = Field(default=0, description="Events delivered successfully.")
    failed: int = Field(
        default=0,
        description="Events whose delivery to the subscriber failed (retries exhausted, an answer that is "
        "not retried, 410, or paused); each then goes to the dead-letter sink.",
    )
    retried: int = Field(default=0, description="Retry attempts made.")
    deadLettered: int = Field(default=0, description="Events sent to the dead-letter sink.")
    dropped: int = Field(
        default=0,
        description="Events lost: no dead-letter sink, the dead letter failed, the queue was full, or the "
        "gateway shut down or the subscription was removed before delivery.",
    )


class ReplicaHealth(ApiModel):
    """One replica's own Healthy condition (the top-level condition is False when any is False)."""

    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="Machine-readable reason.")
    message: str = Field(default="", description="Human-readable detail.")


class EventSubscriptionShard(EventSubscriptionCounters):
    """One replica's part of an EventSubscription's status."""

    phase: Literal["Active", "Paused", "Suspended"] | None = Field(
        default=None,
        description="Active delivers; Paused follows spec.status; Suspended means the gateway stopped "
        "delivering (410 Gone or autoPauseAfter) until the spec changes.",
    )
    consecutiveFailures: int = Field(default=0, description="Failed events in a row.")
    successRatio: float | None = Field(default=None, description="Success ratio of recent attempts (0..1).")
    lastDelivery: LastDelivery | None = Field(default=None, description="The last successful delivery.")
    lastError: LastError | None = Field(default=None, description="The last failure.")


class EventSubscriptionStatus(EventSubscriptionShard, CommonStatus):
    """Delivery health of an EventSubscription. Top level: the sum over replicas (consecutiveFailures and
    successRatio: the worst replica; lastDelivery, lastError: the latest)."""

    url: str | None = Field(default=None, description="The resolved endpoint URL.")
    replicas: dict[str, EventSubscriptionReplica] = Field(
        default_factory=dict, description=REPLICAS_DESCRIPTION
    )
    retired: EventSubscriptionCounters | None = Field(default=None, description=RETIRED_DESCRIPTION)


class EventSubscriptionReplica(EventSubscriptionShard):
    """One replica's part of an EventSubscription's status, with its own health."""

    health: ReplicaHealth | None = Field(default=None, description="This replica's Healthy condition.")


# ------------------------------------------------------------------------------------ Consumer

JwtAlgorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"
]  # fmt: skip


def _default_algorithms() -> list[JwtAlgorithm]:
    return ["HS256"]


InboundAuthType = Literal["none", "bearer", "basic", "apiKey", "hmac", "github", "jwt"]


class InboundAuth(ApiModel):
    """How a Consumer authenticates webhook senders. Secret material stays in Secrets."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!has(self.type) || self.type == 'none' || "
            "(has(self.secretRefs) && self.secretRefs.size() > 0)",
            message="secretRefs needs at least one entry unless type is none",
            field_path=".secretRefs",
        ),
    )

    type: InboundAuthType = Field(
        default="none",
        description="none; bearer (Authorization: Bearer); basic (secret holds user:password); apiKey "
        "(header carries one of the keys); hmac (Standard Webhooks signature, whsec_ secrets); github "
        "(X-Hub-Signature-256); jwt (iss = consumer name, algorithm pinned, iat required).",
    )
    secretRefs: list[SecretKeySelector] = Field(
        default_factory=list,
        description="Secret keys holding the credentials. Several entries allow rotation: any one is valid.",
    )
    header: str = Field(default="X-API-Key", min_length=1, description="Header name for apiKey.")
    algorithms: list[JwtAlgorithm] = Field(
        default_factory=_default_algorithms, description="Accepted JWT algorithms (pinned)."
    )
    toleranceSeconds: int = Field(
        default=300, ge=0, le=3600, description="Allowed clock skew for hmac timestamps and JWT times."
    )

    @model_validator(mode="after")
    def _secrets_needed(self) -> InboundAuth:
        if self.type != "none" and not self.secretRefs:
            raise ValueError("secretRefs: needs at least one entry unless type is none")
        return self


class ConsumerSpec(ApiModel):
    """A webhook endpoint: authenticate, map, forward to a target, and optionally emit an event."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="has(self.targetType) == has(self.targetId)",
            message="targetType and targetId go together",
            field_path=".targetId",
        ),
        CelRule(
            rule="has(self.targetType) || has(self.event)",
            message="a consumer needs a target (targetType and targetId) or an event to emit",
        ),
        CelRule(
            rule="!has(self.targetType) || self.targetType != 'register/schema' || "
            "self.targetId.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[^/]+$')",
            message="targetId of a register/schema target is <register source name>/<schema>",
            field_path=".targetId",
        ),
    )

    name: str | None = Field(
        default=None, description="Human-readable name; also the JWT issuer (defaults to metadata.name)."
    )
    endpoint: str = Field(
        pattern=CONSUMER_ENDPOINT_PATTERN,
        max_length=512,
        description="Exposed webhook path, served at /webhooks/<endpoint>; a leading slash is optional.",
    )
    mappingId: str | None = Field(
        default=None, pattern=K8S_NAME_PATTERN, description="Name of a Mapping applied to the payload."
    )
    targetType: Literal["source", "register/schema"] | None = Field(
        default=None, description="source forwards to a Source; register/schema stores in a register."
    )
    targetId: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="The Source name, or <register>/<schema> where <register> names a Source of type "
        "register.",
    )
    isEnabled: bool = Field(default=True, description="Whether the consumer is active.")
    auth: InboundAuth = Field(
        default_factory=InboundAuth, description="Sender authentication.", json_schema_extra={"default": {}}
    )
    allowedIPs: list[str] = Field(
        default_factory=list, description="CIDRs allowed to call; empty allows everyone."
    )
    maxBodyBytes: int = Field(default=1048576, ge=1, le=67108864, description="Largest body accepted.")
    event: str | None = Field(
        default=None,
        pattern=K8S_NAME_PATTERN,
        description="Name of an Event emitted after each successful ingestion.",
    )

    @model_validator(mode="after")
    def _target_rules(self) -> ConsumerSpec:
        if (self.targetType is None) != (self.targetId is None):
            raise ValueError("targetId: targetType and targetId go together")
        if self.targetType is None and self.event is None:
            raise ValueError("a consumer needs a target (targetType and targetId) or an event to emit")
        if (
            self.targetType == "register/schema"
            and self.targetId is not None
            and not _REGISTER_TARGET.match(self.targetId)
        ):
            raise ValueError("targetId: a register/schema target is <register source name>/<schema>")
        return self


class ConsumerCounters(ApiModel):
    """Counters of a Consumer, summed over replicas."""

    received: int = Field(default=0, description="Requests received.")
    forwarded: int = Field(default=0, description="Payloads delivered to the target (or emitted).")
    rejected: int = Field(default=0, description="Requests refused, all reasons.")
    rejectedByReason: dict[str, int] = Field(
        default_factory=dict, description="Requests refused, by reason (auth, mapping, target, ...)."
    )


class ConsumerShard(ConsumerCounters):
    """One replica's part of a Consumer's status."""

    lastReceived: datetime | None = Field(default=None, description="When the last request arrived.")
    lastError: LastError | None = Field(default=None, description="The last failure.")


class ConsumerStatus(ConsumerShard, CommonStatus):
    """Ingress health of a Consumer."""

    url: str | None = Field(default=None, description="Path of the webhook endpoint on the gateway.")
    replicas: dict[str, ConsumerShard] = Field(default_factory=dict, description=REPLICAS_DESCRIPTION)
    retired: ConsumerCounters | None = Field(default=None, description=RETIRED_DESCRIPTION)


# ------------------------------------------------------------------------------------- Mapping


class MappingSpec(ApiModel):
    """An OpenConnector mapping: passThrough, dot-path copy, literals, templates, unset, cast."""

    name: str | None = Field(default=None, description="Human-readable name.")
    mapping: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra=_free_form(
            "Output dot-path -> source. A value that is an existing input dot-path copies it; a list or "
            "object is set literally; anything else renders as a sandboxed Jinja2 template with the "
            "input as context. A single key '#' returns the value at the root."
        ),
    )
    unset: list[str] = Field(default_factory=list, description="Output dot-paths removed after mapping.")
    cast: dict[str, str] = Field(
        default_factory=dict,
        description="Output dot-path -> cast name (several separated by commas), e.g. integer, bool, json.",
    )
    passThrough: bool = Field(default=False, description="Start from a copy of the input.")


class MappingStatus(CommonStatus):
    """Compile state of a Mapping."""


# -------------------------------------------------------------------------------------- Source


class SourceAuth(ApiModel):
    """Credentials the gateway sends to a Source."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!has(self.type) || self.type == 'none' || has(self.secretRef)",
            message="secretRef is required unless type is none",
            field_path=".secretRef",
        ),
    )

    type: Literal["none", "bearer", "basic", "apiKey"] = Field(default="none", description="Auth scheme.")
    secretRef: SecretKeySelector | None = Field(default=None, description="Secret key with the credential.")
    header: str = Field(default="X-API-Key", min_length=1, description="Header name for apiKey.")

    @model_validator(mode="after")
    def _secret_needed(self) -> SourceAuth:
        if self.type != "none" and self.secretRef is None:
            raise ValueError("secretRef: required unless type is none")
        return self


class SourceSpec(ApiModel):
    """An external system: an API, or an OpenRegister-compatible register."""

    name: str | None = Field(default=None, description="Human-readable name.")
    location: str = Field(pattern=HTTP_URL_PATTERN, description="Base URL.")
    type: Literal["api", "register"] = Field(
        default="api",
        description="api receives payloads at its location; register stores objects at "
        "<location>/objects/<register>/<schema> (the OpenRegister objects API).",
    )
    register_: str | None = Field(
        alias="register",
        default=None,
        min_length=1,
        description="Register id at the register API; defaults to the Source's metadata.name.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers on every request.")
    auth: SourceAuth | None = Field(default=None, description="Credentials sent to the source.")
    timeout: str = Field(default="PT30S", pattern=DURATION_PATTERN, description="Request timeout.")


class SourceCounters(ApiModel):
    """Counters of a Source, summed over replicas."""

    requests: int = Field(default=0, description="Requests sent to this source.")
    failures: int = Field(default=0, description="Requests that failed (network error or non-2xx).")


class SourceShard(SourceCounters):
    """One replica's part of a Source's status."""

    lastError: LastError | None = Field(default=None, description="The last failure.")


class SourceStatus(SourceShard, CommonStatus):
    """Health of a Source as a target."""

    replicas: dict[str, SourceShard] = Field(default_factory=dict, description=REPLICAS_DESCRIPTION)
    retired: SourceCounters | None = Field(default=None, description=RETIRED_DESCRIPTION)
