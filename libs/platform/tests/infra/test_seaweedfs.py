"""find_or_start_s3 / SeaweedFS: env endpoint, start, share, stop, reuse, crash leftovers."""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hygoshop_platform.blobs import BlobSettings, ensure_bucket, make_client
from hygoshop_platform.infra.processes import ManagedProcess, free_port
from hygoshop_platform.infra.s3 import S3Handle, S3Unavailable, find_or_start_s3
from hygoshop_platform.infra.seaweedfs import SeaweedFS, s3_answers, weed_pids


@pytest.fixture
def s3_root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="hygoshop-s3-test-"))
    yield base / "seaweedfs"
    shutil.rmtree(base, ignore_errors=True)


def _settings(server: SeaweedFS) -> BlobSettings:
    return BlobSettings(
        bucket="reuse-test",
        endpoint_url=server.endpoint_url,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
    )


def _answers(server: SeaweedFS) -> bool:
    return s3_answers(server.endpoint_url, server.access_key_id, server.secret_access_key) is None


def _sockets(ports: dict[str, int]) -> list[str]:
    return [p for port in ports.values() for p in glob.glob(f"/tmp/seaweedfs-*-{port}.sock")]  # noqa: S108


def test_s3_endpoint_url_that_does_not_answer_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    # Explicit configuration must not silently fall through to a local server.
    with pytest.raises(S3Unavailable, match="S3_ENDPOINT_URL does not answer"):
        find_or_start_s3()


@pytest.mark.integration
def test_s3_endpoint_url_is_used_and_never_stopped(
    monkeypatch: pytest.MonkeyPatch, s3_server: S3Handle
) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("S3_ACCESS_KEY_ID", s3_server.access_key_id or "")
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", s3_server.secret_access_key or "")
    handle = find_or_start_s3()
    assert (handle.source, handle.started) == ("env", False)
    assert handle.endpoint_url == s3_server.endpoint_url
    handle.stop()
    assert ensure_bucket(handle.blob_settings("still-served")) is True


OWNER = """
import sys, time
from pathlib import Path
from hygoshop_platform.blobs import BlobSettings, ensure_bucket, make_client
from hygoshop_platform.infra.seaweedfs import SeaweedFS

server = SeaweedFS(Path(sys.argv[1]))
server.start()
settings = BlobSettings(
    bucket="reuse-test",
    endpoint_url=server.endpoint_url,
    access_key_id=server.access_key_id,
    secret_access_key=server.secret_access_key,
)
ensure_bucket(settings)
make_client(settings).put_object(Bucket="reuse-test", Key="kept/object.txt", Body=b"survives")
print(server.endpoint_url, flush=True)
time.sleep(60)
"""


@pytest.mark.integration
def test_seaweedfs_restarts_on_its_data_after_its_owner_was_killed(
    tmp_path: Path, s3_root: Path
) -> None:
    out = tmp_path / "owner.log"
    owner = ManagedProcess("owner", [sys.executable, "-c", OWNER, str(s3_root)], None, out)
    with owner:
        owner.wait_until(lambda: "http://" in out.read_text(), "the first server", 60)
        owner.kill9()
    orphan_ports = json.loads((s3_root / "state.json").read_text())["ports"]
    # The orphaned SeaweedFS got SIGTERM from the kernel but drains for a while; a new start
    # must neither wait for it nor fight it over the data dir.
    server = SeaweedFS(s3_root)
    try:
        endpoint = server.start()
        assert server.owned
        assert len(weed_pids(server.data_dir)) == 1
        reply = make_client(_settings(server)).get_object(
            Bucket="reuse-test", Key="kept/object.txt"
        )
        assert reply["Body"].read() == b"survives"  # same data, same credentials

        # A second handle on the same root shares the running server and never stops it.
        second = SeaweedFS(s3_root)
        assert second.start() == endpoint
        assert (second.owned, second.secret_access_key) == (False, server.secret_access_key)
        second.stop()
        assert _answers(server)
    finally:
        server.stop()
    assert not weed_pids(server.data_dir)
    assert not _sockets(server.ports), "sockets left in /tmp"
    assert not _sockets(orphan_ports), "the killed server's sockets left in /tmp"
    assert (os.stat(s3_root / "state.json").st_mode & 0o077) == 0, "credentials readable by others"
