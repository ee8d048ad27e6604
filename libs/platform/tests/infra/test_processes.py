"""ManagedProcess and ProcessGroup against real child processes (no mocks)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from hygoshop_platform.infra.processes import (
    ManagedProcess,
    ManagedProcessError,
    ProcessGroup,
    free_port,
)

PY = sys.executable

# Prints "ready", then on SIGTERM appends its name to a file and exits 0.
POLITE = """
import signal, sys, time
name, record = sys.argv[1], sys.argv[2]
def bye(*_):
    with open(record, "a") as fh:
        fh.write(name + "\\n")
    print("bye from", name, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""

STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""

CRASHING = """
import sys
print("loading config", flush=True)
print("boom: HYGOSHOP_DATABASE_URL is not set", file=sys.stderr, flush=True)
sys.exit(3)
"""

GRPC_SERVER = """
import asyncio, sys
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

async def main(port: int) -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await servicer.set("demo", health_pb2.HealthCheckResponse.NOT_SERVING)
    await asyncio.sleep(0.5)  # "warming up": the waiter must keep polling through this
    await servicer.set("demo", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()

asyncio.run(main(int(sys.argv[1])))
"""

# A supervisor: starts two polite children in a ProcessGroup and waits for Ctrl-C.
SUPERVISOR = """
import sys, time
from pathlib import Path
from hygoshop_platform.infra.processes import ManagedProcess, ProcessGroup
script, record, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
with ProcessGroup() as group:
    for name in ("db", "api"):
        proc = ManagedProcess(name, [sys.executable, "-c", script, name, record])
        group.start(proc, ready=lambda p: p.wait_until(lambda: "ready" in p.log_tail(), "ready"))
    out.write_text(" ".join(str(p.pid) for p in group.processes))
    group.wait_any()
"""


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


def _ready(proc: ManagedProcess) -> None:
    proc.wait_until(lambda: "ready" in proc.log_tail(), "ready", 10)


def test_start_and_graceful_stop(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "polite.log"
    proc = ManagedProcess("polite", [PY, "-c", POLITE, "polite", str(tmp_path / "rec")], {}, log)
    assert proc.pid is None
    assert proc.returncode is None
    proc.start()
    _ready(proc)
    assert proc.running
    assert proc.pid is not None
    assert os.getsid(proc.pid) == proc.pid  # own session: a terminal Ctrl-C does not reach it
    assert proc.stop(grace=5) == 0
    assert "bye from polite" in log.read_text()
    assert proc.stop() == 0  # idempotent


def test_env_is_laid_over_ours(tmp_path: Path) -> None:
    code = "import os; print(os.environ['HYGO_X'], 'PATH' in os.environ, flush=True)"
    with ManagedProcess("env", [PY, "-c", code], {"HYGO_X": "42"}) as proc:
        assert proc.wait(10) == 0
        assert proc.log_tail() == "42 True"


def test_stop_escalates_to_sigkill_after_grace() -> None:
    proc = ManagedProcess("stubborn", [PY, "-c", STUBBORN]).start()
    _ready(proc)
    assert proc.stop(grace=0.3) == -signal.SIGKILL


def test_kill9_is_a_crash() -> None:
    proc = ManagedProcess("victim", [PY, "-c", STUBBORN]).start()
    _ready(proc)
    proc.kill9()
    assert proc.returncode == -signal.SIGKILL
    assert not proc.running
    proc.stop()


def test_a_crashing_child_is_diagnosable(tmp_path: Path) -> None:
    log = tmp_path / "crash.log"
    proc = ManagedProcess("catalog", [PY, "-c", CRASHING], log_path=log).start()
    with pytest.raises(ManagedProcessError) as err:
        proc.wait_for_tcp("127.0.0.1", free_port(), timeout=10)
    message = str(err.value)
    assert "catalog" in message
    assert "exit code 3" in message
    assert "boom: HYGOSHOP_DATABASE_URL is not set" in message
    assert str(log) in message
    proc.stop()


def test_not_ready_in_time_reports_and_keeps_running() -> None:
    proc = ManagedProcess("slow", [PY, "-c", STUBBORN]).start()
    try:
        _ready(proc)
        with pytest.raises(ManagedProcessError, match=r"not ready after 0s: TCP") as err:
            proc.wait_for_tcp("127.0.0.1", free_port(), timeout=0.3)
        assert "still running" in str(err.value)
        assert "ready" in str(err.value)
    finally:
        proc.stop(grace=0.1)


def test_missing_executable_fails_clearly() -> None:
    with pytest.raises(ManagedProcessError, match="cannot start"):
        ManagedProcess("ghost", ["/nonexistent/hygoshop-server"]).start()


def test_wait_for_grpc_health_until_serving() -> None:
    port = free_port()
    with ManagedProcess("grpc", [PY, "-c", GRPC_SERVER, str(port)]) as proc:
        started = time.monotonic()
        proc.wait_for_grpc_health(f"127.0.0.1:{port}", "demo", timeout=20)
        assert time.monotonic() - started >= 0.4  # it did wait through NOT_SERVING
        proc.wait_for_tcp("127.0.0.1", port, timeout=1)
        with pytest.raises(ManagedProcessError, match="gRPC health SERVING"):
            proc.wait_for_grpc_health(f"127.0.0.1:{port}", "unknown", timeout=0.5)


def test_group_starts_in_order_and_stops_in_reverse(tmp_path: Path) -> None:
    record = tmp_path / "stopped.txt"
    names = ["postgres", "tenancy", "catalog", "envoy"]
    procs = [ManagedProcess(n, [PY, "-c", POLITE, n, str(record)]) for n in names]
    with ProcessGroup(*procs) as group:
        group.start_all()
        for proc in procs:
            _ready(proc)
        assert [p.name for p in group.processes] == names
        assert group.first_exited() is None
    assert record.read_text().split() == names[::-1]
    assert all(p.returncode == 0 for p in procs)


def test_group_stops_a_child_that_never_became_ready(tmp_path: Path) -> None:
    proc = ManagedProcess("never", [PY, "-c", STUBBORN], grace=0.2)
    with pytest.raises(ManagedProcessError), ProcessGroup() as group:
        group.start(proc, ready=lambda p: p.wait_for_tcp("127.0.0.1", free_port(), 0.3))
    assert proc.returncode == -signal.SIGKILL  # it ignored SIGTERM: killed after its grace


def test_group_wait_any_returns_the_child_that_died() -> None:
    quick = ManagedProcess("quick", [PY, "-c", "import time; time.sleep(0.2)"])
    slow = ManagedProcess("slow", [PY, "-c", STUBBORN])
    with ProcessGroup(slow, quick, grace=0.2) as group:
        group.start_all()
        assert group.wait_any(poll=0.05) is quick
    assert not slow.running


def test_ctrl_c_stops_children_in_reverse_and_kill9_leaves_nothing(tmp_path: Path) -> None:
    record, pids_file = tmp_path / "stopped.txt", tmp_path / "pids.txt"
    argv = [PY, "-c", SUPERVISOR, POLITE, str(record), str(pids_file)]

    # Ctrl-C in a terminal: SIGINT to the supervisor's process group only.
    with ManagedProcess("supervisor", argv) as sup:
        sup.wait_until(pids_file.exists, "children started", 20)
        children = [int(p) for p in pids_file.read_text().split()]
        assert sup.pid is not None
        os.killpg(sup.pid, signal.SIGINT)
        assert sup.wait(20) == -signal.SIGINT  # KeyboardInterrupt, after cleaning up
    assert record.read_text().split() == ["api", "db"]
    assert not any(_alive(pid) for pid in children)

    # The supervisor killed outright: the kernel (PR_SET_PDEATHSIG) kills its children.
    record.unlink()
    pids_file.unlink()
    with ManagedProcess("supervisor", argv) as sup:
        sup.wait_until(pids_file.exists, "children started", 20)
        children = [int(p) for p in pids_file.read_text().split()]
        sup.kill9()
        assert all(_wait_dead(pid) for pid in children), "children outlived their supervisor"
    assert not record.exists()  # SIGKILL: no goodbye, but no leak either


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
