"""The whole platform as local processes: migrate, start every service, then Envoy in front.

Used by `make run` (deploy/launcher.py), the end-to-end tests and the benchmarks, so all
three exercise the same wiring.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from deploy.services import AUTHZ_SERVICE, SERVICES, StackOptions
from gateway.render import DEFAULT_DESCRIPTOR, DEFAULT_OPENAPI, render_envoy_config
from hygoshop_platform.bus.schema import BUS_SCHEMA
from hygoshop_platform.infra import ManagedProcess, ProcessGroup, free_port
from hygoshop_platform.migrations import app_url, upgrade

log = logging.getLogger(__name__)
ENVOY = Path(sys.executable).parent / "envoy"
OTLP_GRPC_PORT = 4317


@dataclass
class Stack:
    """Started processes and where to reach them. `stop()` stops everything, in reverse."""

    gateway_url: str
    grpc_targets: dict[str, list[str]]
    group: ProcessGroup
    processes: dict[str, list[ManagedProcess]] = field(default_factory=dict)

    def stop(self, grace: float = 10.0) -> None:
        self.group.stop_all(grace)


def migrate(admin_url: str, app_password: str | None = None) -> None:
    for service in SERVICES:
        if service.schema is not None:
            upgrade(admin_url, service.schema, app_password=app_password)


def bus_env(
    admin_url: str, options: StackOptions, app_password: str | None = None
) -> dict[str, str]:
    """BUS_* for every service: the configured bus, else the PostgreSQL transport on the
    stack's database (its `bus` schema migrated here, used through its own role)."""
    url = options.bus_url
    if not url:
        upgrade(admin_url, BUS_SCHEMA, app_password=app_password)
        url = app_url(admin_url, BUS_SCHEMA, app_password)
    env = {"BUS_URL": url, "BUS_NAMESPACE": options.bus_namespace}
    if options.bus_expires_seconds:
        env["BUS_EXPIRES_SECONDS"] = str(options.bus_expires_seconds)
    return env


def _wait_http_ok(url: str, proc: ManagedProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running:
            raise proc.failure("exited before it answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise proc.failure(f"{url} did not answer 200 within {timeout:.0f}s")


def start_stack(
    admin_url: str,
    run_dir: Path,
    options: StackOptions,
    *,
    gateway_port: int = 0,
    gateway_host: str = "127.0.0.1",
    app_password: str | None = None,
) -> Stack:
    """Migrate, then start services and Envoy; on any failure stop what was started."""
    run_dir.mkdir(parents=True, exist_ok=True)
    migrate(admin_url, app_password)
    bus = bus_env(admin_url, options, app_password)
    group = ProcessGroup()
    stack = Stack(gateway_url="", grpc_targets={}, group=group)
    try:
        for service in SERVICES:
            env = {**service.env(options), **bus}
            for callee in service.calls:
                env[f"{callee.upper()}_GRPC_TARGET"] = stack.grpc_targets[callee][0]
            if service.schema is not None:
                env["DATABASE_URL"] = app_url(admin_url, service.schema, app_password)
            if options.otlp_endpoint:
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = options.otlp_endpoint
            for index in range(options.processes.get(service.name, 1)):
                port = free_port()
                proc = ManagedProcess(
                    f"{service.name}-{index}",
                    [sys.executable, "-m", service.module],
                    env={"GRPC_HOST": "127.0.0.1", "GRPC_PORT": str(port), **env},
                    log_path=run_dir / "logs" / f"{service.name}-{index}.log",
                )
                target = f"127.0.0.1:{port}"
                group.start(proc, ready=partial(_wait_grpc_ready, target=target))
                stack.grpc_targets.setdefault(service.name, []).append(target)
                stack.processes.setdefault(service.name, []).append(proc)
            for worker in service.workers:
                name = f"{service.name}-{worker.name}"
                for index in range(options.processes.get(name, worker.count)):
                    proc = ManagedProcess(
                        f"{name}-{index}",
                        [sys.executable, "-m", service.module, *worker.args],
                        env=env,
                        log_path=run_dir / "logs" / f"{name}-{index}.log",
                    )
                    # No port, no health check: a worker that fails to start exits, and
                    # the launcher (wait_any) and the tests see that.
                    group.start(proc)
                    stack.processes.setdefault(name, []).append(proc)
        gateway_port = gateway_port or free_port()
        config = render_envoy_config(
            listen_host=gateway_host,
            listen_port=gateway_port,
            admin_port=free_port(),
            descriptor_path=DEFAULT_DESCRIPTOR,
            openapi_path=DEFAULT_OPENAPI,
            upstreams={
                s.name: [_endpoint(t) for t in stack.grpc_targets[s.name]]
                for s in SERVICES
                if s.public
            },
            authz=_endpoint(stack.grpc_targets[AUTHZ_SERVICE][0]),
            otlp=otlp_target(options.otlp_endpoint) if options.otlp_endpoint else None,
        )
        config_path = run_dir / "envoy.yaml"
        config_path.write_text(config)
        envoy = ManagedProcess(
            "envoy",
            [
                str(ENVOY),
                "-c",
                str(config_path),
                "--log-level",
                "warn",
                "--disable-hot-restart",
                "--concurrency",
                "2",
            ],
            log_path=run_dir / "logs" / "envoy.log",
        )
        host = "127.0.0.1" if gateway_host in ("0.0.0.0", "::") else gateway_host  # noqa: S104
        stack.gateway_url = f"http://{host}:{gateway_port}"
        group.start(envoy, ready=lambda p: _wait_http_ok(f"{stack.gateway_url}/healthz", p))
        stack.processes["envoy"] = [envoy]
    except BaseException:
        group.stop_all(grace=2)
        raise
    return stack


def _wait_grpc_ready(proc: ManagedProcess, target: str) -> None:
    proc.wait_for_grpc_health(target, timeout=60)


def otlp_target(endpoint: str) -> tuple[str, int]:
    """(host, port) of an OTLP/gRPC endpoint as OTEL_EXPORTER_OTLP_ENDPOINT spells it
    (`http://collector:4317`, `https://...`, or a bare `collector:4317`)."""
    parsed = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not parsed.hostname:
        raise ValueError(f"OTLP endpoint {endpoint!r} has no host")
    return parsed.hostname, parsed.port or OTLP_GRPC_PORT


def _endpoint(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)
