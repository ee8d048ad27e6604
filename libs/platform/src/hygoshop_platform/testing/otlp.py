"""A tiny in-process OTLP/gRPC trace collector for tests: Envoy and services export to it.

with OtlpCollector() as collector:
    ...  # start processes with OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint
    spans = collector.wait_for_trace(trace_id, lambda spans: len(spans) >= 3)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

# OTLP's Span.SpanKind numbers -> the names OpenTelemetry uses everywhere else.
_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class CollectedSpan:
    """One received span, flattened: ids as lowercase hex, attributes as plain values."""

    service: str
    """The exporter's `service.name` resource attribute (gateway, tenancy, catalog, ...)."""
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    """Empty for a root span."""
    attributes: dict[str, Any] = field(default_factory=dict)


def _value(any_value: common_pb2.AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def _attributes(pairs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _flatten(request: trace_service_pb2.ExportTraceServiceRequest) -> list[CollectedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            span: trace_pb2.Span
            for span in scope_spans.spans:
                spans.append(
                    CollectedSpan(
                        service=service,
                        name=span.name,
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes=_attributes(span.attributes),
                    )
                )
    return spans


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Callable[[list[CollectedSpan]], None]) -> None:
        self._sink = sink

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink(_flatten(request))
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpCollector:
    """Records every span exported to it over OTLP/gRPC on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._spans: list[CollectedSpan] = []
        self._changed = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self._record), self._server
        )
        self.host = host
        self.port = self._server.add_insecure_port(f"{host}:0")

    @property
    def endpoint(self) -> str:
        """The value for OTEL_EXPORTER_OTLP_ENDPOINT."""
        return f"http://{self.host}:{self.port}"

    def _record(self, spans: list[CollectedSpan]) -> None:
        with self._changed:
            self._spans.extend(spans)
            self._changed.notify_all()

    def spans(self) -> list[CollectedSpan]:
        with self._changed:
            return list(self._spans)

    def trace(self, trace_id: str) -> list[CollectedSpan]:
        return [s for s in self.spans() if s.trace_id == trace_id]

    def wait_for(
        self, done: Callable[[list[CollectedSpan]], bool], timeout: float = 15.0
    ) -> list[CollectedSpan]:
        """All spans received so far, once `done(spans)` holds; TimeoutError with what did
        arrive otherwise (exporters batch, so spans arrive a little after the request)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(list(self._spans)):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = "\n".join(f"  {s.service}: {s.name} {s.trace_id}" for s in self._spans)
                    raise TimeoutError(f"spans did not arrive within {timeout:.0f}s; got:\n{got}")
                self._changed.wait(left)
            return list(self._spans)

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
