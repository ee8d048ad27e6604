"""Supervise local child processes (servers for `make run` and end-to-end tests) without leaks.

Every child runs in its own session, so a terminal Ctrl-C reaches only the supervisor,
which then stops the children in reverse start order. On Linux every child also gets a
parent-death signal (prctl PR_SET_PDEATHSIG), so a supervisor killed with SIGKILL, or a
crashed pytest, never leaves servers behind. Caveat of that kernel feature: "parent" is
the *thread* that started the child, so start children from a long-lived thread (the
main thread), not from a short-lived worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PDEATHSIG_EXEC = Path(__file__).with_name("_pdeathsig_exec.py")
_TAIL_BYTES = 16_384


class ManagedProcessError(RuntimeError):
    """A child failed to start, exited early or did not become ready; the message has its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the kernel picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _death_signal_preexec(sig: int) -> Callable[[], None] | None:
    """A preexec_fn that asks the kernel to send `sig` to the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved in the parent: the forked child should do as little as possible.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork() and prctl(): then no signal would come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class ManagedProcess:
    """One child process: start, wait until ready, stop gracefully, or kill -9 for fault tests.

    `env` is laid over the supervisor's environment. Output (stdout and stderr) goes to
    `log_path`, or to an anonymous temp file when None; either way the last lines appear
    in every error so a crashing child is diagnosable. `user` (root only) runs the child
    as another system user, e.g. PostgreSQL, which refuses to run as root.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        *,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        death_signal: int = signal.SIGKILL,
        grace: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = dict(env or {})
        self.log_path = log_path
        self.cwd = cwd
        self.user = user
        self.stop_signal = stop_signal
        self.death_signal = death_signal
        self.grace = grace
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopped = False

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, returncode={self.returncode})"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """None while running (or before start); negative -N when killed by signal N."""
        return self._popen.poll() if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> Self:
        if self._popen is not None:
            raise ManagedProcessError(f"{self.name}: already started (pid {self.pid})")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("w+b")
        else:
            self._log = tempfile.TemporaryFile(prefix=f"{self.name}-")  # noqa: SIM115
        uid: int | None = None
        gid: int | None = None
        groups: list[int] | None = None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            # Drop root's groups too, not only the uid: files the child writes get its group.
            uid, gid, groups = entry.pw_uid, entry.pw_gid, []
        env = {**os.environ, **self.env}
        try:
            argv, preexec = self._launch(env, uid)
            self._popen = subprocess.Popen(
                argv,
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C goes to the supervisor only
                preexec_fn=preexec,  # noqa: PLW1509 (only to run as another user, see _launch)
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        except OSError as exc:
            self._close_log()
            raise ManagedProcessError(
                f"{self.name}: cannot start {self._command()}: {exc}"
            ) from exc
        logger.info("started %s (pid %s): %s", self.name, self.pid, self._command())
        return self

    def _launch(
        self, env: Mapping[str, str], uid: int | None
    ) -> tuple[list[str], Callable[[], None] | None]:
        """The argv to start, and the preexec_fn if one is needed, for a child that gets
        the parent-death signal on Linux: through `_pdeathsig_exec.py`, which asks for it
        and then execs the command (no Python runs in the forked child). A child run as
        another user (PostgreSQL as postgres) may not be able to read our interpreter, so
        it gets a preexec_fn instead: safe only while this process has no other threads,
        which holds where that happens (the embedded PostgreSQL, started first)."""
        if not sys.platform.startswith("linux"):
            return list(self.argv), None
        if uid is not None:
            return list(self.argv), _death_signal_preexec(self.death_signal)
        command = self.argv[0]
        if os.sep not in command:
            found = shutil.which(command, path=env.get("PATH", os.defpath))
            if found is None:
                raise FileNotFoundError(errno.ENOENT, "no such executable on PATH", command)
        elif not os.access(command, os.X_OK):
            raise FileNotFoundError(errno.ENOENT, "no such executable", command)
        return [
            sys.executable,
            "-I",
            "-S",
            str(_PDEATHSIG_EXEC),
            str(int(self.death_signal)),
            str(os.getpid()),
            *self.argv,
        ], None

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines the child wrote (empty when nothing was captured)."""
        data = b""
        if self._log is not None and not self._log.closed:
            size = os.fstat(self._log.fileno()).st_size
            offset = max(0, size - _TAIL_BYTES)
            data = os.pread(self._log.fileno(), size - offset, offset)
        elif self.log_path is not None and self.log_path.exists():
            with self.log_path.open("rb") as fh:
                fh.seek(max(0, self.log_path.stat().st_size - _TAIL_BYTES))
                data = fh.read()
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def failure(self, what: str) -> ManagedProcessError:
        """An error naming the child, its exit status, its log file and its last output."""
        rc = self.returncode
        status = "still running" if rc is None else f"exit code {rc}"
        where = f"; log: {self.log_path}" if self.log_path is not None else ""
        tail = self.log_tail() or "(no output)"
        return ManagedProcessError(
            f"{self.name} (pid {self.pid}, {status}): {what}\n"
            f"command: {self._command()}{where}\n--- last output ---\n{tail}"
        )

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Poll `check` until it is true; fail fast (with the log tail) if the child exits."""
        self._require_started()
        deadline = time.monotonic() + timeout
        while True:
            if self.returncode is not None:
                raise self.failure(f"exited while waiting for {what}")
            if check():
                return
            if time.monotonic() >= deadline:
                raise self.failure(f"not ready after {timeout:.0f}s: {what}")
            time.sleep(0.05)

    def wait_for_tcp(self, host: str, port: int, timeout: float = 30.0) -> None:
        def accepts() -> bool:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return True
            except OSError:
                return False

        self.wait_until(accepts, f"TCP {host}:{port}", timeout)

    def wait_for_grpc_health(self, target: str, service: str = "", timeout: float = 30.0) -> None:
        """Call grpc.health.v1 Check until it answers SERVING."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        # Short reconnect backoff: the default (1 s growing to 120 s) would make us notice
        # a freshly started server late.
        options = [
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500),
        ]
        with grpc.insecure_channel(target, options=options) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=service)

            def serving() -> bool:
                try:
                    reply = stub.Check(request, timeout=1.0)
                except grpc.RpcError:
                    return False  # not listening yet, or the service is not registered yet
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            self.wait_until(
                serving, f"gRPC health SERVING at {target} (service {service!r})", timeout
            )

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the child to exit on its own; return its exit code."""
        popen = self._require_started()
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self.failure(f"did not exit within {timeout:.1f}s") from None

    def stop(self, grace: float | None = None) -> int | None:
        """Send the stop signal, wait `grace` seconds (default: the constructor's), then SIGKILL.

        Returns the exit code (None if never started). Safe to call again.
        """
        if self._popen is None:
            return None
        if self._stopped:
            return self._popen.returncode
        grace = self.grace if grace is None else grace
        if self._popen.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.1fs; killing it", self.name, grace)
                self._signal_group(signal.SIGKILL)
                self._popen.wait()
        # Helpers the child forked into its group must not outlive it. Done once, right
        # away: later the pgid could, in theory, belong to someone else.
        self._signal_group(signal.SIGKILL)
        self._stopped = True
        self._close_log()
        logger.info("stopped %s (exit code %s)", self.name, self._popen.returncode)
        return self._popen.returncode

    def kill9(self) -> None:
        """SIGKILL the child itself (a crash, for fault tests); `stop()` later reaps its group."""
        popen = self._require_started()
        with contextlib.suppress(ProcessLookupError):
            popen.kill()
        popen.wait()

    def __enter__(self) -> Self:
        return self.start() if self._popen is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self) -> str:
        return shlex.join(self.argv)

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise ManagedProcessError(f"{self.name}: not started")
        return self._popen

    def _signal_group(self, sig: int) -> None:
        # The child leads its own process group (start_new_session), so its pid is the pgid.
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()


class ProcessGroup:
    """Start children in order, stop them in reverse; a context manager that cleans up on errors.

    The children do not see a terminal Ctrl-C (their own sessions): the KeyboardInterrupt
    in the supervisor unwinds the `with` block, which stops them. A second Ctrl-C while
    stopping skips the remaining grace periods and kills what is left.
    """

    def __init__(self, *processes: ManagedProcess, grace: float | None = None) -> None:
        self.grace = grace  # overrides each child's own grace when set
        self._pending: list[ManagedProcess] = list(processes)
        self._started: list[ManagedProcess] = []

    @property
    def processes(self) -> list[ManagedProcess]:
        """The started children, in start order."""
        return list(self._started)

    def add(self, proc: ManagedProcess) -> ManagedProcess:
        """Queue a child for `start_all()`."""
        self._pending.append(proc)
        return proc

    def start(
        self, proc: ManagedProcess, ready: Callable[[ManagedProcess], object] | None = None
    ) -> ManagedProcess:
        """Start one child now and wait for `ready(proc)` (e.g. a health check) before returning."""
        proc.start()
        self._started.append(proc)  # before `ready`: a child that never gets ready is still stopped
        if ready is not None:
            ready(proc)
        return proc

    def start_all(self) -> None:
        """Start the queued children in order."""
        while self._pending:
            self.start(self._pending.pop(0))

    def first_exited(self) -> ManagedProcess | None:
        return next((p for p in self._started if p.returncode is not None), None)

    def wait_any(self, poll: float = 0.2) -> ManagedProcess:
        """Block until some child exits (the launcher's main loop) and return it."""
        while (proc := self.first_exited()) is None:
            time.sleep(poll)
        return proc

    def stop_all(self, grace: float | None = None) -> None:
        """Stop the started children, last first."""
        grace = self.grace if grace is None else grace
        interrupted = False
        while self._started:
            proc = self._started.pop()
            try:
                proc.stop(0.0 if interrupted else grace)
            except KeyboardInterrupt:
                interrupted = True
                proc.stop(0.0)
            except Exception:
                logger.exception("could not stop %s", proc.name)
        if interrupted:
            raise KeyboardInterrupt

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
