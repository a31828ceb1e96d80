"""Blocking work under gevent workers runs on native threads, a batch of it all at once."""

from __future__ import annotations

import subprocess
import sys
import time

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


# One item alone runs on a native thread too (it ran on the loop: a single fsync of a 90 MB
# upload held it for half a second).
ONE_ITEM = """
from gevent import monkey; monkey.patch_all()
native = monkey.get_original("threading", "get_ident")
from images.runtime.offload import run_each_off_loop
seen = []
run_each_off_loop(lambda item: seen.append(native()), [1])
print(seen != [native()])
"""

# A greenlet that computes for a second, calling cooperate() as it goes, lets the loop run its
# timers (and sockets) at least every few slices; the longest gap between two ticks of another
# greenlet is printed.
COOPERATING = """
from gevent import monkey; monkey.patch_all()
import time, gevent
from images.runtime.offload import cooperate
ticks = []

def tick():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.001)

def compute():
    end = time.monotonic() + 1
    while time.monotonic() < end:
        sum(range(2000))
        cooperate()

ticker = gevent.spawn(tick)
gevent.sleep(0.01)
gevent.spawn(compute).join()
gevent.sleep(0.01)
ticker.kill()
print(max(b - a for a, b in zip(ticks, ticks[1:])))
"""


def run_script(script: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return completed.stdout.strip()


def test_a_single_item_runs_on_a_native_thread_under_gevent():
    assert run_script(ONE_ITEM) == "True"


def test_cooperating_work_gives_the_loop_a_turn_every_slice():
    # Slices of 10 ms (about 0.02 s between ticks); with gevent.sleep(0) instead, 0.55 s; with
    # no turn at all, the whole second.
    assert float(run_script(COOPERATING)) < 0.2


def test_without_gevent_cooperate_does_nothing():
    from images.runtime.offload import cooperate

    started = time.monotonic()
    for _ in range(1000):
        cooperate()
    assert time.monotonic() - started < 0.5
