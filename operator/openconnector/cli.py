"""The ``openconnector`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from openconnector import __version__
from openconnector.gateway.limits import add_limit_flags
from openconnector.logformat import configure_logging


def _cmd_crds(args: argparse.Namespace) -> int:
    from openconnector.api.crdgen import reference_markdown, render_all, write_all

    if args.output_dir is not None:
        for path in write_all(Path(args.output_dir)):
            print(f"wrote {path}")
        if args.reference is not None:
            Path(args.reference).write_text(reference_markdown(), encoding="utf-8")
            print(f"wrote {args.reference}")
        return 0
    if args.check is not None:
        stale = [
            name
            for name, text in render_all().items()
            if not (Path(args.check) / name).is_file() or (Path(args.check) / name).read_text() != text
        ]
        for name in stale:
            print(f"{args.check}/{name} is stale: run `make crds`", file=sys.stderr)
        return 1 if stale else 0
    print("---\n".join(render_all().values()), end="")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from openconnector.validate import validate_paths

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        for path in missing:
            print(f"{path}: no such file or directory", file=sys.stderr)
        return 2
    findings, checked = validate_paths(Path(p) for p in args.paths)
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} problem(s) in {checked} resource(s)", file=sys.stderr)
        return 1
    print(f"ok: {checked} resource(s) valid", file=sys.stderr)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from openconnector.standalone import serve

    return serve(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from openconnector.kube.runner import run

    return run(args)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless there is none to show (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default == [] or default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


RUN_DESCRIPTION = (
    "Run the operator and the gateway against a cluster. Credentials: inside a pod, the ServiceAccount; "
    "elsewhere $KUBECONFIG (or ~/.kube/config) and its current context, read as kubectl reads it, so exec "
    "plugins (EKS, GKE, AKS) and OIDC work. The CRDs must be installed (kubectl apply -f crds/)."
)


def duration(text: str) -> float:
    """A duration flag: Go-style (``2m``, ``168h``), ISO-8601 (``PT2M``) or whole days (``7d``)."""
    from openconnector.delivery.durations import parse_duration

    try:
        if text.endswith("d") and text[:-1].isdigit():
            return int(text[:-1]) * 86400.0
        return parse_duration(text, field="duration")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return int(text)


def replicas(text: str) -> int:
    """``--jetstream-replicas``: 1 to 5 (JetStream's limit)."""
    if not text.isdigit() or not 1 <= int(text) <= 5:
        raise argparse.ArgumentTypeError(f"must be 1 to 5, got {text!r}")
    return int(text)


def stream_name(text: str) -> str:
    """``--jetstream-stream``: letters, digits, ``-`` and ``_`` (it also names the KV buckets)."""
    if not 0 < len(text) <= 32 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise argparse.ArgumentTypeError(f"letters, digits, '-' and '_' (at most 32), got {text!r}")
    return text


EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_name(text: str) -> str:
    """``--event-loop`` (also checks a value from env OPENCONNECTOR_EVENT_LOOP, which argparse's
    ``choices`` would not)."""
    if text not in EVENT_LOOPS:
        raise argparse.ArgumentTypeError(f"one of {', '.join(EVENT_LOOPS)}, got {text!r}")
    return text


def add_replica_flags(run: argparse.ArgumentParser) -> None:
    """Identity of this replica for the status shards and their Leases (``kube/lease.py``)."""
    from openconnector.kube.client import pod_name, pod_namespace  # cluster mode only: kopf is heavy

    run.add_argument(
        "--pod-name", default=pod_name(), help="this replica's status shard ($POD_NAME, else the host name)"
    )
    run.add_argument(
        "--pod-namespace", default=pod_namespace(),
        help="namespace of the status Leases ($POD_NAMESPACE, else the ServiceAccount's, else default)",
    )  # fmt: skip
    run.add_argument(
        "--lease-duration", type=float, default=15.0,
        help="seconds without a heartbeat after which a replica's status shard is folded into retired",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openconnector",
        description="OpenConnector Events and Webhooks: a Kubernetes operator and CloudEvents gateway.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="least severe level logged",
    )
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"],
        help="json: one object per line (time, level, logger, message, object) for log pipelines",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="print (or write, or check) the CustomResourceDefinitions")
    group = crds.add_mutually_exclusive_group()
    group.add_argument("--output-dir", metavar="DIR", help="write one file per CRD into DIR")
    group.add_argument("--check", metavar="DIR", help="exit 1 if the CRDs in DIR are stale")
    crds.add_argument(
        "--reference", metavar="FILE", help="with --output-dir: also write the markdown reference"
    )
    crds.set_defaults(func=_cmd_crds)

    validate = sub.add_parser("validate", help="validate manifests offline (for GitOps pipelines)")
    validate.add_argument("paths", nargs="+", metavar="FILE|DIR")
    validate.set_defaults(func=_cmd_validate)

    def bus_flags(p: argparse.ArgumentParser) -> None:
        env = os.environ.get
        bus = p.add_argument_group("delivery bus")
        bus.add_argument(
            "--bus", choices=["memory", "jetstream"], default=env("OPENCONNECTOR_BUS", "memory"),
            help="memory: in-process queues (default); jetstream: durable on NATS JetStream "
            "(env OPENCONNECTOR_BUS)",
        )  # fmt: skip
        bus.add_argument(
            "--nats-url", metavar="URL[,URL...]",
            default=env("OPENCONNECTOR_NATS_URL", "nats://127.0.0.1:4222"),
            help="NATS servers for --bus jetstream (env OPENCONNECTOR_NATS_URL)",
        )  # fmt: skip
        bus.add_argument("--nats-creds", metavar="FILE", help="NATS user credentials file (JWT + NKey seed)")
        bus.add_argument(
            "--nats-token-file",
            metavar="FILE",
            help="file with the NATS token (or env OPENCONNECTOR_NATS_TOKEN)",
        )
        bus.add_argument("--nats-tls-ca", metavar="FILE", help="CA bundle to verify the NATS servers")
        bus.add_argument("--nats-tls-cert", metavar="FILE", help="client certificate for NATS (mutual TLS)")
        bus.add_argument("--nats-tls-key", metavar="FILE", help="key of --nats-tls-cert")
        bus.add_argument(
            "--jetstream-stream",
            type=stream_name,
            default="OPENCONNECTOR",
            metavar="NAME",
            help="stream name",
        )
        bus.add_argument(
            "--jetstream-replicas", type=replicas, default=1, metavar="N", help="stream replicas (1-5)"
        )
        bus.add_argument(
            "--jetstream-storage", choices=["file", "memory"], default="file", help="stream storage"
        )
        bus.add_argument(
            "--jetstream-max-bytes", type=int, default=-1, metavar="BYTES",
            help="stream size limit; when full, requests are refused with 503 (-1: unlimited)",
        )  # fmt: skip
        bus.add_argument(
            "--jetstream-max-age", type=duration, default=duration("7d"), metavar="DURATION",
            help="how long stored deliveries are kept (e.g. 7d, 168h)",
        )  # fmt: skip
        bus.add_argument(
            "--jetstream-duplicate-window", type=duration, default=duration("2m"), metavar="DURATION",
            help="a sender's retry of the same request within this window is stored once",
        )  # fmt: skip
        bus.add_argument(
            "--jetstream-pace-backlog", type=int, default=256, metavar="N",
            help="while a delivering subscription has N stored deliveries waiting, requests for it wait "
            "for room (up to --jetstream-pace-wait, then they are stored anyway; 0: no pacing)",
        )  # fmt: skip
        bus.add_argument(
            "--jetstream-pace-wait", type=duration, default=duration("1s"), metavar="DURATION",
            help="longest a request waits for room under --jetstream-pace-backlog",
        )  # fmt: skip

    def gateway_flags(p: argparse.ArgumentParser, default_port: int) -> None:
        p.add_argument("--host", default="127.0.0.1", help="address the gateway listens on")
        p.add_argument("--port", type=int, default=default_port, help="gateway port (webhooks, /events, API)")
        p.add_argument("--metrics-port", type=int, default=0, help="separate Prometheus port (0: on --port)")
        p.add_argument("--events-token-file", help="file with the bearer token /events requires (optional)")
        p.add_argument("--allow-unknown-types", action="store_true", help="accept events of undefined types")
        p.add_argument(
            "--trusted-proxy", action="append", default=[], metavar="CIDR",
            help="peers whose X-Forwarded-For is believed for allowedIPs (repeatable)",
        )  # fmt: skip
        p.add_argument("--drain-seconds", type=float, default=20.0, help="graceful shutdown deadline")
        p.add_argument(
            "--event-loop", type=event_loop_name, choices=EVENT_LOOPS,
            default=os.environ.get("OPENCONNECTOR_EVENT_LOOP", "uvloop"),
            help="the gateway's event loop: uvloop (libuv, faster) or asyncio's own "
            "(env OPENCONNECTOR_EVENT_LOOP)",
        )  # fmt: skip
        log_flags = p.add_argument_group("message log and its API (/api/v1alpha1)")
        log_flags.add_argument(
            "--api-token-file", metavar="FILE",
            help="standalone: file with the bearer token the message API requires (or env "
            "OPENCONNECTOR_API_TOKEN); without one it answers only loopback clients. In a cluster the "
            "Kubernetes API decides (TokenReview + SubjectAccessReview)",
        )  # fmt: skip
        log_flags.add_argument(
            "--message-max", type=positive_int, default=10_000, metavar="N",
            help="messages kept per subscription (the oldest go first)",
        )  # fmt: skip
        log_flags.add_argument(
            "--message-max-age", type=duration, default=duration("7d"), metavar="DURATION",
            help="how long a message is kept (e.g. 7d, 24h)",
        )  # fmt: skip
        add_limit_flags(p)
        bus_flags(p)

    serve = sub.add_parser("serve", help="run the gateway standalone on a directory of manifests")
    serve.add_argument("--manifests", required=True, metavar="DIR", help="YAML files to serve (watched)")
    gateway_flags(serve, 8080)
    serve.set_defaults(func=_cmd_serve)

    run = sub.add_parser(
        "run", help="run the operator and the gateway against a cluster ($KUBECONFIG or in-cluster)",
        description=RUN_DESCRIPTION,
    )  # fmt: skip
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("--namespace", action="append", default=[], help="namespace to watch (repeatable)")
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace (default)")
    run.add_argument("--status-interval", type=float, default=5.0, help="seconds between status patches")
    run.add_argument("--health-port", type=int, default=8081, help="kopf liveness endpoint port")
    add_replica_flags(run)
    run.add_argument(
        "--no-kopf-scanning", action="store_true",
        help="disable Kopf's CRD and namespace discovery (no cluster-scoped read rights needed)",
    )  # fmt: skip
    gateway_flags(run, 8080)
    run.set_defaults(func=_cmd_run)

    from openconnector.console import add_commands as add_console_commands
    from openconnector.devtools import add_commands

    add_console_commands(sub, _HelpFormatter)
    add_commands(sub)
    for command in sub.choices.values():
        command.formatter_class = _HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
