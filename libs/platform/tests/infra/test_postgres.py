"""find_or_start_postgres: each source, embedded data reuse and crash leftovers, database helpers."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from hygoshop_platform.infra.embedded_pg import answers, install_dir
from hygoshop_platform.infra.postgres import (
    PostgresUnavailable,
    create_database,
    docker_engine_available,
    drop_database,
    find_or_start_postgres,
    to_psycopg_url,
    to_sqlalchemy_url,
    with_database,
)
from hygoshop_platform.infra.processes import ManagedProcess, free_port
from hygoshop_platform.testing.postgres import MakeDatabase

SERVICE_USER = "embedded_postgres" if os.geteuid() == 0 else None


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A parent for data dirs outside pytest's tmp_path: as root the server runs as another
    user, and every new pytest session resets /tmp/pytest-of-root to 0700 (parallel runs)."""
    base = Path(tempfile.mkdtemp(prefix="hygoshop-pg-test-"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_url_helpers() -> None:
    url = "postgresql://u:secret@db:5432/app?sslmode=disable"
    assert to_sqlalchemy_url(url) == "postgresql+psycopg://u:secret@db:5432/app?sslmode=disable"
    assert to_psycopg_url("postgresql+psycopg://u@db/app") == "postgresql://u@db/app"
    assert to_psycopg_url("postgres://u@db/app") == "postgresql://u@db/app"
    assert with_database(url, "other") == "postgresql://u:secret@db:5432/other?sslmode=disable"
    with pytest.raises(ValueError, match="not a PostgreSQL URL") as err:
        to_sqlalchemy_url("mysql://u:secret@db/app")
    assert "secret" not in str(err.value)
    with pytest.raises(ValueError, match="invalid database name"):
        create_database("postgresql://x@127.0.0.1:1/x", "Robert'); DROP")


def test_database_url_that_does_not_answer_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    # Explicit configuration must not silently fall through to another server.
    with pytest.raises(PostgresUnavailable, match="DATABASE_URL does not answer"):
        find_or_start_postgres()


@pytest.mark.integration
def test_database_url_is_used_and_never_stopped(
    monkeypatch: pytest.MonkeyPatch, pg_admin_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", to_sqlalchemy_url(pg_admin_url))
    handle = find_or_start_postgres()
    assert (handle.source, handle.started) == ("env", False)
    assert handle.url == pg_admin_url
    handle.stop()
    assert answers(pg_admin_url)


def test_docker_source_falls_through_fast_without_an_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    if docker_engine_available():
        pytest.skip(reason="a Docker engine answers here: nothing to fall through")
    with pytest.raises(PostgresUnavailable, match="no Docker engine answers"):
        find_or_start_postgres(sources=("docker",))


def test_docker_ping_gives_up_quickly_on_dead_or_silent_endpoints(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    assert not docker_engine_available()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    assert not docker_engine_available()
    # An endpoint that accepts but never answers must cost only the timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        # Not a speed check: without the timeout this call would wait forever.
        started = time.monotonic()
        assert not docker_engine_available(timeout=0.3)
        assert time.monotonic() - started < 30


def _count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM kept").fetchone()
    assert row is not None
    return int(row[0])


def _foreign_postgres(data_dir: Path) -> ManagedProcess:
    """A server on `data_dir` that no handle owns: what a dead owner (or pg_ctl by hand) leaves."""
    argv = [str(install_dir() / "bin" / "postgres"), "-D", str(data_dir), "-p", str(free_port())]
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
    proc = ManagedProcess("foreign-postgres", argv, user=SERVICE_USER).start()
    proc.wait_until((data_dir / "postmaster.pid").exists, "postmaster.pid", 30)
    return proc


@pytest.mark.integration
def test_embedded_server_reuses_its_data_and_recovers_from_leftovers(pg_dir: Path) -> None:
    data_dir = pg_dir / "pg"
    started = time.monotonic()
    first = find_or_start_postgres(data_dir, sources=("embedded",))
    init_seconds = time.monotonic() - started
    assert (first.source, first.started) == ("embedded", True)
    assert ":5432/" not in first.url  # its own server even when the machine has one on 5432
    with psycopg.connect(first.url) as conn:
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("INSERT INTO kept VALUES (1)")
        fsync = conn.execute("SHOW fsync").fetchone()
    assert fsync == ("on",)  # a given data dir is durable
    first.stop()
    assert not answers(first.url)

    # Second start on the same dir: no initdb, same data.
    second = find_or_start_postgres(data_dir, sources=("embedded",))
    assert _count_rows(second.url) == 1
    # A second handle while the first is alive shares the server and does not own it.
    shared = find_or_start_postgres(data_dir, sources=("embedded",))
    assert (shared.url, shared.started) == (second.url, False)
    shared.stop()
    assert answers(second.url)

    # kill -9 leaves postmaster.pid behind; and its pid may belong to a live process later.
    assert second.embedded is not None
    assert second.embedded.process is not None
    second.embedded.process.kill9()
    second.stop()
    assert (data_dir / "postmaster.pid").exists()
    squatter = ManagedProcess("squatter", ["sleep", "30"], user=SERVICE_USER).start()
    pid_lines = (data_dir / "postmaster.pid").read_text().splitlines()
    (data_dir / "postmaster.pid").write_text("\n".join([str(squatter.pid), *pid_lines[1:]]) + "\n")
    try:
        third = find_or_start_postgres(data_dir, sources=("embedded",))
        assert _count_rows(third.url) == 1
        third.stop()
    finally:
        squatter.stop()

    # A server still running on the dir with no owner is stopped, then ours starts.
    foreign = _foreign_postgres(data_dir)
    fourth = find_or_start_postgres(data_dir, sources=("embedded",))
    try:
        assert foreign.returncode is not None
        assert _count_rows(fourth.url) == 1
    finally:
        fourth.stop()
        foreign.stop()
    print(f"embedded initdb+start: {init_seconds:.2f}s")


@pytest.mark.integration
def test_embedded_temp_server_is_fast_and_removed_on_stop() -> None:
    with find_or_start_postgres(sources=("embedded",)) as handle:
        assert handle.embedded is not None
        base = handle.embedded.data_dir.parent
        with psycopg.connect(handle.url) as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
    assert not base.exists()
    assert not answers(handle.url)


@pytest.mark.integration
def test_make_database_gives_a_fresh_database(
    make_database: MakeDatabase, pg_admin_url: str
) -> None:
    url = make_database("Infra Tests")
    name = url.rsplit("/", 1)[1]
    assert name.startswith("hs_infra_tests_")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (name,)
    assert make_database("infra_tests") != url
    assert create_database(pg_admin_url, name, exist_ok=True) == url
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        create_database(pg_admin_url, name)


@pytest.mark.integration
def test_drop_database_forces_out_open_sessions(pg_admin_url: str) -> None:
    name = f"hs_drop_{os.getpid()}"
    url = create_database(pg_admin_url, name)
    conn = psycopg.connect(url)
    try:
        drop_database(pg_admin_url, name)
        drop_database(pg_admin_url, name)  # already gone: no error
    finally:
        conn.close()
    with psycopg.connect(pg_admin_url) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert exists is None


@pytest.mark.integration
def test_embedded_server_dies_with_its_parent(tmp_path: Path, pg_dir: Path) -> None:
    """A supervisor killed with SIGKILL must not leave its PostgreSQL running."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from hygoshop_platform.infra import find_or_start_postgres\n"
        "h = find_or_start_postgres(Path(sys.argv[1]), sources=('embedded',))\n"
        "print(h.url, flush=True)\n"
        "time.sleep(60)\n"
    )
    out = tmp_path / "parent.log"
    parent = ManagedProcess("parent", [sys.executable, "-c", script, str(pg_dir / "pg")], None, out)
    with parent:
        parent.wait_until(lambda: "postgresql://" in out.read_text(), "the server URL", 30)
        url = out.read_text().split("postgresql://")[1].split()[0]
        url = "postgresql://" + url
        assert answers(url)
        parent.kill9()
        deadline = time.monotonic() + 10
        while answers(url, timeout=1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not answers(url), "PostgreSQL outlived its parent"
