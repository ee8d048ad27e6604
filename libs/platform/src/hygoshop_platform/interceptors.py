"""The chassis interceptor: caller context, a tenant-tagged span and error mapping per call.

One interceptor instead of three keeps the per-call overhead to a single wrapper; the
three jobs stay separate functions below.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import psycopg
from grpc_status import rpc_status
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from psycopg_pool import PoolTimeout

from hygoshop_platform.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    internal_status,
    unavailable_status,
)
from hygoshop_platform.telemetry import TENANT_ATTRIBUTE
from hygoshop_platform.tenancy import caller_from_metadata, reset_caller, set_caller

log = logging.getLogger(__name__)
tracer = trace.get_tracer("hygoshop.grpc")

Context = grpc.aio.ServicerContext[Any, Any]
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]

if TYPE_CHECKING:  # the stubs are generic, the runtime class is not
    _InterceptorBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _InterceptorBase = grpc.aio.ServerInterceptor

# Methods served without a caller (health, reflection) are not wrapped.
_UNWRAPPED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _is_transient_db_error(exc: BaseException) -> bool:
    """The database is down or saturated: the caller may retry (UNAVAILABLE)."""
    return isinstance(exc, psycopg.OperationalError | PoolTimeout)


async def _abort_for(exc: BaseException, context: Context, method: str) -> None:
    if isinstance(exc, DomainError):
        await context.abort_with_status(  # type: ignore[attr-defined]
            rpc_status.to_status(exc.to_status())
        )
    if _is_transient_db_error(exc):
        log.warning("database unavailable in %s: %s", method, type(exc).__name__)
        await context.abort_with_status(  # type: ignore[attr-defined]
            rpc_status.to_status(unavailable_status())
        )
    log.exception("unexpected error in %s", method)
    await context.abort_with_status(  # type: ignore[attr-defined]
        rpc_status.to_status(internal_status())
    )


def _wrap(method: str, behavior: UnaryBehavior) -> UnaryBehavior:
    service, _, name = method.lstrip("/").partition("/")

    async def wrapped(request: Any, context: Context) -> Any:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        caller = caller_from_metadata(metadata)
        token = set_caller(caller)
        started = time.perf_counter()
        try:
            with tracer.start_as_current_span(
                method.lstrip("/"),
                context=propagate.extract(metadata),
                kind=SpanKind.SERVER,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                if span.is_recording():
                    span.set_attribute("rpc.system", "grpc")
                    span.set_attribute("rpc.service", service)
                    span.set_attribute("rpc.method", name)
                    span.set_attribute(TENANT_ATTRIBUTE, str(caller.tenant_id or ""))
                try:
                    if isinstance(request, _Undecodable):
                        log.info("undecodable %s request: %s", method, request.error)
                        raise InvalidArgument([UNDECODABLE])
                    return await behavior(request, context)
                except DomainError as exc:
                    span.set_attribute("rpc.grpc.status_code", exc.grpc_code.value[0])
                    span.set_attribute("hygoshop.error_reason", exc.reason)
                    await _abort_for(exc, context, method)
                except Exception as exc:
                    if isinstance(exc, grpc.aio.AbortError):
                        raise
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                    await _abort_for(exc, context, method)
                return None  # unreachable: abort raises
        finally:
            reset_caller(token)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s took %.2f ms", method, (time.perf_counter() - started) * 1e3)

    return wrapped


class ChassisInterceptor(_InterceptorBase):
    """Wraps every unary method of a service with caller context, tracing and errors."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(_UNWRAPPED_PREFIXES):
            return handler
        if handler.unary_unary is None:
            return handler  # streaming methods: none yet; wrap them when one exists
        return grpc.unary_unary_rpc_method_handler(
            _wrap(method, handler.unary_unary),  # type: ignore[arg-type]
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


class _Undecodable:
    """What a request that cannot be parsed arrives as, so that the call answers
    INVALID_ARGUMENT: gRPC itself turns a deserializer's exception into UNKNOWN (a 500
    through the gateway, with the parser's message)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


UNDECODABLE = FieldViolation(
    "request",
    "could not be decoded: a value of another type than its field's (an object for a"
    " string), a string that is not UTF-8, or values nested too deeply",
)


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as error:  # DecodeError, or a parser's RecursionError
            return _Undecodable(error)

    return deserialize
