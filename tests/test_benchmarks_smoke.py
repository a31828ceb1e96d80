"""The benchmark runs from one command and prints its table (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.scenarios import SCENARIO_GROUPS
from tests.helpers import REPO_ROOT


def test_quick_benchmark_prints_a_row_for_every_scenario():
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--workers", "1", "--threads", "2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
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
