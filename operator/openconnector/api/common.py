"""Types shared by every custom resource: references, conditions and the base model config.

Field names are camelCase on purpose: they are the wire names of the CRDs (and, for the seed's fields,
the names the OpenConnector design uses verbatim).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

GROUP = "openconnector.nl"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "openconnector"

# RFC 1123 subdomain, the rule Kubernetes applies to most object names.
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# ISO-8601 durations (Knative style, PT0.2S) or Go-style shorthands (200ms, 5s, 1m, 2h).
# No look-arounds: both the apiserver (RE2) and pydantic (Rust regex) refuse them; the duration parser
# refuses the empty forms "P" and "PT" when the routing table compiles.
DURATION_PATTERN = r"^(P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?|\d+(\.\d+)?(ms|s|m|h))$"


@dataclass(frozen=True)
class CelRule:
    """A cross-field rule, written once as CEL for the apiserver and once as Python for offline use.

    Both forms are tested against the same fixtures (unit tier for Python, e2e tier for CEL), so they
    cannot drift apart silently.
    """

    rule: str
    message: str
    field_path: str = ""

    def as_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


class ApiModel(BaseModel):
    """Base of every spec and status model: unknown fields are refused, as a structural schema prunes them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    # Rules that span fields; rendered into x-kubernetes-validations of this object's schema.
    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if cls.cel_rules:
            target = handler.resolve_ref_schema(schema)
            target["x-kubernetes-validations"] = [r.as_schema() for r in cls.cel_rules]
        return schema


class SecretKeySelector(ApiModel):
    """Selects one key of a Secret in the resource's own namespace."""

    name: str = Field(description="Name of the Secret, in the same namespace.", pattern=K8S_NAME_PATTERN)
    key: str = Field(description="Key inside the Secret's data.", min_length=1)


class ConfigMapKeySelector(ApiModel):
    """Selects one key of a ConfigMap in the resource's own namespace."""

    name: str = Field(description="Name of the ConfigMap, in the same namespace.", pattern=K8S_NAME_PATTERN)
    key: str = Field(description="Key inside the ConfigMap's data.", min_length=1)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A status condition following the Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(description="Type of condition in CamelCase, e.g. Ready or Healthy.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="Machine-readable CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable details; names the offending field.")
    lastTransitionTime: datetime = Field(description="When the condition last changed status.")
    observedGeneration: int | None = Field(
        default=None, description="The .metadata.generation the condition was computed from."
    )


class LastDelivery(ApiModel):
    """The most recent successful delivery."""

    time: datetime = Field(description="When the delivery succeeded.")
    statusCode: int = Field(description="HTTP status code the subscriber answered.")
    latencyMs: float = Field(description="Round-trip time of the successful attempt in milliseconds.")


class LastError(ApiModel):
    """The most recent failure. Never contains secret material."""

    time: datetime = Field(description="When the failure happened.")
    statusCode: int | None = Field(
        default=None, description="HTTP status code, absent for network errors and timeouts."
    )
    message: str = Field(description="What went wrong.")


class CommonStatus(ApiModel):
    """Fields every kind's status carries."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    observedGeneration: int | None = Field(
        default=None, description="The .metadata.generation that the gateway last compiled."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Current state: Ready (compiled and references resolved) and, where deliveries "
        "happen, Healthy (success ratio of the last 50 attempts at least 0.8; Unknown with reason "
        "NotEnoughAttempts while fewer than 5 attempts exist).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


_CAMEL_FIELD = re.compile(r"^[a-z][A-Za-z0-9]*$")


def field_names_are_camel_case(model: type[BaseModel]) -> bool:
    """Wire names must be camelCase; used by a test over every model."""
    return all(_CAMEL_FIELD.match(f.alias or n) for n, f in model.model_fields.items())


JsonObject = dict[str, Any]
