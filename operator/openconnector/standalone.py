"""``openconnector serve --manifests DIR``: the gateway without a cluster.

The same reconciler and gateway as in a cluster; only the spec source differs: YAML files in a
directory, watched so that an edit takes effect without a restart. Secrets come from ``kind: Secret``
manifests in the directory.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from watchfiles import awatch

from openconnector.gateway.core import GatewaySettings
from openconnector.manifests import load_manifests
from openconnector.resources import ResourceStore
from openconnector.runtime import RunningGateway, Runtime, run_main, settings_from_args, settle_gc

log = logging.getLogger(__name__)


def load_into(store: ResourceStore, directories: Sequence[Path]) -> bool:
    """Make the store hold what the directories hold; returns whether anything changed."""
    loaded = load_manifests(directories)
    for problem in loaded.problems:
        log.warning("%s", problem)
    return store.replace_all([*loaded.resources, *loaded.secrets])


class StandaloneGateway(RunningGateway):
    """A running standalone gateway (also used by tests and benchmarks): a runtime and its directories."""

    def __init__(self, runtime: Runtime, directories: tuple[Path, ...]) -> None:
        super().__init__(runtime)
        self.directories = directories

    def reload(self) -> bool:
        """Re-read the directories; returns whether anything changed."""
        changed = load_into(self.reconciler.store, self.directories)
        if changed:
            self.reconciler.notify()
        return changed

    async def _watch(self, started: asyncio.Event) -> None:
        # Small debounce: an editor's save is several events; a second is the promise to the user.
        # yield_on_timeout gives a first (empty) yield once the watch is live: a rescan then catches
        # edits made between the first read and the watch starting. step is how often the watcher's
        # thread wakes (taking the GIL from the gateway's loop): 100 ms, not 20, is 10 wake-ups a second
        # instead of 50 (idle CPU 3 -> 1 ms/s) and still well within the second.
        async for changes in awatch(
            *self.directories, debounce=100, step=100, rust_timeout=500, yield_on_timeout=True, recursive=True
        ):
            if started.is_set() and not changes:
                continue
            started.set()
            try:
                self.reload()
            except Exception:  # a broken file must not stop the watcher
                log.exception("reloading manifests failed")


async def start_standalone(
    directories: Sequence[Path], settings: GatewaySettings, *, watch: bool = True
) -> StandaloneGateway:
    runtime = await Runtime.create(settings)
    # The first table is built before the port opens: no request ever sees an empty gateway.
    load_into(runtime.reconciler.store, directories)
    runtime.reconciler.rebuild()
    await runtime.serve()
    standalone = StandaloneGateway(runtime, tuple(directories))
    if watch:
        started = asyncio.Event()
        runtime.spawn(standalone._watch(started), "manifest-watcher")
        await asyncio.wait_for(started.wait(), timeout=10)
    return standalone


async def _serve(args: argparse.Namespace) -> int:
    directory = Path(args.manifests)
    standalone = await start_standalone([directory], settings_from_args(args))
    settle_gc()  # as in `run`
    log.info(
        "serving %s on %s (webhooks at /webhooks/<endpoint>, events at /events)", directory, standalone.url
    )
    await standalone.runtime.stop_on_signals().wait()
    await standalone.stop()
    return 0


def serve(args: argparse.Namespace) -> int:
    if not Path(args.manifests).exists():
        log.error("%s: no such file or directory", args.manifests)
        return 2
    return run_main(_serve(args), args)
