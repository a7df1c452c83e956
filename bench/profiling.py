"""profile: where the gateway's event loop spends its time on the ingest→deliver path.

The gateway runs in this process (``start_standalone``) under pyinstrument (statistical, 1 ms, every
frame on the main thread, so time waiting in the selector shows as idle); the load generator and the
sink are separate processes, as in the ingest benchmark. Then the bare proxy baseline runs in this
process under the same profiler and load, so the time per delivered event can be split by owner
(the gateway's code, aiohttp, asyncio, Prometheus, idle) for both. Kept: the top frames by self time and
by inclusive time (shares of the profile), the split by owner, and pyinstrument's call tree.
"""

from __future__ import annotations

import datetime
import logging
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument import __version__ as pyinstrument_version

from bench.context import Context, envelope
from bench.harness import HOST, SinkClient, free_port, start_sink, stop_all
from bench.ingest import measure
from bench.loadgen import LoadSpec
from bench.manifests import INGEST_ENDPOINT, ingest_manifests, write_dir
from bench.servers import baseline_app, start_app
from openconnector.gateway.core import GatewaySettings
from openconnector.standalone import start_standalone

NAME = "profile"
TOP = 80
REPO = str(Path(__file__).resolve().parents[1])


def _label(identifier: str) -> str:
    function, _, rest = identifier.partition("\x00")
    path, _, line = rest.partition("\x00")
    for marker in ("/site-packages/", "/operator/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    path = path.removeprefix(REPO + "/")
    return f"{function} ({path}:{line})"


# Who is responsible for a sample: its innermost frame that is not a C built-in, by where its code lives.
OWNERS = (
    ("openconnector/", "openconnector (the gateway's own code)"),
    ("prometheus_client/", "prometheus_client"),
    ("aiohttp/", "aiohttp (HTTP server and client)"),
    ("multidict/", "aiohttp (HTTP server and client)"),
    ("yarl/", "aiohttp (HTTP server and client)"),
    ("stdlib/asyncio/", "asyncio event loop"),
    ("stdlib/selectors", "asyncio event loop"),
)
IDLE = "idle (waiting in epoll)"
OTHER = "other (stdlib at top level, the bench harness)"


def owner(labels: list[str]) -> tuple[str, str | None]:
    """(owner, the owning frame): the innermost frame in one of OWNERS' places, skipping C built-ins and
    other stdlib code, which count for whoever called them (``uuid4`` for the gateway, ``socket.send``
    for aiohttp or asyncio)."""
    if labels and labels[-1].startswith(("epoll.poll", "select ")):
        return IDLE, None
    for label in reversed(labels):
        where = label.rsplit("(", 1)[-1]
        for prefix, name in OWNERS:
            if where.startswith(prefix):
                return name, label
    return OTHER, None


def top_frames(records: list[tuple[list[str], float]], top: int = TOP) -> dict[str, Any]:
    """Self and inclusive time per function, and time per owner, from pyinstrument's frame records."""
    self_time: defaultdict[str, float] = defaultdict(float)
    inclusive: defaultdict[str, float] = defaultdict(float)
    owners: defaultdict[str, float] = defaultdict(float)
    gateway: defaultdict[str, float] = defaultdict(float)
    total = 0.0
    for stack, seconds in records:
        if not stack:
            continue
        total += seconds
        labels = [_label(frame.split("\x01", 1)[0]) for frame in stack]
        self_time[labels[-1]] += seconds
        name, frame = owner(labels)
        owners[name] += seconds
        if frame is not None and name == OWNERS[0][1]:
            gateway[frame] += seconds
        for label in set(labels):
            inclusive[label] += seconds

    def ranked(times: dict[str, float]) -> list[dict[str, Any]]:
        best = sorted(times.items(), key=lambda item: item[1], reverse=True)[:top]
        return [{"frame": k, "share": v / total if total else 0.0, "seconds": v} for k, v in best]

    return {
        "sampled_s": total,
        "self": ranked(self_time),
        "inclusive": ranked(inclusive),
        "owners": dict(sorted(owners.items(), key=lambda item: item[1], reverse=True)),
        # the gateway's own time by its innermost function (what it calls in stdlib included)
        "gateway_functions": ranked(gateway)[:15],
    }


SCENARIOS = {
    # ingest→deliver, the path the goals are about
    "webhook": (f"/webhooks/{INGEST_ENDPOINT}", "json"),
    # CloudEvents ingress (structured) and the same delivery
    "events": ("/events", "structured"),
}


async def _profile(ctx: Context, sink: SinkClient, url: str, fmt: str) -> dict[str, Any]:
    cfg = ctx.config
    if cfg.warmup_s > 0:
        await measure(ctx, sink, LoadSpec(url, fmt, 1024, cfg.connections, cfg.warmup_s))
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        load = await measure(ctx, sink, LoadSpec(url, fmt, 1024, cfg.connections, cfg.profile_s))
    finally:
        session = profiler.stop()
    tree = profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False)
    return {"load": load, "frames": top_frames(list(session.frame_records)), "tree": tree.splitlines()[:120]}


def per_delivery(scenario: dict[str, Any]) -> dict[str, float]:
    """Event-loop time per delivered event, µs, by owner."""
    delivered = scenario["load"]["delivered_total"] or 1
    return {name: seconds * 1e6 / delivered for name, seconds in scenario["frames"]["owners"].items()}


def _say(ctx: Context, name: str, found: dict[str, Any]) -> None:
    owners = "; ".join(f"{k} {v:.0f} µs" for k, v in per_delivery(found).items())
    ctx.say(
        f"profile {name} (pyinstrument, in process, {found['load']['delivered_per_s']:,.0f} deliveries/s "
        f"while profiled): event-loop time per delivery by owner: {owners}"
    )


async def run(ctx: Context) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    sink_proc = await start_sink(ctx.log_dir)
    sink = SinkClient(sink_proc)
    logging.getLogger("openconnector").setLevel(logging.WARNING)
    scenarios: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch:
            manifests = write_dir(
                Path(scratch), ingest_manifests(sink_proc.url, max_concurrency=ctx.config.connections)
            )
            settings = GatewaySettings(port=0, drain_seconds=2)
            gateway = await start_standalone([manifests], settings, watch=False)
            try:
                for name, (path, fmt) in SCENARIOS.items():
                    scenarios[name] = await _profile(ctx, sink, gateway.url + path, fmt)
                    _say(ctx, name, scenarios[name])
            finally:
                await gateway.stop()
        # The baseline under the same profiler and load, for a like-for-like split of the time.
        port = free_port()
        proxy = await start_app(baseline_app("proxy", f"{sink_proc.url}/deliver/baseline"), port)
        try:
            scenarios["proxy"] = await _profile(ctx, sink, f"http://{HOST}:{port}/ingest", "json")
            _say(ctx, "proxy (baseline)", scenarios["proxy"])
        finally:
            await proxy.cleanup()
    finally:
        stop_all([sink_proc])
    comparison = {
        "gateway_webhook": per_delivery(scenarios["webhook"]),
        "proxy": per_delivery(scenarios["proxy"]),
    }
    return envelope(
        NAME,
        ctx,
        started,
        profiler=f"pyinstrument=={pyinstrument_version}",
        scenarios=scenarios,
        us_per_delivery_by_owner=comparison,
    )
