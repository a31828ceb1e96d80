"""The benchmark runs from one command and prints its table (no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.scenarios import SCENARIO_GROUPS
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow  # runs the benchmarks, each starting `serve`


def shell_environment(**extra: str) -> dict[str, str]:
    """The environment of a person at a shell: pytest-django's settings module is not in it
    (a benchmark that needed Django's settings would work here and fail there)."""
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    return {**env, **extra}


def test_quick_benchmark_prints_a_row_for_every_scenario():
    completed = run_benchmark("--quick", "--workers", "1", "--threads", "2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    table = completed.stdout.split("scenario ", 1)[1]
    header, _, *rows = table.splitlines()
    assert "req/s" in header and "svc CPU ms/req" in header and "DB peak MiB" in header
    labels = {row.split("|")[0].strip().split(" ")[0] for row in rows if "|" in row}
    assert labels >= set(SCENARIO_GROUPS)
    assert "idle after warm-up: service RSS" in completed.stdout
    assert "errors" in header
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")]
        if len(cells) > 5:
            assert cells[5] == "0", row


def run_benchmark(*arguments: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env or shell_environment(),
    )


def test_compare_without_the_original_says_why_and_fails(tmp_path):
    env = shell_environment(IMAGESTORE_SHARED=str(tmp_path))
    completed = run_benchmark("--compare", "original", "--quick", env=env)
    assert completed.returncode != 0
    assert "cannot compare with original" in completed.stdout
    assert str(tmp_path / "tools" / "original.sh") in completed.stdout


def test_compare_with_another_checkout_prints_both_sides_and_ratios():
    completed = run_benchmark("--compare", str(REPO_ROOT), "--quick", "--scenarios", "get")
    assert completed.returncode == 0, completed.stderr[-3000:]
    table = completed.stdout.split("| scenario | before | imagestore | imagestore / before |")[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    labels = [row.split("|")[1].strip() for row in rows]
    assert labels == ["get one document c=1", "get one document c=16", "idle (after warm-up)"]
    assert all("x req/s" in row and "x CPU" in row for row in rows[:2])
    assert "errors" not in table
    assert "load average" in completed.stdout


def test_growth_prints_every_request_at_every_size():
    completed = run_benchmark("--growth", "--quick", "--sizes", "100,300")
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [line for line in completed.stdout.split("| documents |")[1].splitlines()[2:] if line]
    cells = {tuple(cell.strip() for cell in row.split("|")[1:3]) for row in rows if "|" in row}
    for size in ("100", "300"):
        for request in (
            "list no index",
            "list indexed",
            "get one document",
            "similar d=10, random images",
            "similar d=12, random images",
            "similar blank frame, limit=100",
            "upload",
            "/fields",
        ):
            assert (size, request) in cells
        assert f"{int(size):,}: similar d=12 (median of" in completed.stdout
