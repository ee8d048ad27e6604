"""The worker process's composition: it runs runs and answers gRPC health for its probe."""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hygoshop_platform.testing.fakevendor import FakeVendor
from hygoshop_workflows.config import SCHEMA, WorkflowsSettings
from hygoshop_workflows.domain.states import RunState
from hygoshop_workflows.worker_main import build_worker
from tests.support import PlatformDatabase
from tests.workflow_defs import registry

from .conftest import Runtime

pytestmark = pytest.mark.integration


async def test_a_worker_serves_health_while_it_runs_and_stops_cleanly(
    platform_db: PlatformDatabase, runtime: Runtime, vendor: FakeVendor
) -> None:
    settings = WorkflowsSettings.from_env(
        {
            "DATABASE_URL": platform_db.app_url(SCHEMA),
            "GRPC_PORT": "0",
            "WORKFLOW_POLL_SECONDS": "0.1",
            "WORKER_ID": "health-test",
        }
    )
    server = await build_worker(settings, registry)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="")
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        tenant = uuid.uuid4()
        run, _ = await runtime.runs.start(
            tenant, "test.vendor_steps", "health-1", {"vendor_url": vendor.url, "steps": 2}
        )
        done = await runtime.wait_for(tenant, run.run_id)
        assert done.state == RunState.SUCCEEDED
    finally:
        await server.stop(1.0)
    assert vendor.effects == 2
