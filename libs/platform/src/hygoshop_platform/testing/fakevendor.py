"""A vendor API stand-in on loopback for tests: answers HTTP with the status it is told to.

`async with FakeVendor("sendgrid") as vendor:` then POST to `vendor.url`; set
`vendor.status = 503` (or 429, 401, ...) to make it fail and back to 200 to recover. It
counts the requests it answered, so a test sees where traffic went, and the
`Idempotency-Key` header of each: `effects` is how many distinct operations a vendor that
honours the key would have performed. Minimal HTTP/1.1
(keep-alive, Content-Length bodies) on the test's event loop: no thread, nothing leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from types import TracebackType
from typing import Self

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests"}


class FakeVendor:
    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = 0
        self.status = 200
        """What the next requests answer."""
        self.retry_after: int | None = None
        """Sent as Retry-After with 429 answers when set."""
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.idempotency_keys: Counter[str] = Counter()
        """Requests answered with 200, per Idempotency-Key header."""
        self.paths: list[str] = []
        """The path of every request answered, in order of arrival."""
        """Requests answered with 200, per Idempotency-Key header."""
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def effects(self) -> int:
        """Distinct operations performed (requests sharing an Idempotency-Key count once)."""
        return len(self.idempotency_keys)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                key = ""
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    elif name.strip().lower() == b"idempotency-key":
                        key = value.strip().decode()
                if length:
                    await reader.readexactly(length)
                status = self.status
                self.requests += 1
                self.by_status[status] = self.by_status.get(status, 0) + 1
                self.paths.append(head.split(b" ", 2)[1].decode())
                if key and status == 200:
                    self.idempotency_keys[key] += 1
                body = json.dumps({"vendor": self.name, "status": status}).encode()
                extra = ""
                if status == 429 and self.retry_after is not None:
                    extra = f"Retry-After: {self.retry_after}\r\n"
                writer.write(
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()
            with contextlib.suppress(Exception):
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
