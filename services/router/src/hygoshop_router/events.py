"""The router's domain events, as outbox envelopes (`router.<entity>.<event>`)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from hygoshop.events.v1 import router_pb2 as events_pb2
from hygoshop.events.v1.envelope_pb2 import Envelope
from hygoshop_platform.bus import new_event

if TYPE_CHECKING:
    from hygoshop_router.tenant_store import Alert

ALERT_RAISED = "router.alert.raised"


def alert_raised(tenant_id: uuid.UUID, alert: Alert) -> Envelope:
    # Imported here: convert reads the store's records, and the store writes these events.
    from hygoshop_router.convert import alert_to_proto

    payload = events_pb2.RoutingAlertRaised(alert=alert_to_proto(alert))
    return new_event(ALERT_RAISED, payload, tenant_id=tenant_id)
