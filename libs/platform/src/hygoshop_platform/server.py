"""gRPC server bootstrap: `create_server()` builds (tests bind port 0), `serve()` runs until
SIGTERM/SIGINT and stops gracefully: health NOT_SERVING first, then drain in-flight calls."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hygoshop_platform.interceptors import ChassisInterceptor
from hygoshop_platform.settings import ServiceSettings

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
"""The servicer context type every service method takes."""

# (add_XServicer_to_server, servicer instance, full service name)
ServicerBinding = tuple[Callable[[Any, grpc.aio.Server], None], object, str]

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass
class ServiceServer:
    """A built, not yet started server and what it must close when it stops."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer  # type: ignore[name-defined]
    port: int
    service_names: tuple[str, ...]
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def start(self) -> None:
        await self.server.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on port %d", ", ".join(self.service_names), self.port)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING so load balancers stop sending, then drain and close."""
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        for close in reversed(self.on_stop):
            await close()
        log.info("stopped")


def create_server(
    settings: ServiceSettings,
    bindings: Sequence[ServicerBinding],
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
) -> ServiceServer:
    server = grpc.aio.server(
        interceptors=[ChassisInterceptor(), *interceptors],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    names = []
    for add, servicer, name in bindings:
        add(servicer, server)
        names.append(name)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if port == 0:
        raise OSError(f"cannot bind {settings.grpc_host}:{settings.grpc_port}")
    return ServiceServer(
        server=server, health=health_servicer, port=port, service_names=tuple(names)
    )


async def serve(service: ServiceServer, grace: float) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await service.start()
    await stopping.wait()
    log.info("signal received: draining for up to %.1f s", grace)
    await service.stop(grace)
