"""`scripts/smoke.py URL` against a served instance, with nothing but the service's requirements."""

from __future__ import annotations

import subprocess
import sys

import pytest

from testing.harness import REPO_ROOT

# Runs the script with `requests` unimportable: `make run` installs only requirements/base.txt.
WITHOUT_REQUESTS = (
    "import runpy, sys; sys.modules['requests'] = None; sys.argv[0] = sys.argv[1]; "
    "del sys.argv[1]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.mark.slow  # starts `manage.py serve`
def test_smoke_script_passes_against_a_served_instance(start_server):
    server = start_server()
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_REQUESTS,
            str(REPO_ROOT / "scripts" / "smoke.py"),
            server.url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert " 0 failed" in completed.stdout
