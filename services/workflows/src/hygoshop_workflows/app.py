"""Composition root of the workflows service: build(settings) -> a ready-to-start server.

The service answers the API, relays the outbox (run and task events) and feeds the
definitions' bus triggers. Workers are separate processes (`python -m hygoshop_workflows
worker`); the service never executes a run.
"""

from __future__ import annotations

from hygoshop.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from hygoshop_platform.bus import start_service_bus
from hygoshop_platform.db import assert_safe_role, open_pool
from hygoshop_platform.server import ServiceServer, create_server
from hygoshop_workflows.api import WorkflowsApi
from hygoshop_workflows.config import SCHEMA, WorkflowsSettings
from hygoshop_workflows.runtime.registry import load_registry
from hygoshop_workflows.runtime.runs import RunStore
from hygoshop_workflows.runtime.tasks import TaskStore
from hygoshop_workflows.runtime.triggers import subscribe_triggers

WORKFLOW_SERVICE = workflows_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name


async def build(settings: WorkflowsSettings) -> ServiceServer:
    base = settings.base
    registry = load_registry(settings.definitions)
    pool = await open_pool(
        base.require_database_url(), size=base.db_pool_size, application_name="workflows"
    )
    await assert_safe_role(pool, SCHEMA.schema)
    api = WorkflowsApi(RunStore(pool, registry), TaskStore(pool, registry))
    server = create_server(
        base,
        [(workflows_pb2_grpc.add_WorkflowServiceServicer_to_server, api, WORKFLOW_SERVICE)],
    )
    # on_stop runs in reverse: triggers and relay stop first, then the bus, then the pool.
    server.on_stop.append(pool.close)
    if settings.bus is not None:
        # consumes: the triggers, through the inbox.
        bus = await start_service_bus(
            server.on_stop, pool, SCHEMA.schema, settings.bus, consumes=True
        )
        for consumer in await subscribe_triggers(bus, pool, registry):
            server.on_stop.append(consumer.stop)
    return server
