"""An asyncio TCP proxy on loopback that injects network faults (no Toxiproxy needed).

Put it between a client and a server (RabbitMQ, PostgreSQL) and, from the test:
`hold()` stops forwarding the server's bytes (the client's requests arrive, the answers,
e.g. publisher confirms, do not), `reset()` cuts every connection with a TCP RST,
`refuse()` / `accept()` make new connections fail or succeed. Runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType
from typing import Self

_CHUNK = 65536


class FaultProxy:
    """`async with FaultProxy(host, port) as proxy:` then connect to `proxy.port`."""

    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port = 0
        self.connections_made = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._on_client, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def address(self) -> tuple[str, int]:
        return self.listen_host, self.port

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def hold(self) -> None:
        """Stop forwarding server -> client bytes (they queue up) until `release()`/`reset()`."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def refuse(self) -> None:
        """New connections are reset at once (a server that is down), until `accept()`."""
        self._refusing = True

    def accept(self) -> None:
        self._refusing = False

    def reset(self) -> None:
        """Cut every open connection with a TCP RST, on both sides; release held bytes."""
        for link in list(self._links):
            link.abort()
        self._links.clear()
        self._flowing.set()

    async def stop(self) -> None:
        self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)
            return
        self.connections_made += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, held=False)),
            asyncio.create_task(self._pump(up_reader, writer, link, held=True)),
        ]

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        held: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if held:
                    await self._flowing.wait()
                if link.aborted:
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side closed (or broke): close the other side too, as a real hop would.
            if not link.aborted:
                link.close()
                self._links.discard(link)


class _Link:
    """One proxied connection: the client's socket and ours to the server."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter):
        self.client = client
        self.server = server
        self.tasks: list[asyncio.Task[None]] = []
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True
        _abort(self.client)
        _abort(self.server)
        for task in self.tasks:
            task.cancel()

    def close(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets a RST (connection reset), not a clean FIN."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
