"""Request bodies the load generators send, with a send stamp the sink turns into end-to-end latency.

Shapes (``fmt``):

* ``json``: a webhook payload ``{"t": <ns>, "seq": n, "status": "open", "amount": n, "pad": "xx.."}``;
* ``structured``: a CloudEvent in the JSON event format whose ``data`` is that payload;
* ``binary``: the same CloudEvent in binary mode (``ce-`` headers, the payload as the body).

``t`` is CLOCK_MONOTONIC in nanoseconds (``time.monotonic_ns()``; wrk reads the same clock through
LuaJIT's FFI), which every process on the machine shares. Bodies are padded to about ``size`` bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench.manifests import INGEST_TYPE, SOURCE

FORMATS = ("json", "structured", "binary")
STRUCTURED = "application/cloudevents+json"
EVENT_TIME = "2026-11-28T12:00:00.000Z"
# Wide enough for any CLOCK_MONOTONIC ns value and sequence number, so the padding is computed once.
_STAMP_WIDTH = 20


@dataclass(frozen=True)
class BodyTemplate:
    """A body as ``prefix + t + middle + seq + suffix`` plus fixed headers; cheap to fill per request."""

    fmt: str
    content_type: str
    prefix: str
    middle: str
    suffix: str
    headers: dict[str, str]

    def render(self, t: int, seq: int) -> bytes:
        return f"{self.prefix}{t}{self.middle}{seq}{self.suffix}".encode()


def _payload_parts(size: int, overhead: int) -> tuple[str, str, str]:
    head = '{"t":'
    middle = ',"seq":'
    tail_fixed = ',"status":"open","amount":7,"pad":"'
    used = overhead + len(head) + len(middle) + len(tail_fixed) + 2 + 2 * _STAMP_WIDTH
    pad = "x" * max(0, size - used)
    return head, middle, f'{tail_fixed}{pad}"}}'


def template(fmt: str, size: int, event_type: str = INGEST_TYPE) -> BodyTemplate:
    """The body template of one format, padded to about ``size`` bytes."""
    if fmt == "json":
        head, middle, tail = _payload_parts(size, 0)
        return BodyTemplate(fmt, "application/json", head, middle, tail, {})
    if fmt == "structured":
        # id, subject and sequence would vary per event in real traffic; the gateway does not dedupe, so a
        # fixed id costs the same to parse and keeps the template simple for wrk.
        attributes = {
            "specversion": "1.0",
            "id": "bench-0001",
            "source": SOURCE,
            "type": event_type,
            "time": EVENT_TIME,
            "subject": "zaak-17",
            "datacontenttype": "application/json",
        }
        envelope = json.dumps(attributes, separators=(",", ":"))[:-1] + ',"data":'
        head, middle, tail = _payload_parts(size, len(envelope) + 1)
        return BodyTemplate(fmt, STRUCTURED, envelope + head, middle, tail + "}", {})
    if fmt == "binary":
        head, middle, tail = _payload_parts(size, 0)
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "bench-0001",
            "ce-source": SOURCE,
            "ce-type": event_type,
            "ce-time": EVENT_TIME,
            "ce-subject": "zaak-17",
        }
        return BodyTemplate(fmt, "application/json", head, middle, tail, headers)
    raise ValueError(f"fmt: must be one of {', '.join(FORMATS)}, got {fmt!r}")


def sample_body(fmt: str, size: int) -> tuple[dict[str, str], bytes]:
    """One rendered request (headers with Content-Type, body), for in-process micro-benchmarks."""
    tpl = template(fmt, size)
    return {"Content-Type": tpl.content_type, **tpl.headers}, tpl.render(1_234_567_890_123, 1)
