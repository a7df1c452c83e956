"""The five kinds: names, models and how ``kubectl get`` shows them."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from openconnector.api.common import API_VERSION, CommonStatus
from openconnector.api.models import (
    ConsumerSpec,
    ConsumerStatus,
    EventSpec,
    EventStatus,
    EventSubscriptionSpec,
    EventSubscriptionStatus,
    MappingSpec,
    MappingStatus,
    SourceSpec,
    SourceStatus,
)

READY = '.status.conditions[?(@.type=="Ready")].status'
# The first condition that is not True: conditions are written Ready first, so this is the Ready
# reason of a resource that is not ready, else the Healthy reason of a subscription that is not healthy
# (the apiserver prints the first match); empty when all is well.
REASON = '.status.conditions[?(@.status!="True")].reason'


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def as_crd(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[CommonStatus]
    description: str
    columns: tuple[PrinterColumn, ...]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return API_VERSION


EVENT = Kind(
    kind="Event",
    plural="events",
    # kubectl's "events" is core/v1 Event; ours is reached as ocevent or events.openconnector.nl.
    short_names=("ocevent", "ocevents"),
    spec=EventSpec,
    status=EventStatus,
    description="An Event defines a CloudEvent type that OpenConnector can emit or receive. Because "
    "'kubectl get events' shows core Events, use 'kubectl get ocevents' or 'events.openconnector.nl'.",
    columns=(
        PrinterColumn("Type", ".spec.type", description="CloudEvents type"),
        PrinterColumn("Enabled", ".spec.isEnabled", "boolean"),
        PrinterColumn("Ready", READY),
        PrinterColumn("Reason", REASON, description="Why it is not ready"),
        PrinterColumn("Emitted", ".status.emitted", "integer"),
        PrinterColumn("Received", ".status.received", "integer", priority=1),
        AGE,
    ),
)

EVENT_SUBSCRIPTION = Kind(
    kind="EventSubscription",
    plural="eventsubscriptions",
    short_names=("evsub", "ocsub"),
    spec=EventSubscriptionSpec,
    status=EventSubscriptionStatus,
    description="An EventSubscription routes events of a CloudEvents type published in its namespace, "
    "narrowed by filters, to a handler endpoint, with retries, backoff and dead-lettering. Its status "
    "shows delivery health.",
    columns=(
        PrinterColumn("Event-Type", ".spec.eventType"),
        PrinterColumn("Status", ".status.phase", description="Active, Paused or Suspended"),
        PrinterColumn("Ready", READY),
        PrinterColumn("Healthy", '.status.conditions[?(@.type=="Healthy")].status'),
        PrinterColumn("Reason", REASON, description="Why it is not ready, or not healthy"),
        PrinterColumn("Delivered", ".status.delivered", "integer"),
        PrinterColumn("Failed", ".status.failed", "integer"),
        PrinterColumn("Last-Delivery", ".status.lastDelivery.time", "date"),
        PrinterColumn("Endpoint", ".spec.endpoint", priority=1),
        AGE,
    ),
)

CONSUMER = Kind(
    kind="Consumer",
    plural="consumers",
    short_names=("occonsumer", "occ"),
    spec=ConsumerSpec,
    status=ConsumerStatus,
    description="A Consumer exposes a webhook endpoint at the gateway: it authenticates the sender, "
    "applies an optional Mapping, forwards the result to a Source or register/schema, and can emit an "
    "Event.",
    columns=(
        PrinterColumn("Endpoint", ".spec.endpoint"),
        PrinterColumn("Target", ".spec.targetId"),
        PrinterColumn("Ready", READY),
        PrinterColumn("Reason", REASON, description="Why it is not ready"),
        PrinterColumn("Received", ".status.received", "integer"),
        PrinterColumn("Rejected", ".status.rejected", "integer", priority=1),
        AGE,
    ),
)

MAPPING = Kind(
    kind="Mapping",
    plural="mappings",
    short_names=("ocmap",),
    spec=MappingSpec,
    status=MappingStatus,
    description="A Mapping transforms a payload (OpenConnector semantics, sandboxed Jinja2 templates).",
    columns=(
        PrinterColumn("Ready", READY),
        PrinterColumn("Reason", REASON, description="Why it is not ready"),
        AGE,
    ),
)

SOURCE = Kind(
    kind="Source",
    plural="sources",
    short_names=("ocsrc",),
    spec=SourceSpec,
    status=SourceStatus,
    description="A Source is an external API or an OpenRegister-compatible register the gateway calls.",
    columns=(
        PrinterColumn("Type", ".spec.type"),
        PrinterColumn("Location", ".spec.location"),
        PrinterColumn("Ready", READY),
        PrinterColumn("Reason", REASON, description="Why it is not ready"),
        AGE,
    ),
)

# The core kinds the specs reference for their data (core/v1 Events are posted, never read).
SECRET = "Secret"
CONFIG_MAP = "ConfigMap"
DATA_KINDS = (SECRET, CONFIG_MAP)

ALL_KINDS: tuple[Kind, ...] = (EVENT, EVENT_SUBSCRIPTION, CONSUMER, MAPPING, SOURCE)
KINDS_BY_NAME: dict[str, Kind] = {k.kind: k for k in ALL_KINDS}
