"""Prometheus metrics of the gateway. One registry per gateway, so tests can run several side by side.

Names are referenced by the Grafana dashboard in the Helm chart; a test checks that every query there
names a metric defined here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from openconnector.api.keys import ResourceKey
    from openconnector.delivery.attempts import Attempt
    from openconnector.delivery.outcomes import FinalOutcome

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PARSE_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01)


M = TypeVar("M", bound=MetricWrapperBase)
#: Adds to one counter series (a bound child): ``inc(amount)``.
Inc = Callable[[float], None]


def counter_inc(child: Counter) -> Inc:
    """``child.inc`` without prometheus_client's per-call checks (a bound child is always observable, and
    the gateway never adds a negative amount): its value's ``inc``, bound once, one call instead of four.
    Falls back to ``child.inc`` should the library's internals ever differ."""
    inc = getattr(getattr(child, "_value", None), "inc", None)
    return inc if callable(inc) else child.inc


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # labels() takes a lock and hashes on every call; the hot path reuses the child series.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._incs: dict[tuple[int, tuple[str, ...]], Inc] = {}  # counter_inc of those children
        # Per subscription ("namespace/name"), its delivery series, bound on its first attempt.
        self._subscriptions: dict[ResourceKey, SubscriptionSeries] = {}
        r = self.registry
        self.events_received = Counter(
            "openconnector_events_received", "CloudEvents accepted on /events", ["mode"], registry=r
        )
        self.events_refused = Counter(
            "openconnector_events_refused",
            "CloudEvents refused on /events, by reason",
            ["reason"],
            registry=r,
        )
        self.events_profile_warnings = Counter(
            "openconnector_events_profile_warnings",
            "NL GOV profile violations let through in lax (cloudevents) mode",
            ["type"],
            registry=r,
        )
        self.ingress_bytes = Counter(
            "openconnector_ingress_bytes", "Request body bytes received", ["endpoint"], registry=r
        )
        self.parse_seconds = Histogram(
            "openconnector_cloudevent_parse_seconds",
            "Time to parse and validate one /events request",
            ["mode"],
            buckets=PARSE_BUCKETS,
            registry=r,
        )
        self.events_emitted = Counter(
            "openconnector_events_emitted", "Events fanned out, by type", ["type"], registry=r
        )
        self.webhooks_received = Counter(
            "openconnector_webhooks_received",
            "Webhook requests per consumer",
            ["namespace", "consumer"],
            registry=r,
        )
        self.webhooks_rejected = Counter(
            "openconnector_webhooks_rejected",
            "Webhook requests refused, by reason",
            ["namespace", "consumer", "reason"],
            registry=r,
        )
        self.webhooks_forwarded = Counter(
            "openconnector_webhooks_forwarded",
            "Webhook payloads delivered to their target",
            ["namespace", "consumer"],
            registry=r,
        )
        self.deliveries = Counter(
            "openconnector_deliveries",
            "Events finished per subscription, by outcome (delivered, dead_lettered, dropped)",
            ["namespace", "subscription", "outcome"],
            registry=r,
        )
        self.delivery_attempts = Counter(
            "openconnector_delivery_attempts",
            "HTTP delivery attempts, by status class (2xx, 4xx, 5xx, error)",
            ["namespace", "subscription", "code"],
            registry=r,
        )
        self.delivery_retries = Counter(
            "openconnector_delivery_retries", "Retry attempts", ["namespace", "subscription"], registry=r
        )
        self.delivery_latency = Histogram(
            "openconnector_delivery_latency_seconds",
            "Latency of delivery attempts",
            ["namespace", "subscription"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Health and queue depth of every routed subscription, read when scraped: no series is held per
        # idle subscription between scrapes (memory at 10k subscriptions), and the values are current.
        self.subscription_health = SubscriptionHealthCollector()
        r.register(self.subscription_health)
        self.routing_version = Gauge(
            "openconnector_routing_table_version", "Revision of the installed routing table", registry=r
        )
        self.routing_resources = Gauge(
            "openconnector_routing_resources", "Resources in the routing table", ["kind", "ready"], registry=r
        )
        self.target_requests = Counter(
            "openconnector_target_requests",
            "Requests to consumer targets (sources and registers), by outcome",
            ["namespace", "source", "outcome"],
            registry=r,
        )

    def child(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, cached."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def inc_of(self, metric: Counter, *labels: str) -> Inc:
        """:func:`counter_inc` of ``metric.labels(*labels)``, cached (the hot path's counters)."""
        key = (id(metric), labels)
        found = self._incs.get(key)
        if found is None:
            found = self._incs[key] = counter_inc(self.child(metric, *labels))
        return found

    def subscription(self, target_key: ResourceKey) -> SubscriptionSeries:
        """The delivery series of subscription ``target_key``, bound once."""
        found = self._subscriptions.get(target_key)
        if found is None:
            found = self._subscriptions[target_key] = SubscriptionSeries(
                self, target_key.namespace, target_key.name
            )
        return found

    def forget_subscription(self, key: ResourceKey) -> None:
        """Drop every series of a deleted subscription, so its last health value does not alert forever."""
        self._subscriptions.pop(key, None)
        namespace, name = key.namespace, key.name
        # (The health gauges need nothing: they list the routed subscriptions when scraped.)
        for metric in (
            self.deliveries, self.delivery_attempts, self.delivery_retries, self.delivery_latency,
        ):  # fmt: skip
            # prometheus_client has no "remove by label prefix"; its series dict is the only index.
            for labels in list(metric._metrics):
                if labels[:2] == (namespace, name):
                    metric.remove(*labels)
        for child in [k for k in self._children if k[1][:2] == (namespace, name)]:
            del self._children[child]
        for bound in [k for k in self._incs if k[1][:2] == (namespace, name)]:
            del self._incs[bound]

    def metric_names(self) -> set[str]:
        """Every sample name this registry can export (for the dashboard test)."""
        names: set[str] = set()
        for collector in self.registry.collect():
            names.add(collector.name)
            names.update(sample.name for sample in collector.samples)
        return names


class SubscriptionHealth(NamedTuple):
    """One routed subscription's health gauges: healthy is 1 (True), 0 (False) or -1 (Unknown)."""

    namespace: str
    name: str
    healthy: int
    success_ratio: float | None  # None before any attempt in the window: no sample
    queue_depth: int


class SubscriptionHealthCollector(Collector):
    """``openconnector_subscription_healthy``, ``openconnector_subscription_success_ratio`` and
    ``openconnector_delivery_queue_depth`` per subscription, computed at scrape time from ``source`` (set
    by the gateway: every routed subscription)."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[SubscriptionHealth]] | None = None

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["namespace", "subscription"]
        return (
            GaugeMetricFamily(
                "openconnector_subscription_healthy",
                "1 when the subscription's Healthy condition is True, 0 when False, -1 when Unknown",
                labels=labels,
            ),
            GaugeMetricFamily(
                "openconnector_subscription_success_ratio",
                "Success ratio of recent delivery attempts",
                labels=labels,
            ),
            GaugeMetricFamily("openconnector_delivery_queue_depth", "Deliveries waiting", labels=labels),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        healthy, ratio, depth = self._families()
        for item in self.source() if self.source is not None else ():
            labels = [item.namespace, item.name]
            healthy.add_metric(labels, item.healthy)
            if item.success_ratio is not None:
                ratio.add_metric(labels, item.success_ratio)
            depth.add_metric(labels, item.queue_depth)
        return (healthy, ratio, depth)


_OUTCOME_LABELS = {"delivered": "delivered", "deadLettered": "dead_lettered", "dropped": "dropped"}


class SubscriptionSeries:
    """One subscription's delivery series: children bound on first use, then reused per attempt."""

    __slots__ = ("_attempts", "_latency", "_metrics", "_name", "_namespace", "_outcomes", "_retries")

    def __init__(self, metrics: GatewayMetrics, namespace: str, name: str) -> None:
        self._metrics = metrics
        self._namespace = namespace
        self._name = name
        self._attempts: dict[int | None, Inc] = {}  # status (None: no response) -> attempts counter
        self._outcomes: dict[str, Inc] = {}
        self._latency: Any = None
        self._retries: Inc | None = None

    def attempt(self, status: int | None, latency_ms: float | None, number: int) -> None:
        inc = self._attempts.get(status)
        if inc is None:
            code = "error" if status is None else f"{status // 100}xx"
            inc = self._attempts[status] = self._metrics.inc_of(
                self._metrics.delivery_attempts, self._namespace, self._name, code
            )
        inc(1)
        if latency_ms is not None:
            if self._latency is None:
                m = self._metrics
                self._latency = m.child(m.delivery_latency, self._namespace, self._name)
            self._latency.observe(latency_ms / 1000)
        if number > 1:
            if self._retries is None:
                m = self._metrics
                self._retries = m.inc_of(m.delivery_retries, self._namespace, self._name)
            self._retries(1)

    def outcome(self, outcome: str) -> None:
        inc = self._outcomes.get(outcome)
        if inc is None:
            label = _OUTCOME_LABELS.get(outcome, outcome)
            inc = self._outcomes[outcome] = self._metrics.inc_of(
                self._metrics.deliveries, self._namespace, self._name, label
            )
        inc(1)


class DeliveryMetricsObserver:
    """Feeds delivery attempts and outcomes into Prometheus (a
    :class:`~openconnector.delivery.outcomes.DeliveryObserver`, called inline by the bus: cheap work
    only, the series are bound once per subscription)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def on_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None:
        series = self._metrics.subscription(target_key)
        series.attempt(attempt.status_code, attempt.latency_ms, attempt.attempt)

    def on_outcome(
        self, target_key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None:
        self._metrics.subscription(target_key).outcome(outcome._value_)  # not .value: a property call


async def _serve_metrics(request: web.Request) -> web.Response:
    metrics: GatewayMetrics = request.app[METRICS_KEY]
    return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


METRICS_KEY = web.AppKey("metrics", GatewayMetrics)


def build_metrics_app(metrics: GatewayMetrics) -> web.Application:
    """``/metrics`` alone, for ``--metrics-port`` (scraped without exposing the gateway's routes)."""
    app = web.Application()
    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", _serve_metrics)
    return app
