"""Applying a Mapping to untrusted input off the event loop, within a budget.

A Mapping is written by a tenant and its input by an unauthenticated sender, so one application may be
expensive. It runs in a small dedicated thread pool, never on the gateway's event loop, under one
:class:`~openconnector.mapping.templates.RenderBudget` (cost units and CPU seconds) that the sandbox
checks at every operation it intercepts: a runaway stops itself cooperatively and the loop keeps serving
(/healthz included) meanwhile. A thread was chosen over a process pool because the budget already bounds
every render and each single operation is size-bounded, so nothing needs killing from outside; a thread
hand-off costs tens of microseconds where a process round-trip would pickle the payload both ways.

The output is checked against the gateway's nesting limit and must encode as JSON, so a Mapping (dot
paths, `jsonToArray`, `json_decode`, an `integer` cast of a 30-digit string) cannot build a document the
gateway could not forward or emit.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import orjson

from openconnector.ce.depth import json_depth_exceeds
from openconnector.mapping.engine import CompiledMapping, MappingError
from openconnector.mapping.templates import render_budget

__all__ = ["RENDER_THREADS", "apply_mapping", "apply_mapping_sync"]

# Two threads: with the GIL more would not render faster, and two keep one slow Mapping from queueing all.
RENDER_THREADS: Final = 2
_EXECUTOR: Final = ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="mapping-render")


def apply_mapping_sync(mapping: CompiledMapping, payload: object, max_depth: int) -> object:
    """``mapping.apply`` under a fresh budget and the nesting limit; raises MappingError."""
    with render_budget():
        try:
            result = mapping.apply(payload)
        except RecursionError:
            raise MappingError("mapping", "the data is nested too deeply", mapping=mapping.name) from None
    if json_depth_exceeds(result, max_depth):
        raise MappingError(
            "mapping", f"the mapped object nests deeper than {max_depth} levels", mapping=mapping.name
        )
    try:  # what is forwarded and emitted must encode: e.g. a cast can yield an integer beyond 64 bits
        orjson.dumps(result)
    except orjson.JSONEncodeError as error:
        message = f"the mapped object cannot be encoded as JSON ({error})"
        raise MappingError("mapping", message, mapping=mapping.name) from None
    return result


async def apply_mapping(mapping: CompiledMapping, payload: object, max_depth: int) -> object:
    """Apply in the render threads; the awaiting request holds the loop for none of it."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, apply_mapping_sync, mapping, payload, max_depth)
