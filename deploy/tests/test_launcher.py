"""`make run`'s launcher: starts everything on an embedded PostgreSQL, seeds a demo tenant,
writes .run/env, reuses the data on a second run, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hygoshop_platform.infra import free_port
from hygoshop_platform.infra.seaweedfs import weed_pids

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _launcher(run_dir: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "deploy.launcher",
        "--run-dir",
        str(run_dir),
        "--port",
        str(port),
        *extra,
    ]


def _env_without_database() -> dict[str, str]:
    # The launcher must bring its own PostgreSQL when none is configured.
    unset = ("DATABASE_URL", "REDIS_URL", "S3_ENDPOINT_URL", "S3_BUCKET")
    return {k: v for k, v in os.environ.items() if k not in unset}


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_first_run_seeds_and_second_run_reuses_the_data(tmp_path: Path) -> None:
    port = free_port()
    first = subprocess.run(
        _launcher(tmp_path, port, "--exit-after-start"),
        cwd=REPO,
        env=_env_without_database(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    env = _read_env(tmp_path / "env")
    assert set(env) >= {"HYGOSHOP_GATEWAY_URL", "HYGOSHOP_DEMO_API_KEY", "HYGOSHOP_ADMIN_API_KEY"}
    assert env["HYGOSHOP_DEMO_API_KEY"] in first.stdout
    assert "curl" in first.stdout
    assert (tmp_path / "postgres").is_dir()

    second = subprocess.Popen(
        _launcher(tmp_path, port),
        cwd=REPO,
        env=_env_without_database(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        url = env["HYGOSHOP_GATEWAY_URL"]
        demo = {"Authorization": f"Bearer {env['HYGOSHOP_DEMO_API_KEY']}"}
        # The first run's demo key works again: the data survived the restart.
        while True:
            assert second.poll() is None, second.stdout.read() if second.stdout else ""
            assert time.monotonic() < deadline, "second run did not come up"
            try:
                if httpx.get(f"{url}/v1/listings", headers=demo, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert _read_env(tmp_path / "env")["HYGOSHOP_DEMO_API_KEY"] == env["HYGOSHOP_DEMO_API_KEY"]
    finally:
        second.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert second.wait(timeout=60) == 0
    # Everything it started is gone: the gateway port is free again.
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert not list((tmp_path / "postgres").rglob("postmaster.pid")), (
        "embedded PostgreSQL left running"
    )
    assert (tmp_path / "seaweedfs" / "data").is_dir()
    assert not weed_pids(tmp_path / "seaweedfs" / "data"), "SeaweedFS left running"
