"""`python -m hygoshop_workflows worker`: one worker process (start as many as you like).

A worker serves nothing but gRPC health (and reflection) on GRPC_PORT, for a liveness
probe: SERVING while its claim loop keeps turning, NOT_SERVING once it has stalled (a
hung worker holds no leases for long, but it takes no work either: restart it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

import uvloop
from grpc_health.v1 import health_pb2

from hygoshop_platform.db import open_pool
from hygoshop_platform.server import ServiceServer, create_server, serve
from hygoshop_platform.settings import SettingsError
from hygoshop_platform.telemetry import configure_logging, configure_tracing
from hygoshop_workflows.config import WorkflowsSettings
from hygoshop_workflows.definitions.dependencies import bind_dependencies
from hygoshop_workflows.runtime.registry import Registry, load_registry
from hygoshop_workflows.runtime.worker import Worker

log = logging.getLogger(__name__)

WATCH_SECONDS = 1.0


def run_worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m hygoshop_workflows worker")
    parser.add_argument(
        "--definitions",
        help="module whose `registry` holds the workflow types (default: WORKFLOW_DEFINITIONS)",
    )
    args = parser.parse_args(argv)
    try:
        settings = WorkflowsSettings.from_env()
    except SettingsError as exc:
        parser.exit(2, f"configuration error: {exc}\n")
    base = settings.base
    configure_logging(base.log_level)
    configure_tracing(f"{base.service_name}-worker", base.otlp_endpoint)
    registry = load_registry(args.definitions or settings.definitions)

    async def main() -> None:
        server = await build_worker(settings, registry)
        await serve(server, base.shutdown_grace_seconds)

    uvloop.run(main())


async def build_worker(settings: WorkflowsSettings, registry: Registry) -> ServiceServer:
    """The worker behind a health-only server: starting the server starts nothing more;
    the worker runs from here until the server stops (on_stop runs in reverse)."""
    base = settings.base
    url = base.require_database_url()
    server = create_server(base, [])
    # Step results are group-committed through one connection at a time; the rest is
    # claims, heartbeats and the pauses of runs: DB_POOL_SIZE (default 10) is plenty.
    pool = await open_pool(url, size=base.db_pool_size, application_name="workflows-worker")
    server.on_stop.append(pool.close)
    dependencies = await bind_dependencies(settings)
    server.on_stop.append(dependencies.close)
    worker = Worker(
        pool, registry, settings.worker, listen_url=url, shutdown_grace=base.shutdown_grace_seconds
    )
    await worker.start()
    server.on_stop.append(worker.stop)
    watchdog = asyncio.create_task(_watch(worker, server))

    async def stop_watching() -> None:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog

    server.on_stop.append(stop_watching)
    log.info(
        "worker %s runs %s", worker.name, ", ".join(registry.type_versions()) or "no workflows"
    )
    return server


async def _watch(worker: Worker, server: ServiceServer) -> None:
    serving = True
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        alive = worker.alive()
        if alive != serving:
            serving = alive
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if alive
                else (health_pb2.HealthCheckResponse.NOT_SERVING)
            )
            await server.health.set("", status)
            log.log(
                logging.INFO if alive else logging.ERROR,
                "worker %s claim loop %s",
                worker.name,
                "resumed" if alive else "stalled",
            )
