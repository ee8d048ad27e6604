"""Bus events that start or signal runs, as the definitions declare (`starts_on`,
`signals_on`). One durable subscription per workflow type; each event is handled once
(inbox) in its tenant's transaction, so a redelivered event starts nothing twice."""

from __future__ import annotations

import logging
import re

from hygoshop_platform.bus import (
    Bus,
    Consumer,
    Delivery,
    InboxHandler,
    PermanentFailure,
    with_inbox,
)
from hygoshop_platform.bus.pg import topic_regex
from hygoshop_platform.db import Connection, Pool
from hygoshop_platform.errors import DomainError, FailedPrecondition
from hygoshop_workflows.runtime.registry import Registry, WorkflowDefinition
from hygoshop_workflows.runtime.runs import RunStore

log = logging.getLogger(__name__)


def subscription_name(definition: WorkflowDefinition) -> str:
    return f"workflows.trigger_{definition.workflow_type.replace('.', '_')}"


async def subscribe_triggers(bus: Bus, pool: Pool, registry: Registry) -> list[Consumer]:
    runs = RunStore(pool, registry)
    consumers = []
    types = {d.workflow_type for d in registry.definitions()}
    for workflow_type in sorted(types):
        definition = registry.newest(workflow_type)
        assert definition is not None
        patterns = [t.event_type for t in definition.starts_on]
        patterns += [t.event_type for t in definition.signals_on]
        if not patterns:
            continue
        handler = _handler(runs, definition)
        consumers.append(
            await bus.subscribe(
                subscription_name(definition),
                patterns,
                with_inbox(pool, "workflows", handler),
            )
        )
    return consumers


def matches_pattern(pattern: str, event_type: str) -> bool:
    """Whether `event_type` matches the topic `pattern` as the bus routes it."""
    return re.match(topic_regex(pattern), "." + event_type) is not None


def _handler(runs: RunStore, definition: WorkflowDefinition) -> InboxHandler:
    async def handle(conn: Connection, delivery: Delivery) -> None:
        try:
            for trigger in definition.starts_on:
                if matches_pattern(trigger.event_type, delivery.type):
                    await runs.start_in(
                        conn,
                        delivery.tenant_id,
                        definition.workflow_type,
                        trigger.key(delivery),
                        trigger.input(delivery),
                    )
            for signal in definition.signals_on:
                if matches_pattern(signal.event_type, delivery.type):
                    run_id = await runs.run_id_for_key(
                        conn, delivery.tenant_id, definition.workflow_type, signal.key(delivery)
                    )
                    if run_id is None:
                        log.info("%s: no %s run for it", delivery.type, definition.workflow_type)
                        continue
                    try:
                        await runs.signal_in(
                            conn,
                            delivery.tenant_id,
                            run_id,
                            name=signal.signal,
                            payload=signal.payload(delivery),
                            request_id=f"event:{delivery.message_id}",
                        )
                    except FailedPrecondition as finished:
                        if finished.reason != "RUN_FINISHED":
                            raise
                        # Routine: events keep coming after the run they fed has ended.
                        log.info("%s: %s", delivery.type, finished.message)
        except DomainError as error:
            # Bad input in the event: retrying cannot help.
            raise PermanentFailure(
                f"{definition.workflow_type} trigger: {error.message}"
            ) from error

    return handle
