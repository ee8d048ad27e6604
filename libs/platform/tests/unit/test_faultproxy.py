"""The fault proxy does to a TCP connection what the fault tests rely on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hygoshop_platform.testing.faultproxy import FaultProxy


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the proxy reset it: that is the point
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_forwards_holds_resets_and_refuses(echo_port: int) -> None:
    async with FaultProxy("127.0.0.1", echo_port) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address())
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"

        proxy.hold()  # the request goes through, the answer waits
        writer.write(b"held")
        answer = asyncio.ensure_future(reader.readexactly(4))
        done, _ = await asyncio.wait({answer}, timeout=0.3)
        assert not done
        proxy.release()
        assert await asyncio.wait_for(answer, 5) == b"held"

        proxy.reset()
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()

        proxy.refuse()
        reader, writer = await asyncio.open_connection(*proxy.address())
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()
        proxy.accept()
        reader, writer = await asyncio.open_connection(*proxy.address())
        writer.write(b"back")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"back"
        writer.close()
        assert proxy.connections_made == 2  # the refused one never reached the server
