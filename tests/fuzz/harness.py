"""The fuzz tier's gateway process, its loopback sink, a /healthz prober and the request counters.

The gateway runs as its own process (``openconnector serve``), so its RSS and its event loop are its own:
the prober measures how long /healthz takes while the fuzzer hammers it, and nothing in the test process
competes for the gateway's GIL.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import yaml

API = "openconnector.nl/v1alpha1"
NAMESPACE = "default"
LAX_TYPE = "nl.example.fuzz.lax"
STRICT_TYPE = "nl.example.fuzz.strict"
BEARER_TOKEN = "fuzz-bearer-token-0123456789"
BASIC_CREDENTIAL = "alice:correct-horse-battery"
API_KEY = "fuzz-api-key-0123456789"
WHSEC = "whsec_" + base64.b64encode(b"fuzz-secret-of-thirty-two-bytes!").decode()
GITHUB_SECRET = "fuzz-github-secret-0123456789"
JWT_SECRET = "fuzz-jwt-secret-" + "x" * 48
MAX_JSON_DEPTH = 64
HEALTHZ_BOUND_SECONDS = 0.1

# Consumer name -> (endpoint, auth spec or None). The JWT issuer is the Consumer's name.
CONSUMERS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "none": ("fuzz/none", None),
    "bearer": ("fuzz/bearer", {"type": "bearer", "secretRefs": [{"name": "fuzz", "key": "bearer"}]}),
    "basic": ("fuzz/basic", {"type": "basic", "secretRefs": [{"name": "fuzz", "key": "basic"}]}),
    "apikey": (
        "fuzz/apikey",
        {"type": "apiKey", "secretRefs": [{"name": "fuzz", "key": "apikey"}], "header": "X-Api-Key"},
    ),
    "hmac": ("fuzz/hmac", {"type": "hmac", "secretRefs": [{"name": "fuzz", "key": "hmac"}]}),
    "github": ("fuzz/github", {"type": "github", "secretRefs": [{"name": "fuzz", "key": "github"}]}),
    "jwt": (
        "fuzz/jwt",
        {"type": "jwt", "secretRefs": [{"name": "fuzz", "key": "jwt"}], "algorithms": ["HS256"]},
    ),
}

SUMMARY: list[str] = []


def _resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def write_manifests(directory: Path, sink_url: str) -> None:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "fuzz"},
            "stringData": {
                "bearer": BEARER_TOKEN,
                "basic": BASIC_CREDENTIAL,
                "apikey": API_KEY,
                "hmac": WHSEC,
                "github": GITHUB_SECRET,
                "jwt": JWT_SECRET,
            },
        },
        _resource(
            "Event", "lax", {"name": "Lax", "type": LAX_TYPE, "source": "/fuzz", "profile": "cloudevents"}
        ),
        _resource(
            "Event",
            "strict",
            {
                "name": "Strict",
                "type": STRICT_TYPE,
                "source": "urn:nld:oin:00000001823288444000:systeem:fuzz",
                "schema": {"inline": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            },
        ),
        _resource("EventSubscription", "all-structured", {"eventType": "*", "endpoint": sink_url + "/s"}),
        _resource(
            "EventSubscription",
            "all-binary",
            {"eventType": "*", "endpoint": sink_url + "/b", "contentMode": "binary"},
        ),
        _resource("Source", "sink", {"location": sink_url + "/api"}),
        _resource(
            "Mapping", "fuzz-map", {"passThrough": True, "mapping": {"seen": "{{ value | default('') }}"}}
        ),
    ]
    for name, (endpoint, auth) in CONSUMERS.items():
        spec: dict[str, Any] = {"endpoint": endpoint, "targetType": "source", "targetId": "sink"}
        spec["event"] = "lax"
        if auth is not None:
            spec["auth"] = auth
        if name == "none":
            spec["mappingId"] = "fuzz-map"
        docs.append(_resource("Consumer", name, spec))
    (directory / "fuzz.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: ClassVar[Counter[str]] = Counter()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        _SinkHandler.received[self.path] += 1
        body = b'{"id": "stored"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Prober:
    """The /healthz prober process (tests/fuzz/prober.py) and what it measured."""

    process: subprocess.Popen[bytes]
    out: Path
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    peak_rss: int = 0

    @classmethod
    def start(cls, port: int, pid: int, out: Path) -> Prober:
        root = Path(__file__).resolve().parents[2]
        command = [sys.executable, "-m", "tests.fuzz.prober", str(port), str(pid), str(out)]
        return cls(subprocess.Popen(command, cwd=root), out)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.latencies, self.failures = [], []
        for line in self.out.read_text().splitlines():
            if line.startswith("rss "):
                self.peak_rss = max(self.peak_rss, int(line[4:]))
            elif line.startswith("fail "):
                self.failures.append(line[5:])
            elif line:
                self.latencies.append(float(line))


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]


@dataclass
class FuzzGateway:
    process: subprocess.Popen[bytes]
    port: int
    sink: ThreadingHTTPServer
    prober: Prober
    baseline_rss: int
    log_path: Path
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    accepted_events: int = 0
    _connection: http.client.HTTPConnection | None = None

    def send(self, label: str, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """One request on a kept-alive connection (re-opened when the gateway closed it)."""
        self.requests[label] += 1
        for attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self._connection.close()
                self._connection = None
                if attempt:
                    raise
                continue
            if response.will_close:
                self._connection.close()
                self._connection = None
            self.statuses[response.status] += 1
            return Answer(
                response.status,
                (response.getheader("Content-Type") or "").split(";")[0].strip(),
                payload,
                {k.lower(): v for k, v in response.getheaders()},
            )
        raise AssertionError("unreachable")

    def send_raw(self, label: str, data: bytes) -> bytes:
        """Bytes on a fresh connection (for what http.client refuses to send); the whole answer."""
        self.requests[label] += 1
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            raw.sendall(data)
            raw.shutdown(socket.SHUT_WR)
            chunks = []
            with contextlib.suppress(ConnectionResetError):
                while chunk := raw.recv(65536):
                    chunks.append(chunk)
        return b"".join(chunks)

    def metrics(self) -> str:
        return self.send("metrics", "GET", "/metrics", {}, b"").body.decode()

    def stop(self) -> None:
        self.prober.stop()
        if self._connection is not None:
            self._connection.close()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.sink.shutdown()
        self.sink.server_close()


def start_fuzz_gateway(directory: Path) -> FuzzGateway:
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
    sink.daemon_threads = True
    threading.Thread(target=sink.serve_forever, name="fuzz-sink", daemon=True).start()
    manifests = directory / "manifests"
    manifests.mkdir()
    write_manifests(manifests, f"http://127.0.0.1:{sink.server_address[1]}")
    port = _free_port()
    log_path = directory / "gateway.log"
    command = [
        sys.executable,
        "-m",
        "openconnector.cli",
        "--log-level",
        "WARNING",
        "serve",
        "--manifests",
        str(manifests),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-json-depth",
        str(MAX_JSON_DEPTH),
        "--drain-seconds",
        "2",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start: {log_path.read_text()}") from None
            time.sleep(0.1)
    baseline = rss_bytes(process.pid)
    prober = Prober.start(port, process.pid, directory / "healthz.txt")
    gateway = FuzzGateway(process, port, sink, prober, baseline, log_path)
    ready = gateway.send("warm-up", "GET", "/readyz", {}, b"")
    assert ready.status == 200, ready.body
    return gateway


def assert_well_formed(answer: Answer) -> None:
    """No 5xx; every refusal an RFC 9457 problem whose status matches."""
    assert answer.status < 500, (answer.status, answer.body[:500])
    if answer.status >= 400:
        assert answer.content_type == "application/problem+json", (answer.status, answer.body[:500])
        problem = orjson.loads(answer.body)
        assert problem["status"] == answer.status
        assert isinstance(problem["detail"], str)
        assert b"Traceback" not in answer.body
