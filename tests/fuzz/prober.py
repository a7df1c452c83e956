"""``python -m tests.fuzz.prober PORT PID OUT``: GET /healthz every 20 ms until terminated.

A process of its own, so that what the fuzzer does in the test process (generating examples, holding
the GIL) never delays a probe: each line of OUT is one probe's latency in seconds (or ``fail <why>``),
and ``rss <bytes>`` lines sample the gateway's resident memory.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main(port: int, pid: int, out: Path) -> None:
    running = True

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with out.open("w", buffering=1) as log:
        while running:
            time.sleep(0.02)
            started = time.perf_counter()
            try:
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                log.write(f"fail {error!r}\n")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                continue
            elapsed = time.perf_counter() - started
            log.write(f"{elapsed:.6f}\n" if response.status == 200 else f"fail HTTP {response.status}\n")
            with contextlib.suppress(OSError):
                log.write(f"rss {rss_bytes(pid)}\n")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
