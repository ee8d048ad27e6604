"""Find a RabbitMQ for tests and `make run`: AMQP_URL, local :5672 (guest), or Docker.

No wheel ships RabbitMQ, so unlike PostgreSQL there is no embedded fallback: without a
broker the bus runs on PostgreSQL instead (`make run`), and the bus tests say why they
cannot run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hygoshop_platform.infra.postgres import docker_engine_available

log = logging.getLogger(__name__)

LOCAL_URL = "amqp://guest:guest@127.0.0.1:5672/"
DOCKER_IMAGE = "rabbitmq:3.13-alpine"


class RabbitMQUnavailable(RuntimeError):
    """No RabbitMQ answers; the message says where we looked."""


@dataclass
class RabbitMQHandle:
    url: str
    source: str
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


def rabbitmq_answers(url: str, timeout: float = 3.0) -> str | None:
    """None when an AMQP connection to `url` opens; otherwise why it does not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 0.5):
            pass
    except OSError as exc:
        return f"nothing listens ({exc})"

    async def probe() -> None:
        import aio_pika

        connection = await aio_pika.connect(url, timeout=timeout)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def find_rabbitmq() -> RabbitMQHandle:
    """AMQP_URL when set (it must answer), else 127.0.0.1:5672, else a Docker container."""
    explicit = os.environ.get("AMQP_URL")
    if explicit:
        problem = rabbitmq_answers(explicit)
        if problem:
            raise RabbitMQUnavailable(f"AMQP_URL does not answer: {problem}")
        return RabbitMQHandle(explicit, "env")
    reasons = []
    problem = rabbitmq_answers(LOCAL_URL)
    if problem is None:
        return RabbitMQHandle(LOCAL_URL, "local")
    reasons.append(f"local 127.0.0.1:5672: {problem}")
    if docker_engine_available():
        return _from_docker()
    reasons.append("docker: no Docker engine answers")
    raise RabbitMQUnavailable("no RabbitMQ available:\n  " + "\n  ".join(reasons))


def _from_docker() -> RabbitMQHandle:
    from testcontainers.core.container import DockerContainer

    # RabbitMQ lets `guest` in from loopback only; the container sees a bridge address.
    container = (
        DockerContainer(DOCKER_IMAGE)
        .with_exposed_ports(5672)
        .with_env("RABBITMQ_DEFAULT_USER", "hygoshop")
        .with_env("RABBITMQ_DEFAULT_PASS", "hygoshop")
    )
    container.start()
    try:
        host = container.get_container_host_ip()
        url = f"amqp://hygoshop:hygoshop@{host}:{container.get_exposed_port(5672)}/"
        deadline = time.monotonic() + 60
        while (problem := rabbitmq_answers(url)) is not None:
            if time.monotonic() > deadline:
                raise RabbitMQUnavailable(f"the RabbitMQ container did not answer: {problem}")
            time.sleep(0.5)
    except BaseException:
        container.stop()
        raise
    log.info("RabbitMQ: started %s at %s", DOCKER_IMAGE, url)
    return RabbitMQHandle(url, "docker", _stop=container.stop)
