"""Apply many EventSubscriptions to a real apiserver, from a process of its own, and say when each went.

``python -m bench.kubeapply --server URL --cafile CA --namespace NS --count N --sink URL`` (the bearer
token in $BENCH_KUBE_TOKEN) sends one server-side apply (what ``kubectl apply --server-side`` sends) per
subscription, ``--concurrency`` at a time, and prints one JSON object: per name the CLOCK_MONOTONIC ns
when its request left and when the apiserver acknowledged it, and the resourceVersion it was written
at (the order every watch reports the writes in). Every request is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench.harness import RESULT_PREFIX
from bench.manifests import API_VERSION, subscription, type_name

FIELD_MANAGER = "openconnector-bench"


PROBE_TYPE = "nl.bench.probe.created"


def manifest(index: int, namespace: str, sink: str, prefix: str = "sub") -> dict[str, Any]:
    """Subscription ``index`` routes its own event type (type_name(index)) to the sink; other prefixes
    (the harness's probe) route a type no load ever sends."""
    event_type = type_name(index) if prefix == "sub" else PROBE_TYPE
    return subscription(f"{prefix}-{index:05d}", event_type, f"{sink}/deliver/{index}", namespace=namespace)


async def apply_all(args: argparse.Namespace, token: str) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=args.cafile)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/apply-patch+yaml"}
    sent: dict[str, int] = {}
    acked: dict[str, int] = {}
    # The order of the apiserver's writes (= the order its watch streams report them); etcd's revision.
    versions: dict[str, int] = {}
    failures: dict[str, str] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(args.count):
        queue.put_nowait(index)
    base = f"{args.server}/apis/{API_VERSION}/namespaces/{args.namespace}/eventsubscriptions"
    params = {"fieldManager": FIELD_MANAGER, "force": "true"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            body = manifest(index, args.namespace, args.sink, args.prefix)
            name = body["metadata"]["name"]
            sent[name] = time.monotonic_ns()
            try:
                async with session.patch(f"{base}/{name}", params=params, data=json.dumps(body)) as reply:
                    text = await reply.text()
                    if reply.status >= 300:
                        failures[name] = f"HTTP {reply.status}: {text[:200]}"
                        continue
                    versions[name] = int(json.loads(text)["metadata"]["resourceVersion"])
            except (aiohttp.ClientError, TimeoutError) as error:
                failures[name] = f"{type(error).__name__}: {error}"
                continue
            acked[name] = time.monotonic_ns()

    connector = aiohttp.TCPConnector(ssl=context, limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    started = time.monotonic_ns()
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    return {"started_ns": started, "finished_ns": time.monotonic_ns(), "sent_ns": sent, "acked_ns": acked,
            "resource_versions": versions, "failures": failures}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kubeapply")
    parser.add_argument("--server", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--prefix", default="sub", help="names are PREFIX-00000, ...")
    args = parser.parse_args(argv)
    if not args.server.startswith(("https://127.", "https://localhost")):
        parser.error("the benchmark only ever talks to a loopback apiserver")
    token = os.environ.get("BENCH_KUBE_TOKEN", "")
    if not token:
        parser.error("$BENCH_KUBE_TOKEN is not set")
    result = asyncio.run(apply_all(args, token))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
