"""``openconnector status|messages|resend|replay``: the operator's view from a terminal (and kubectl).

Two ways to reach the data:

* ``--gateway URL`` (or env ``OPENCONNECTOR_GATEWAY``): a gateway's HTTP API directly, with the API token
  (``--token-file`` or env ``OPENCONNECTOR_API_TOKEN``) as the bearer token;
* otherwise the cluster of the current kubeconfig: ``status`` reads the custom resources from the
  apiserver; the message commands go to the gateway Service through the apiserver's service proxy
  (``--service NAMESPACE/NAME:PORT``), which needs ``get services/proxy`` and a bearer token in the
  kubeconfig (the apiserver drops ``Authorization`` when proxying, so the CLI passes the token on in
  ``X-OpenConnector-Token``; the gateway checks it with a TokenReview as any other token).

Formatting is pure (:func:`status_table`, :func:`messages_table`), so it is tested without a network.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from openconnector.api.kinds import EVENT_SUBSCRIPTION

__all__ = ["ApiError", "Transport", "messages_table", "run_command", "status_table"]

TOKEN_HEADER = "X-OpenConnector-Token"
DEFAULT_SERVICE = "openconnector-system/openconnector-openconnector-operator:http"
_TIMEOUT = 30.0


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class Transport(Protocol):
    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Mapping[str, str], bytes]: ...


@dataclass
class GatewayTransport:
    """HTTP straight to a gateway."""

    base: str
    token: str | None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Mapping[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.base.rstrip("/") + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


class ClusterTransport:
    """The gateway Service through the apiserver's service proxy, with the kubeconfig's credentials."""

    def __init__(self, service: str) -> None:
        import kubernetes

        namespace, _, rest = service.partition("/")
        if not namespace or not rest:
            raise SystemExit(f"--service: NAMESPACE/NAME[:PORT], got {service!r}")
        kube: Any = kubernetes  # the client's stubs do not know call_api's keyword arguments
        kube.config.load_kube_config()
        self._client: Any = kube.client.ApiClient()
        self._proxy = f"/api/v1/namespaces/{namespace}/services/{rest}/proxy"

    def _token(self) -> str | None:
        configuration = self._client.configuration
        value = str((configuration.api_key or {}).get("authorization") or "")
        if configuration.refresh_api_key_hook is not None and not value:
            configuration.refresh_api_key_hook(configuration)
            value = str((configuration.api_key or {}).get("authorization") or "")
        return value.removeprefix("Bearer ").strip() or None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Mapping[str, str], bytes]:
        import kubernetes

        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        token = self._token()
        if token:
            headers[TOKEN_HEADER] = token
        try:
            response = self._client.call_api(
                self._proxy + path, method, header_params=headers, body=body,
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
            )  # fmt: skip
            return int(response.status), dict(response.headers), bytes(response.data)
        except kubernetes.client.ApiException as error:
            return int(error.status or 0), dict(error.headers or {}), (error.body or "").encode()

    def custom_objects(self, plural: str) -> list[dict[str, Any]]:
        import kubernetes

        from openconnector.api.common import GROUP, VERSION

        api: Any = kubernetes.client.CustomObjectsApi(self._client)
        answer = api.list_cluster_custom_object(GROUP, VERSION, plural)
        return list(answer.get("items") or [])


def _call(transport: Transport, method: str, path: str, body: Any = None) -> tuple[Any, Mapping[str, str]]:
    status, headers, raw = transport.request(method, path, body)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    if status >= 400:
        detail = parsed.get("detail") if isinstance(parsed, dict) else raw[:200].decode(errors="replace")
        raise ApiError(status, str(detail or "request failed"))
    return parsed, headers


# ------------------------------------------------------------------------------------ tables


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [list(header), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    )


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def status_table(resources: Iterable[Mapping[str, Any]]) -> str:
    """``resources``: ``{"kind", "namespace", "name", "status"}`` each (the gateway's status view)."""
    rows = []
    for resource in resources:
        status = resource.get("status") or {}
        ready = _condition(status, "Ready")
        healthy = _condition(status, "Healthy")
        if resource.get("kind") != EVENT_SUBSCRIPTION.kind:
            healthy_text = "-"
        else:
            healthy_text = str(healthy.get("status", "Unknown"))
        if ready.get("status") != "True":
            reason = ready.get("reason") or ""
        elif healthy.get("status") == "False":
            reason = healthy.get("reason") or ""
        else:
            reason = ""
        counters = " ".join(
            f"{field}={status[field]}"
            for field in ("delivered", "failed", "deadLettered", "dropped", "received", "emitted", "rejected")
            if isinstance(status.get(field), int)
        )
        rows.append([
            str(resource.get("kind", "")), str(resource.get("namespace", "")), str(resource.get("name", "")),
            str(ready.get("status", "Unknown")), healthy_text, counters or "-", str(reason),
        ])  # fmt: skip
    return _table(["KIND", "NAMESPACE", "NAME", "READY", "HEALTHY", "COUNTERS", "REASON"], rows)


def messages_table(items: Iterable[Mapping[str, Any]]) -> str:
    rows = [
        [
            str(item.get("id", "")), str(item.get("status", "")), str(item.get("eventId", "")),
            str(item.get("type", "")), str(item.get("received") or item.get("time") or ""),
            str(item.get("attemptCount", 0)),
        ]
        for item in items
    ]  # fmt: skip
    return _table(["ID", "STATUS", "EVENT", "TYPE", "RECEIVED", "ATTEMPTS"], rows)


# ---------------------------------------------------------------------------------- commands


def _subscription(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise SystemExit(f"give the subscription as NAMESPACE/NAME, got {text!r}")
    return namespace, name


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _token(args: Any) -> str | None:
    if getattr(args, "token_file", None):
        return Path(args.token_file).read_text(encoding="utf-8").strip() or None
    return os.environ.get("OPENCONNECTOR_API_TOKEN") or None


def _transport(args: Any) -> Transport:
    if args.gateway:
        return GatewayTransport(args.gateway, _token(args))
    return ClusterTransport(args.service)


def _cluster_status(transport: ClusterTransport) -> list[dict[str, Any]]:
    from openconnector.api.kinds import ALL_KINDS

    resources = []
    for kind in ALL_KINDS:
        for item in transport.custom_objects(kind.plural):
            meta = item.get("metadata") or {}
            resources.append({"kind": kind.kind, "namespace": meta.get("namespace", ""),
                              "name": meta.get("name", ""), "status": item.get("status") or {}})  # fmt: skip
    return sorted(resources, key=lambda r: (r["kind"], r["namespace"], r["name"]))


def run_command(args: Any, transport: Transport | None = None, out: Any = None) -> int:
    """Run ``status``, ``messages``, ``resend`` or ``replay``; prints to ``out`` (stdout)."""
    out = out or sys.stdout
    transport = transport or _transport(args)
    output = getattr(args, "output", "table")
    try:
        if args.command == "status":
            if isinstance(transport, ClusterTransport):
                resources = _cluster_status(transport)
            else:
                body, _ = _call(transport, "GET", "/api/v1alpha1/status")
                resources = list(body.get("resources") or [])
            print(json.dumps(resources, indent=2) if output == "json" else status_table(resources), file=out)
            return 0
        namespace, name = _subscription(args.subscription)
        base = f"/api/v1alpha1/subscriptions/{_quote(namespace)}/{_quote(name)}"
        if args.command == "messages":
            items: list[Any] = []
            query = {"limit": str(min(args.limit, 500))}
            if args.status:
                query["status"] = args.status
            while True:
                body, _ = _call(transport, "GET", f"{base}/messages?{urllib.parse.urlencode(query)}")
                items.extend(body["items"])
                cursor = body.get("nextCursor")
                if not cursor or len(items) >= args.limit:
                    break
                query["cursor"] = cursor
            items = items[: args.limit]
            print(json.dumps(items, indent=2) if output == "json" else messages_table(items), file=out)
            return 0
        if args.command == "resend":
            body, _ = _call(transport, "POST", f"{base}/messages/{_quote(args.id)}/resend")
            print(
                json.dumps(body, indent=2) if output == "json" else f"resent {args.id}: {body['status']}",
                file=out,
            )
            return 0
        if args.command == "replay":
            request = {"since": args.since, "statuses": args.status.split(",")}
            body, _ = _call(transport, "POST", f"{base}/replay", request)
            print(
                json.dumps(body) if output == "json" else f"replayed {body['replayed']} message(s)", file=out
            )
            return 0
    except ApiError as error:
        print(f"error: {error.status}: {error.detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as error:
        print(f"error: cannot reach the gateway: {error}", file=sys.stderr)
        return 1
    raise SystemExit(f"unknown command {args.command}")


def add_commands(sub: Any, formatter: Any) -> None:
    """The four subcommands on the ``openconnector`` parser."""

    def target(parser: Any) -> None:
        where = parser.add_argument_group("where (a gateway URL, or the cluster of the current kubeconfig)")
        where.add_argument(
            "--gateway", default=os.environ.get("OPENCONNECTOR_GATEWAY"), metavar="URL",
            help="a gateway's URL (env OPENCONNECTOR_GATEWAY); otherwise the cluster",
        )  # fmt: skip
        where.add_argument(
            "--token-file",
            metavar="FILE",
            help="with --gateway: the API token (or env OPENCONNECTOR_API_TOKEN)",
        )
        where.add_argument(
            "--service", metavar="NS/NAME:PORT",
            default=os.environ.get("OPENCONNECTOR_SERVICE", DEFAULT_SERVICE),
            help="in a cluster: the gateway Service, reached through the apiserver's service proxy",
        )  # fmt: skip
        parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
        parser.set_defaults(func=run_command)

    status = sub.add_parser("status", help="every resource with READY, HEALTHY, counters and reason",
                            formatter_class=formatter)  # fmt: skip
    target(status)
    messages = sub.add_parser("messages", help="a subscription's message log, newest first",
                              formatter_class=formatter)  # fmt: skip
    messages.add_argument("subscription", metavar="NAMESPACE/NAME")
    messages.add_argument("--status", help="e.g. failed, delivered, retrying, pending (comma-separated)")
    messages.add_argument("--limit", type=int, default=50, help="at most this many messages")
    target(messages)
    resend = sub.add_parser("resend", help="deliver one stored message again", formatter_class=formatter)
    resend.add_argument("subscription", metavar="NAMESPACE/NAME")
    resend.add_argument("id", metavar="MESSAGE_ID")
    target(resend)
    replay = sub.add_parser("replay", help="resend a subscription's failed messages since a time",
                            formatter_class=formatter)  # fmt: skip
    replay.add_argument("subscription", metavar="NAMESPACE/NAME")
    replay.add_argument("--since", required=True, help="RFC 3339 time, e.g. 2026-01-02T03:04:05Z")
    replay.add_argument(
        "--status", default="dead-lettered,dropped", help="statuses to resend (comma-separated)"
    )
    target(replay)
