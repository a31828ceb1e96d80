"""Blocking work under gevent workers runs on native threads, a batch of it all at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each call waits (up to 20 s, on native primitives) until all four have started: it returns
# True only when the four run at the same time.
ALL_AT_ONCE = """
from gevent import monkey; monkey.patch_all()
native_lock = monkey.get_original("_thread", "allocate_lock")()
native_sleep = monkey.get_original("time", "sleep")
import time
from images.runtime.offload import run_each_off_loop
started, seen = [], []

def wait_for_the_others(item):
    with native_lock:
        started.append(item)
    deadline = time.monotonic() + 20
    while len(started) < 4 and time.monotonic() < deadline:
        native_sleep(0.01)
    seen.append(len(started) == 4)

run_each_off_loop(wait_for_the_others, [1, 2, 3, 4])
print(sorted(started) == [1, 2, 3, 4] and all(seen))
"""


def test_a_batch_runs_at_once_on_native_threads_under_gevent():
    completed = subprocess.run(
        [sys.executable, "-c", ALL_AT_ONCE], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "True", completed.stderr


def test_without_gevent_a_batch_runs_in_order_and_raises_the_first_error():
    from images.runtime.offload import run_each_off_loop

    done: list[int] = []

    def step(item: int) -> None:
        if item == 2:
            raise OSError("disk")
        done.append(item)

    with pytest.raises(OSError, match="disk"):
        run_each_off_loop(step, [1, 2, 3])
    assert done == [1]
