"""The embedded MongoDB-wire server used when no MONGODB_CONNECTION_STRING is set.

It is SecantusDB's `secantusd-py` program (GPL-2.0), run as a separate process and spoken to
only through PyMongo, exactly as a real MongoDB; the service never imports it. One server runs
per data directory, shared by every `serve` and management command using that directory:

- `db.lock` (exclusive flock) serialises starting, stopping and restarting it;
- `db.json` records the running server's pid and port; `db.port` keeps the port across
  restarts, so that clients of a server that went away reconnect to its successor by themselves;
- `db.users` is held with a shared flock by each process using the server (a `Lease`). The
  last one to leave stops it; a forked child (a gunicorn worker) never does.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

PROGRAM = "secantusd-py"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0


@dataclass
class EmbeddedServer:
    pid: int
    port: int
    started_here: bool

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/image_storage"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def program_path() -> str:
    """`secantusd-py` next to this interpreter (a virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / PROGRAM
    if beside.exists():
        return str(beside)
    found = shutil.which(PROGRAM)
    if not found:
        raise RuntimeError(f"{PROGRAM} not found: install requirements/base.txt")
    return found


def start_process(storage_path: Path, port: int, log_path: Path) -> subprocess.Popen:
    """Start the server in its own session (a Ctrl-C meant for the service does not reach it)."""
    storage_path.mkdir(parents=True, exist_ok=True)
    command = [
        program_path(),
        "--standalone",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(storage_path),
        "--log-level",
        "WARNING",
    ]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_until_listening(port: int, process: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{PROGRAM} exited with code {process.returncode}")
        if is_listening(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{PROGRAM} did not listen on port {port} within {timeout:.0f} s")


def is_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(data_directory: Path) -> EmbeddedServer | None:
    """The server recorded for `data_directory`, when it is alive and listening."""
    try:
        state = json.loads((data_directory / "db.json").read_text())
        pid, port = int(state["pid"]), int(state["port"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if is_alive(pid) and is_listening(port):
        return EmbeddedServer(pid, port, started_here=False)
    return None


def _preferred_port(data_directory: Path) -> int:
    """The port this data directory's server had before, when it is free again; else a new one."""
    try:
        port = int((data_directory / "db.port").read_text())
        with socket.socket() as sock:  # as the server binds: connections left in TIME_WAIT ok
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
        return port
    except (FileNotFoundError, ValueError, OSError):
        return free_port()


def _start(data_directory: Path) -> EmbeddedServer:
    port = _preferred_port(data_directory)
    process = start_process(data_directory / "db", port, data_directory / "db.log")
    wait_until_listening(port, process, START_TIMEOUT)
    (data_directory / "db.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    (data_directory / "db.port").write_text(str(port))
    return EmbeddedServer(process.pid, port, started_here=True)


def ensure_running(data_directory: Path) -> EmbeddedServer:
    """Reuse the server recorded for `data_directory`, or start one."""
    with _locked(data_directory / "db.lock"):
        return _read_state(data_directory) or _start(data_directory)


@dataclass
class Lease:
    """This process's use of a data directory's server (see the module docstring)."""

    data_directory: Path
    server: EmbeddedServer
    users: IO = field(repr=False)
    owner_pid: int = field(default_factory=os.getpid)

    @property
    def uri(self) -> str:
        return self.server.uri

    def revive(self) -> EmbeddedServer | None:
        """Start the server again if it died (same port when free); the new one, or None."""
        if is_alive(self.server.pid) and is_listening(self.server.port):
            return None
        with _locked(self.data_directory / "db.lock"):
            current = _read_state(self.data_directory)
            if current is None:
                logger.warning("The embedded database (pid %s) is gone: starting it again",
                               self.server.pid)  # fmt: skip
                current = _start(self.data_directory)
        changed = current.pid != self.server.pid
        self.server = current
        return current if changed else None

    def release(self) -> None:
        """Leave; the last user stops the server. Does nothing in a forked child."""
        if os.getpid() != self.owner_pid or self.users.closed:
            return
        with _locked(self.data_directory / "db.lock"):
            try:
                fcntl.flock(self.users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                last = False
            if last:
                current = _read_state(self.data_directory)
                if current is not None:
                    stop_pid(current.pid, STOP_TIMEOUT)
                (self.data_directory / "db.json").unlink(missing_ok=True)
            self.users.close()


def acquire(data_directory: Path) -> Lease:
    """Use the data directory's server, starting it when none runs."""
    data_directory.mkdir(parents=True, exist_ok=True)
    with _locked(data_directory / "db.lock"):
        server = _read_state(data_directory) or _start(data_directory)
        users = open(data_directory / "db.users", "a")  # noqa: SIM115 (held while in use)
        fcntl.flock(users, fcntl.LOCK_SH)
    return Lease(data_directory, server, users)


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; waits for a child, polls any other process."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _finished(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while not _finished(pid):
        time.sleep(0.05)


def _finished(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == pid
    except ChildProcessError:
        return not is_alive(pid)
