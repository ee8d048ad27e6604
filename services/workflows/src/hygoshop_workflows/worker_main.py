"""`python -m hygoshop_workflows worker`: one worker process (start as many as you like)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import uvloop

from hygoshop_platform.db import open_pool
from hygoshop_platform.settings import SettingsError
from hygoshop_platform.telemetry import configure_logging, configure_tracing
from hygoshop_workflows.config import WorkflowsSettings
from hygoshop_workflows.runtime.registry import load_registry
from hygoshop_workflows.runtime.worker import Worker

log = logging.getLogger(__name__)


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
    uvloop.run(_main(settings, registry))


async def _main(settings: WorkflowsSettings, registry: object) -> None:
    from hygoshop_workflows.definitions.dependencies import bind_dependencies
    from hygoshop_workflows.runtime.registry import Registry

    assert isinstance(registry, Registry)
    base = settings.base
    url = base.require_database_url()
    # Step results are group-committed through one connection at a time; the rest is
    # claims, heartbeats and the pauses of runs: DB_POOL_SIZE (default 10) is plenty.
    pool = await open_pool(url, size=base.db_pool_size, application_name="workflows-worker")
    dependencies = await bind_dependencies(settings)
    worker = Worker(
        pool,
        registry,
        settings.worker,
        listen_url=url,
        shutdown_grace=base.shutdown_grace_seconds,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    log.info(
        "worker %s runs %s", worker.name, ", ".join(registry.type_versions()) or "no workflows"
    )
    try:
        await stop.wait()
    finally:
        await worker.stop()
        await dependencies.close()
        await pool.close()
