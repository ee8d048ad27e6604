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

import httpx

from deploy.services import AUTHZ_SERVICE, SERVICES, StackOptions
from gateway.render import DEFAULT_DESCRIPTOR, DEFAULT_OPENAPI, render_envoy_config
from hygoshop_platform.infra import ManagedProcess, ProcessGroup, free_port
from hygoshop_platform.migrations import app_url, upgrade

log = logging.getLogger(__name__)
ENVOY = Path(sys.executable).parent / "envoy"


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
    group = ProcessGroup()
    stack = Stack(gateway_url="", grpc_targets={}, group=group)
    try:
        for service in SERVICES:
            for index in range(options.processes.get(service.name, 1)):
                port = free_port()
                env = {"GRPC_HOST": "127.0.0.1", "GRPC_PORT": str(port), **service.env(options)}
                if service.schema is not None:
                    env["DATABASE_URL"] = app_url(admin_url, service.schema, app_password)
                if options.otlp_endpoint:
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = options.otlp_endpoint
                proc = ManagedProcess(
                    f"{service.name}-{index}",
                    [sys.executable, "-m", service.module],
                    env=env,
                    log_path=run_dir / "logs" / f"{service.name}-{index}.log",
                )
                target = f"127.0.0.1:{port}"
                group.start(proc, ready=partial(_wait_grpc_ready, target=target))
                stack.grpc_targets.setdefault(service.name, []).append(target)
                stack.processes.setdefault(service.name, []).append(proc)
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


def _endpoint(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)
