"""The embedded MongoDB-wire server used when no MONGODB_CONNECTION_STRING is set.

It is SecantusDB's `secantusd-py` program (GPL-2.0), run as a separate process and spoken to
only through PyMongo, exactly as a real MongoDB; the service never imports it. One server runs
per data directory: a lock file serialises start-up and `db.json` records its pid and port so
that a second `serve` on the same directory reuses it.
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
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PROGRAM = "secantusd-py"
START_TIMEOUT = 60.0


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


def ensure_running(data_directory: Path) -> EmbeddedServer:
    """Reuse the server recorded for `data_directory`, or start one."""
    state_path = data_directory / "db.json"
    with _locked(data_directory / "db.lock"):
        try:
            state = json.loads(state_path.read_text())
            if is_alive(state["pid"]) and is_listening(state["port"]):
                return EmbeddedServer(state["pid"], state["port"], started_here=False)
        except (FileNotFoundError, ValueError, KeyError):
            pass
        port = free_port()
        process = start_process(data_directory / "db", port, data_directory / "db.log")
        wait_until_listening(port, process, START_TIMEOUT)
        state_path.write_text(json.dumps({"pid": process.pid, "port": port}))
        return EmbeddedServer(process.pid, port, started_here=True)


def stop(server: EmbeddedServer, data_directory: Path, timeout: float = 15.0) -> None:
    """Stop a server this process started (SIGTERM, then SIGKILL after `timeout`)."""
    if not server.started_here:
        return
    stop_pid(server.pid, timeout)
    with _locked(data_directory / "db.lock"):
        (data_directory / "db.json").unlink(missing_ok=True)


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = 0 if is_alive(pid) else pid
        if finished == pid or not is_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
