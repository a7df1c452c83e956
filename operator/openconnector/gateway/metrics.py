"""Prometheus metrics of the gateway. One registry per gateway, so tests can run several side by side.

Names are referenced by the Grafana dashboard in the Helm chart; a test checks that every query there
names a metric defined here.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

if TYPE_CHECKING:
    from openconnector.api.keys import ResourceKey
    from openconnector.delivery.attempts import Attempt
    from openconnector.delivery.outcomes import FinalOutcome

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PARSE_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01)


#: Adds to one counter series (a bound child): ``inc(amount)``.
Inc = Callable[[float], None]


class CounterSeries:
    """One series of a :class:`PlainCounter`: a number, and when the series began (``_created``)."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def add(self, amount: float) -> None:
        """``inc`` without its check: for the hot path, whose amounts are never negative."""
        self.value += amount

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class HistogramSeries:
    """One series of a :class:`PlainHistogram`: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("_bounds", "buckets", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.buckets = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.sum += amount
        if amount <= INF:  # NaN is in no bucket, as with prometheus_client
            self.buckets[bisect.bisect_left(self._bounds, amount)] += 1


S = TypeVar("S", CounterSeries, HistogramSeries)


class _PlainMetric(Collector, Generic[S]):
    """A labelled metric kept as plain numbers (no lock: the gateway counts on its event loop) and turned
    into the samples prometheus_client's Counter or Histogram exports when scraped: same name, help,
    labels, values, ``_created``, series in the order they began. ``labels(...)`` and ``remove(...)``
    work as that library's do; :meth:`GatewayMetrics.inc_of` and :meth:`GatewayMetrics.child` cache the
    series for the hot path."""

    _type = ""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], S] = {}
        registry.register(self)

    def _new_series(self) -> S:
        raise NotImplementedError

    def labels(self, *values: object) -> S:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected {len(self.labelnames)} label values, got {len(values)}")
        key = tuple(str(value) for value in values)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = self._new_series()
        return found

    def remove(self, *values: object) -> None:
        self._series.pop(tuple(str(value) for value in values), None)

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, self._type)]


class PlainCounter(_PlainMetric[CounterSeries]):
    _type = "counter"

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, "counter")
        created = prometheus_metrics._use_created  # disable_created_metrics() applies here too
        total, began = self.name + "_total", self.name + "_created"
        for values, series in list(self._series.items()):
            labels = dict(zip(self.labelnames, values, strict=True))
            metric.add_sample(total, labels, series.value)
            if created:
                metric.add_sample(began, labels, series.created)
        return [metric]


class PlainHistogram(_PlainMetric[HistogramSeries]):
    _type = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self._bounds = (*buckets, INF) if buckets[-1] != INF else tuple(buckets)
        self._le = tuple(floatToGoString(bound) for bound in self._bounds)  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self._bounds)

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, "histogram")
        created = prometheus_metrics._use_created
        name = self.name
        for values, series in list(self._series.items()):
            labels = dict(zip(self.labelnames, values, strict=True))
            total = 0.0
            for le, count in zip(self._le, series.buckets, strict=True):
                total += count
                metric.add_sample(name + "_bucket", {**labels, "le": le}, total)
            metric.add_sample(name + "_count", labels, total)
            metric.add_sample(name + "_sum", labels, series.sum)
            if created:
                metric.add_sample(name + "_created", labels, series.created)
        return [metric]


def counter_inc(child: Counter | CounterSeries) -> Inc:
    """``child.inc`` without the per-call checks (a bound series is always observable, and the gateway
    never adds a negative amount). For a prometheus_client child: its value's ``inc``, bound once, one
    call instead of four; falls back to ``child.inc`` should the library's internals ever differ."""
    if type(child) is CounterSeries:
        return child.add
    inc = getattr(getattr(child, "_value", None), "inc", None)
    return inc if callable(inc) else child.inc


T_co = TypeVar("T_co", covariant=True)


class _Labelled(Protocol[T_co]):
    """A labelled metric: prometheus_client's, or a :class:`PlainCounter` / :class:`PlainHistogram`."""

    def labels(self, *values: str) -> T_co: ...


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # labels() converts and hashes on every call; the hot path reuses the series.
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}
        self._incs: dict[tuple[object, tuple[str, ...]], Inc] = {}  # counter_inc of those children
        # Per subscription ("namespace/name"), its delivery series, bound on its first attempt.
        self._subscriptions: dict[ResourceKey, SubscriptionSeries] = {}
        r = self.registry
        # Counted per request or per event: PlainCounter / PlainHistogram. Counted on refusals and
        # failures only: prometheus_client's own classes.
        self.events_received = PlainCounter(
            "openconnector_events_received", "CloudEvents accepted on /events", ["mode"], r
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
        self.ingress_bytes = PlainCounter(
            "openconnector_ingress_bytes", "Request body bytes received", ["endpoint"], r
        )
        self.parse_seconds = PlainHistogram(
            "openconnector_cloudevent_parse_seconds",
            "Time to parse and validate one /events request",
            ["mode"],
            r,
            buckets=PARSE_BUCKETS,
        )
        self.events_emitted = PlainCounter(
            "openconnector_events_emitted", "Events fanned out, by type", ["type"], r
        )
        self.webhooks_received = PlainCounter(
            "openconnector_webhooks_received",
            "Webhook requests per consumer",
            ["namespace", "consumer"],
            r,
        )
        self.webhooks_rejected = Counter(
            "openconnector_webhooks_rejected",
            "Webhook requests refused, by reason",
            ["namespace", "consumer", "reason"],
            registry=r,
        )
        self.webhooks_forwarded = PlainCounter(
            "openconnector_webhooks_forwarded",
            "Webhook payloads delivered to their target",
            ["namespace", "consumer"],
            r,
        )
        # The per-delivery series: plain numbers per subscription, turned into samples when scraped.
        self.delivery_series = DeliverySeriesCollector()
        r.register(self.delivery_series)
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

    def child(self, metric: _Labelled[T_co], *labels: str) -> T_co:
        """``metric.labels(*labels)``, cached."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def inc_of(self, metric: PlainCounter | Counter, *labels: str) -> Inc:
        """:func:`counter_inc` of ``metric.labels(*labels)``, cached (the hot path's counters)."""
        key = (metric, labels)
        found = self._incs.get(key)
        if found is None:
            if isinstance(metric, PlainCounter):  # (two branches: one type of series each, for mypy)
                found = counter_inc(self.child(metric, *labels))
            else:
                found = counter_inc(self.child(metric, *labels))
            self._incs[key] = found
        return found

    def subscription(self, target_key: ResourceKey) -> SubscriptionSeries:
        """The delivery series of subscription ``target_key``, made on its first attempt."""
        found = self._subscriptions.get(target_key)
        if found is None:
            found = self._subscriptions[target_key] = SubscriptionSeries(
                self.delivery_series, target_key.namespace, target_key.name
            )
        return found

    def forget_subscription(self, key: ResourceKey) -> None:
        """Drop every series of a deleted subscription, so its last health value does not alert forever."""
        series = self._subscriptions.pop(key, None)
        if series is not None:
            self.delivery_series.forget(series)
        namespace, name = key.namespace, key.name
        # (The health gauges need nothing: they list the routed subscriptions when scraped.)
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
#: Status code -> the ``code`` label of ``openconnector_delivery_attempts`` (None: no response).
_CODES: dict[int | None, str] = {
    None: "error",
    **{status: f"{status // 100}xx" for status in range(100, 600)},
}
_LATENCY_BOUNDS = (*LATENCY_BUCKETS, INF)  # observe() counts a value in the first bucket it is <= to
_LATENCY_LE = tuple(floatToGoString(bound) for bound in _LATENCY_BOUNDS)  # type: ignore[no-untyped-call]


def _code(status: int | None) -> str:
    found = _CODES.get(status)
    return found if found is not None else f"{status // 100}xx"  # type: ignore[operator]


class SubscriptionSeries:
    """One subscription's delivery series as plain numbers (no lock, no label look-up per attempt);
    :class:`DeliverySeriesCollector` turns them into samples when scraped. A series exists from its
    first count on, with that moment as its ``_created``, as prometheus_client's children do."""

    __slots__ = (
        "_collector",
        "attempts",
        "attempts_created",
        "latency_buckets",
        "latency_created",
        "latency_sum",
        "name",
        "namespace",
        "outcomes",
        "outcomes_created",
        "retries",
        "retries_created",
    )

    def __init__(self, collector: DeliverySeriesCollector, namespace: str, name: str) -> None:
        self._collector = collector
        self.namespace = namespace
        self.name = name
        self.attempts: dict[str, int] = {}  # code label -> attempts
        self.attempts_created: dict[str, float] = {}
        self.outcomes: dict[str, int] = {}  # outcome label -> events finished
        self.outcomes_created: dict[str, float] = {}
        self.retries = 0
        self.retries_created: float | None = None
        self.latency_buckets = [0] * len(_LATENCY_BOUNDS)  # per bucket, not cumulative
        self.latency_sum = 0.0
        self.latency_created: float | None = None

    def attempt(self, status: int | None, latency_ms: float | None, number: int) -> None:
        code = _CODES.get(status) or _code(status)
        attempts = self.attempts
        if code in attempts:
            attempts[code] += 1
        else:
            attempts[code] = 1
            self.attempts_created[code] = time.time()
            self._collector.attempt_series.append((self, code))
        if latency_ms is not None:
            seconds = latency_ms / 1000
            if self.latency_created is None:
                self.latency_created = time.time()
                self._collector.latency_series.append(self)
            self.latency_sum += seconds
            self.latency_buckets[bisect.bisect_left(_LATENCY_BOUNDS, seconds)] += 1
        if number > 1:
            if self.retries_created is None:
                self.retries_created = time.time()
                self._collector.retry_series.append(self)
            self.retries += 1

    def outcome(self, outcome: str) -> None:
        label = _OUTCOME_LABELS.get(outcome, outcome)
        outcomes = self.outcomes
        if label in outcomes:
            outcomes[label] += 1
        else:
            outcomes[label] = 1
            self.outcomes_created[label] = time.time()
            self._collector.outcome_series.append((self, label))


class DeliverySeriesCollector(Collector):
    """``openconnector_deliveries``, ``openconnector_delivery_attempts``, ``openconnector_delivery_retries``
    and ``openconnector_delivery_latency_seconds`` from the :class:`SubscriptionSeries`: the samples (names,
    help, labels, buckets, ``_created``) prometheus_client's Counter and Histogram would export, series in
    the order they were created."""

    def __init__(self) -> None:
        self.outcome_series: list[tuple[SubscriptionSeries, str]] = []
        self.attempt_series: list[tuple[SubscriptionSeries, str]] = []
        self.retry_series: list[SubscriptionSeries] = []
        self.latency_series: list[SubscriptionSeries] = []

    def forget(self, series: SubscriptionSeries) -> None:
        self.outcome_series = [entry for entry in self.outcome_series if entry[0] is not series]
        self.attempt_series = [entry for entry in self.attempt_series if entry[0] is not series]
        self.retry_series = [entry for entry in self.retry_series if entry is not series]
        self.latency_series = [entry for entry in self.latency_series if entry is not series]

    @staticmethod
    def _families() -> tuple[Metric, Metric, Metric, Metric]:
        return (
            Metric(
                "openconnector_deliveries",
                "Events finished per subscription, by outcome (delivered, dead_lettered, dropped)",
                "counter",
            ),
            Metric(
                "openconnector_delivery_attempts",
                "HTTP delivery attempts, by status class (2xx, 4xx, 5xx, error)",
                "counter",
            ),
            Metric("openconnector_delivery_retries", "Retry attempts", "counter"),
            Metric("openconnector_delivery_latency_seconds", "Latency of delivery attempts", "histogram"),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        created = prometheus_metrics._use_created  # disable_created_metrics() applies here too
        deliveries, attempts, retries, latency = self._families()
        for series, label in self.outcome_series:
            labels = {"namespace": series.namespace, "subscription": series.name, "outcome": label}
            deliveries.add_sample(deliveries.name + "_total", labels, float(series.outcomes[label]))
            if created:
                deliveries.add_sample(deliveries.name + "_created", labels, series.outcomes_created[label])
        for series, code in self.attempt_series:
            labels = {"namespace": series.namespace, "subscription": series.name, "code": code}
            attempts.add_sample(attempts.name + "_total", labels, float(series.attempts[code]))
            if created:
                attempts.add_sample(attempts.name + "_created", labels, series.attempts_created[code])
        for series in self.retry_series:
            labels = {"namespace": series.namespace, "subscription": series.name}
            retries.add_sample(retries.name + "_total", labels, float(series.retries))
            if created and series.retries_created is not None:
                retries.add_sample(retries.name + "_created", labels, series.retries_created)
        name = latency.name
        for series in self.latency_series:
            labels = {"namespace": series.namespace, "subscription": series.name}
            total = 0.0
            for le, count in zip(_LATENCY_LE, series.latency_buckets, strict=True):
                total += count
                latency.add_sample(name + "_bucket", {**labels, "le": le}, total)
            latency.add_sample(name + "_count", labels, total)
            latency.add_sample(name + "_sum", labels, series.latency_sum)
            if created and series.latency_created is not None:
                latency.add_sample(name + "_created", labels, series.latency_created)
        return (deliveries, attempts, retries, latency)


class DeliveryMetricsObserver:
    """Feeds delivery attempts and outcomes into Prometheus (a
    :class:`~openconnector.delivery.outcomes.DeliveryObserver`, called inline by the bus: cheap work
    only, the series are bound once per subscription)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._series = metrics._subscriptions  # read directly: one call less per attempt and outcome

    def on_attempt(self, target_key: ResourceKey, attempt: Attempt) -> None:
        series = self._series.get(target_key) or self._metrics.subscription(target_key)
        series.attempt(attempt.status_code, attempt.latency_ms, attempt.attempt)

    def on_outcome(
        self, target_key: ResourceKey, event_id: str, outcome: FinalOutcome, reason: str | None
    ) -> None:
        series = self._series.get(target_key) or self._metrics.subscription(target_key)
        series.outcome(outcome._value_)  # not .value: a property call


async def _serve_metrics(request: web.Request) -> web.Response:
    metrics: GatewayMetrics = request.app[METRICS_KEY]
    return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


METRICS_KEY = web.AppKey("metrics", GatewayMetrics)


def build_metrics_app(metrics: GatewayMetrics) -> web.Application:
    """``/metrics`` alone, for ``--metrics-port`` (scraped without exposing the gateway's routes)."""
    # Imported here: the routes' module imports the gateway's core, which imports this one.
    from openconnector.gateway.routes import add_unrouted, problem_routes

    app = web.Application()
    app[METRICS_KEY] = metrics
    # Refusals in the gateway's problem+json form too (a 404, a 405, an Expect it cannot meet).
    problem_routes(app).add_get("/metrics", _serve_metrics)
    add_unrouted(app)
    return app
