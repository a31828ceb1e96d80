"""How `manage.py serve` starts, stops and shares the embedded database, as a user sees it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

from images.runtime import embedded_db
from testing.harness import REPO_ROOT, ServeProcess, command_environment, project_copy
from tests.helpers import image_bytes

pytestmark = pytest.mark.slow  # starts `manage.py serve` subprocesses

QUIET = {"LOG_LEVEL": "WARNING"}


class Served(ServeProcess):
    """A `serve` in its own process group, its output in a file that can be read meanwhile."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        host="127.0.0.1",
        root: Path = REPO_ROOT,
        log_path: Path | None = None,
    ):
        port = embedded_db.free_port()
        log_path = log_path or workdir / f"serve-{port}.log"
        environment = {**QUIET, **(env or {})}
        super().__init__(environment, workdir, port=port, host=host, log_path=log_path, root=root)
        self.start()

    def get(self, path: str, timeout: float = 10) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=timeout)

    def workers(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parent = int(stat[stat.rindex(")") + 2 :].split()[1])
                if parent == self.pid and "manage.py" in (entry / "cmdline").read_text():
                    found.append(int(entry.name))
        return found


def seconds_to_stop(served: Served, sig: signal.Signals, timeout: float) -> float:
    """Signal the whole group (as a terminal's Ctrl-C does); seconds until it exited."""
    started = time.monotonic()
    served.stop(sig, timeout=timeout)
    return time.monotonic() - started


def database_pid(workdir: Path) -> int:
    return json.loads((workdir / "data" / "db.json").read_text())["pid"]


def answers_within(served: Served, path: str, seconds: float) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = served.get(path, timeout=5)
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def manage(workdir: Path, *arguments: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *arguments],
        cwd=workdir,
        env=command_environment(env or {}, workdir, REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- settings and the port -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "variable", "value", "accepted"),
    [
        ("serve", "APP_PORT", "abc", "an integer from 1 to 65535"),
        ("serve", "IMAGE_SCOPE", "team", "empty or 'user'"),
        ("serve", "WEB_CONCURRENCY", "0", "an integer from 1 to 64"),
        ("serve", "LOG_FORMAT", "xml", "'json' or 'text'"),
        ("export_images", "APP_PORT", "abc", "an integer from 1 to 65535"),
        ("ensure_indexes", "IMAGE_SCOPE", "team", "empty or 'user'"),
        ("check", "S3_PRESIGNED_DOWNLOADS", "maybe", "true or false"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it_and_exit_status_2(
    tmp_path, command, variable, value, accepted
):
    completed = manage(tmp_path, command, *(["x.zip"] if command == "export_images" else []),
                       env={variable: value})  # fmt: skip
    assert completed.returncode == 2
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert variable in lines[0] and accepted in lines[0] and repr(value) in lines[0]
    assert not (tmp_path / "data" / "db.json").exists()


def test_a_taken_port_is_one_line_naming_app_port_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = manage(tmp_path, "serve", env={"APP_PORT": str(port)})
    assert completed.returncode != 0
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    errors = [line for line in lines if "APP_PORT" in line]
    assert len(errors) == 1 and f"APP_PORT {port} is already in use" in errors[0]
    assert "Serving on" not in completed.stdout and "Traceback" not in completed.stderr
    assert not (tmp_path / "data" / "db.json").exists()  # no database started for nothing


# --- stopping ----------------------------------------------------------------------------------
def test_ctrl_c_stops_serve_and_the_embedded_database_within_10_seconds_every_time(tmp_path):
    for attempt in range(3):
        served = Served(tmp_path, {"WEB_CONCURRENCY": "2"})
        assert served.get("/images?limit=1").status_code == 200
        database = database_pid(tmp_path)
        idle = socket.create_connection(("127.0.0.1", served.port))  # a kept-alive client
        idle.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        busy = socket.create_connection(("127.0.0.1", served.port))  # a request half sent
        busy.sendall(b"POST /images HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
        seconds = seconds_to_stop(served, signal.SIGINT, timeout=30)
        idle.close()
        busy.close()
        assert seconds < 10, f"attempt {attempt}: {seconds:.1f} s"
        assert served.process.returncode == 0, served.output
        assert not embedded_db.is_alive(database)
        assert "SIGKILL" not in served.output and "Traceback" not in served.output


def test_a_worker_leaving_on_its_own_never_stops_the_embedded_database(tmp_path):
    served = Served(tmp_path, {"WEB_CONCURRENCY": "2", "MAX_REQUESTS": "3",
                               "MAX_REQUESTS_JITTER": "0"})  # fmt: skip
    try:
        database = database_pid(tmp_path)
        for _ in range(12):  # each worker recycled at least once
            assert served.get("/images?limit=1").status_code == 200
        os.kill(served.workers()[0], signal.SIGTERM)
        os.kill(served.process.pid, signal.SIGHUP)  # reload: every worker replaced
        time.sleep(3)
        for _ in range(6):
            assert answers_within(served, "/images?limit=1", 20).status_code == 200
        assert embedded_db.is_alive(database) and database_pid(tmp_path) == database
    finally:
        served.stop()
    assert not embedded_db.is_alive(database)
    assert "Traceback" not in served.output, served.output


def test_a_second_serve_keeps_working_when_the_first_stops(tmp_path):
    first = Served(tmp_path)
    second = Served(tmp_path)
    database = database_pid(tmp_path)
    try:
        assert "(started)" in first.output and "(reusing)" in second.output
        created = requests.post(
            f"{first.url}/images", files={"image": ("a.jpg", image_bytes())}, timeout=10
        ).json()
        first.stop()
        assert embedded_db.is_alive(database)
        assert second.get(f"/images/{created['_id']}").json()["file"] == "a.jpg"
    finally:
        second.stop()
    assert not embedded_db.is_alive(database)
    assert not (tmp_path / "data" / "db.json").exists()


def test_a_serve_whose_database_went_away_reconnects_when_it_is_back(tmp_path):
    served = Served(tmp_path)
    try:
        requests.post(f"{served.url}/images", files={"image": ("b.jpg", image_bytes())},
                      timeout=10)  # fmt: skip
        state = json.loads((tmp_path / "data" / "db.json").read_text())
        embedded_db.stop_pid(state["pid"])  # stopped behind serve's back (503 until it is back)
        deadline = time.monotonic() + 30
        while database_pid(tmp_path) == state["pid"] and time.monotonic() < deadline:
            time.sleep(0.2)  # serve's watchdog notices within seconds and starts it again
        listed = answers_within(served, "/images", 30)
        assert listed.status_code == 200 and listed.json()["total"] == 1
        again = json.loads((tmp_path / "data" / "db.json").read_text())
        assert again["pid"] != state["pid"] and again["port"] == state["port"]
    finally:
        served.stop()
    assert not embedded_db.is_alive(again["pid"])


# --- management commands -------------------------------------------------------------------
def test_management_commands_use_the_running_embedded_database(tmp_path):
    served = Served(tmp_path)
    try:
        requests.post(f"{served.url}/images", files={"image": ("c.jpg", image_bytes())},
                      data={"label": "cat"}, timeout=10)  # fmt: skip
        database = database_pid(tmp_path)
        exported = manage(tmp_path, "export_images", "out.zip")
        assert exported.returncode == 0, exported.stderr
        assert (tmp_path / "out.zip").stat().st_size > 0
        assert embedded_db.is_alive(database)  # the command left the server to `serve`
        assert served.get("/images?label=cat").json()["total"] == 1
    finally:
        served.stop()


def test_a_management_command_alone_starts_the_embedded_database_and_stops_it(tmp_path):
    completed = manage(tmp_path, "ensure_indexes", "--field", "camera")
    assert completed.returncode == 0, completed.stderr
    assert "data.camera_1" in completed.stdout
    assert not (tmp_path / "data" / "db.json").exists()
    port = int((tmp_path / "data" / "db.port").read_text())
    assert not embedded_db.is_listening(port)


def test_a_command_run_from_another_folder_finds_the_images_serve_stored(tmp_path):
    """No DATA_DIRECTORY: `serve` (started in the project, as `make run`) and a command started
    elsewhere both use the project's `data/` and `uploads/`."""
    project = project_copy(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    served = Served(project, root=project, log_path=tmp_path / "serve.log")
    try:
        requests.post(f"{served.url}/images", files={"image": ("c.jpg", image_bytes())},
                      timeout=10)  # fmt: skip
        exported = subprocess.run(
            [sys.executable, str(project / "manage.py"), "export_images", "out.zip"],
            cwd=elsewhere,
            env=command_environment(QUIET, elsewhere, project),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        served.stop()
    assert exported.returncode == 0, exported.stderr
    assert "c.jpg" in zipfile.ZipFile(elsewhere / "out.zip").namelist()
    assert not (elsewhere / "data").exists() and not (elsewhere / "uploads").exists()


# --- who can reach it ------------------------------------------------------------------------
def listening_addresses(port: int) -> set[str]:
    """Local addresses listening on `port`, from /proc/net/tcp (hex, little-endian IPv4)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_with_auth_off_serve_listens_on_loopback_only_and_says_how_to_expose_it(tmp_path):
    served = Served(tmp_path, host=None)
    try:
        assert listening_addresses(served.port) == {"127.0.0.1"}
        first_lines = served.output.splitlines()[:3]
        assert any("listening on 127.0.0.1 only" in line and "APP_HOST=0.0.0.0" in line
                   for line in first_lines), first_lines  # fmt: skip
    finally:
        served.stop()


def test_app_host_exposes_it_with_a_warning(tmp_path):
    served = Served(tmp_path, {"APP_HOST": "0.0.0.0"}, host=None)
    try:
        assert listening_addresses(served.port) == {"0.0.0.0"}
        assert "anyone who can reach this port" in served.output.splitlines()[0]
    finally:
        served.stop()


def test_the_docker_image_listens_on_every_interface():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "APP_HOST=0.0.0.0" in dockerfile
