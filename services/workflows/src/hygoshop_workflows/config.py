"""Settings of the workflows service and its workers, read from the environment once."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hygoshop_platform.bus import BusSettings
from hygoshop_platform.migrations import SchemaSpec
from hygoshop_platform.settings import (
    ServiceSettings,
    SettingsError,
    env_float,
    env_int,
    env_optional,
    env_str,
)

SCHEMA = SchemaSpec("workflows", Path(__file__).parent / "migrations")

DEFAULT_DEFINITIONS = "hygoshop_workflows.definitions"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker claims and holds runs."""

    lease_seconds: float = 30.0
    """How long a claimed run is this worker's without a heartbeat (WORKFLOW_LEASE_SECONDS).
    A worker that dies loses its runs to another after at most this long."""
    heartbeat_seconds: float = 10.0
    """How often held leases are extended (WORKFLOW_HEARTBEAT_SECONDS); well under the lease."""
    concurrency: int = 16
    """Runs executed at once by one worker process (WORKFLOW_CONCURRENCY)."""
    poll_seconds: float = 1.0
    """How often an idle worker looks for runnable runs (timers, expired leases) when no
    wake-up notification arrives (WORKFLOW_POLL_SECONDS)."""
    escalation_seconds: float = 5.0
    """How often operator tasks past their SLA are looked for (WORKFLOW_ESCALATION_SECONDS)."""
    max_lease_losses: int = 5
    """A run whose worker was lost this many times in a row, mid-step, fails: a step that
    kills its worker must not loop forever (WORKFLOW_MAX_LEASE_LOSSES)."""
    running_mark_seconds: float = 0.25
    """A step attempt still running after this long is recorded as RUNNING with its attempt
    number, so callers see it and an attempt lost with its worker is counted
    (WORKFLOW_RUNNING_MARK_SECONDS; see runtime/in_flight.py)."""
    worker_id: str = ""
    """Names this worker in leases and logs (WORKER_ID; default host:pid)."""

    def __post_init__(self) -> None:
        if self.lease_seconds <= 0 or self.heartbeat_seconds <= 0:
            raise SettingsError("WORKFLOW_LEASE_SECONDS and _HEARTBEAT_SECONDS must be > 0")
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise SettingsError(
                "WORKFLOW_HEARTBEAT_SECONDS must be at most half of WORKFLOW_LEASE_SECONDS"
            )
        if self.running_mark_seconds < 0:
            raise SettingsError("WORKFLOW_RUNNING_MARK_SECONDS must be >= 0")
        if self.concurrency < 1:
            raise SettingsError("WORKFLOW_CONCURRENCY must be at least 1")

    @property
    def name(self) -> str:
        return self.worker_id or f"{socket.gethostname()}:{os.getpid()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerOptions:
        d = cls()
        return cls(
            lease_seconds=env_float("WORKFLOW_LEASE_SECONDS", d.lease_seconds, env),
            heartbeat_seconds=env_float("WORKFLOW_HEARTBEAT_SECONDS", d.heartbeat_seconds, env),
            concurrency=env_int("WORKFLOW_CONCURRENCY", d.concurrency, env),
            poll_seconds=env_float("WORKFLOW_POLL_SECONDS", d.poll_seconds, env),
            escalation_seconds=env_float("WORKFLOW_ESCALATION_SECONDS", d.escalation_seconds, env),
            max_lease_losses=env_int("WORKFLOW_MAX_LEASE_LOSSES", d.max_lease_losses, env),
            running_mark_seconds=env_float(
                "WORKFLOW_RUNNING_MARK_SECONDS", d.running_mark_seconds, env
            ),
            worker_id=env_str("WORKER_ID", "", env) if env.get("WORKER_ID") else "",
        )


@dataclass(frozen=True, slots=True)
class WorkflowsSettings:
    base: ServiceSettings
    definitions: str = DEFAULT_DEFINITIONS
    """Module whose `registry` holds the workflow types this process knows
    (WORKFLOW_DEFINITIONS). The service and its workers must load the same one."""
    bus: BusSettings | None = None
    """The message bus (BUS_URL): publishes the outbox (run and task events) and feeds
    workflow triggers. Without it events wait in the outbox and no trigger fires."""
    catalog_grpc_target: str | None = None
    """catalog's gRPC address (CATALOG_GRPC_TARGET), for definitions that change listings."""
    worker: WorkerOptions = WorkerOptions()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkflowsSettings:
        base = ServiceSettings.from_env("workflows", env)
        e = base.extra
        bus = BusSettings.from_env(e) if env_optional("BUS_URL", e) else None
        return cls(
            base=base,
            definitions=env_str("WORKFLOW_DEFINITIONS", DEFAULT_DEFINITIONS, e),
            bus=bus,
            catalog_grpc_target=env_optional("CATALOG_GRPC_TARGET", e),
            worker=WorkerOptions.from_env(e),
        )
