"""Slow clients against a running service, and what a fresh client sees meanwhile.

`python -m benchmarks.slow_clients http://127.0.0.1:PORT` holds connections that trickle a
header line or a request body (one byte per interval, reconnecting whenever the server drops
them, as a persistent attacker would) and idle keep-alive connections (one request answered,
then silence), while a fresh client sends `GET /health/live` and `GET /images?limit=1` on new
connections. It then stops the slow clients and probes again: the service must recover.

The slow connections come from 127.0.0.2, 127.0.0.3... (`--addresses`; Linux routes all of
127/8 to loopback), the fresh client from 127.0.0.1: to the service they are other clients,
each under its own HTTP_MAX_CONNECTIONS_PER_CLIENT. `--attack` reproduces the red team's
finding instead: 2,100 connections from one address, each trickling a request body one byte
every 25 s, for 60 s. `answers` counts what the slow connections were answered (408: body too
slow, 429: over the connection cap). Loopback only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import urlsplit

from benchmarks.processes import load_average

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
PROBE_PATHS = ("/health/live", "/images?limit=1")


@dataclass
class SlowLoad:
    header_tricklers: int = 32
    body_tricklers: int = 32
    idle_keepalive: int = 256
    seconds: float = 10.0
    trickle_interval: float = 1.0
    probe_interval: float = 0.05
    probe_timeout: float = 5.0
    recovery_seconds: float = 3.0
    addresses: int = 8  # slow connections come from this many loopback addresses
    reconnect_pause: float = 0.2


# The red team's finding: one address, 2,100 request bodies at one byte every 25 s.
ATTACK = SlowLoad(
    header_tricklers=0,
    body_tricklers=2100,
    idle_keepalive=0,
    seconds=60.0,
    trickle_interval=25.0,
    addresses=1,
    reconnect_pause=1.0,
)


@dataclass
class ProbeFigures:
    count: int = 0
    answered: int = 0
    p50_s: float = 0.0
    p95_s: float = 0.0
    max_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass
class SlowReport:
    during: ProbeFigures
    after: ProbeFigures
    slow_connections: int
    reconnects: int
    answers: dict[str, int]
    load_average: str


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def loopback_address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    if parts.hostname not in LOOPBACK_HOSTS:
        raise SystemExit(f"slow clients only talk to loopback, not {base_url}")
    return parts.hostname, parts.port or 80


class SlowClients:
    """The slow side, in a process of its own: its event loop, busy with thousands of sockets,
    would otherwise delay the fresh client's and count as the service's latency."""

    def __init__(self, base_url: str, load: SlowLoad) -> None:
        self.host, self.port = loopback_address(base_url)
        self.load = load
        self.stop = asyncio.Event()
        self.open_connections = 0
        self.reconnects = 0
        self.answers: dict[str, int] = {}

    def source(self, index: int) -> tuple[str, int] | None:
        """The local address of slow connection `index`: 127.0.0.2 onwards (IPv4 loopback)."""
        if self.host == "::1":
            return None
        return (f"127.0.0.{2 + index % max(1, min(self.load.addresses, 250))}", 0)

    def note_answer(self, data: bytes) -> None:
        if data.startswith(b"HTTP/1.1 "):
            status = data[9:12].decode("latin-1")
            self.answers[status] = self.answers.get(status, 0) + 1

    async def hold(self, opening: bytes, trickle: bytes | None, index: int) -> None:
        """One slow connection, reopened whenever the server closes it, until `stop`."""
        while not self.stop.is_set():
            writer = None
            try:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, local_addr=self.source(index)
                )
                self.open_connections += 1
                writer.write(opening)
                await writer.drain()
                if trickle is None:
                    await self.idle_after_answer(reader)
                else:
                    await self.trickle(reader, writer, trickle)
            except OSError:
                pass
            finally:
                if writer is not None:
                    self.open_connections -= 1
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
            if not self.stop.is_set():
                self.reconnects += 1
                await self.pause(self.load.reconnect_pause)

    async def trickle(self, reader, writer, byte: bytes) -> None:
        while not self.stop.is_set():
            if reader.at_eof():
                return
            writer.write(byte)
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(reader.read(65536), self.load.trickle_interval)
                if data == b"":
                    return  # dropped by the server: reconnect
                self.note_answer(data)

    async def idle_after_answer(self, reader) -> None:
        """Read the answer, then keep the connection open and silent."""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.load.probe_timeout)
        self.note_answer(head)
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(65536), 1.0) == b"":
                    return

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    def slow_tasks(self) -> list[asyncio.Task]:
        host = f"Host: {self.host}:{self.port}\r\n".encode()
        header = b"GET /images HTTP/1.1\r\n" + host + b"X-Slow: "
        body = (
            b"POST /images HTTP/1.1\r\n" + host + b"Content-Type: multipart/form-data; "
            b"boundary=slow\r\nContent-Length: 1000000\r\n\r\n--slow\r\n"
        )
        idle = b"GET /health/live HTTP/1.1\r\n" + host + b"\r\n"
        load = self.load
        specs = [(header, b"a")] * load.header_tricklers + [(body, b"a")] * load.body_tricklers
        specs += [(idle, None)] * load.idle_keepalive
        return [
            asyncio.create_task(self.hold(opening, trickle, index))
            for index, (opening, trickle) in enumerate(specs)
        ]

    async def hold_until(self, stop, events) -> None:
        """Connect them all, say how many are open, hold them until `stop` (a process event),
        then say how often they reconnected and what they were answered."""
        tasks = self.slow_tasks()
        await asyncio.sleep(min(2.0, self.load.seconds / 4))  # let them all connect
        events.put(self.open_connections)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        self.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        events.put((self.reconnects, dict(sorted(self.answers.items()))))


def hold_slow_clients(base_url: str, load: SlowLoad, stop, events) -> None:
    """The slow side's process."""
    asyncio.run(SlowClients(base_url, load).hold_until(stop, events))


class FreshClient:
    """One client, one request at a time, each on a new connection (from 127.0.0.1)."""

    def __init__(self, base_url: str, load: SlowLoad) -> None:
        self.host, self.port = loopback_address(base_url)
        self.load = load

    async def probe_once(self, path: str) -> tuple[float, str]:
        started = time.perf_counter()
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n"
        writer = None
        try:
            async with asyncio.timeout(self.load.probe_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(request.encode())
                await writer.drain()
                answer = await reader.read()
            status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "none"
        except TimeoutError:
            status = "timeout"
        except OSError as error:
            status = type(error).__name__
        finally:
            if writer is not None:
                writer.close()
        return time.perf_counter() - started, status

    async def probe_for(self, seconds: float) -> ProbeFigures:
        figures, latencies = ProbeFigures(), []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for path in PROBE_PATHS:
                latency, status = await self.probe_once(path)
                figures.count += 1
                key = f"{path} {status}"
                figures.statuses[key] = figures.statuses.get(key, 0) + 1
                figures.answered += status == "200"
                latencies.append(latency)
            await asyncio.sleep(self.load.probe_interval)
        figures.p50_s, figures.p95_s = percentile(latencies, 0.5), percentile(latencies, 0.95)
        figures.max_s = max(latencies, default=0.0)
        return figures


def run(base_url: str, load: SlowLoad) -> SlowReport:
    """Slow clients in a child process while a fresh client probes from this one; then the
    fresh client alone, to see the service recover."""
    fresh = FreshClient(base_url, load)
    context = multiprocessing.get_context("spawn")
    stop, events = context.Event(), context.Queue()
    slow = context.Process(
        target=hold_slow_clients, args=(base_url, load, stop, events), daemon=True
    )
    slow.start()
    try:
        held = events.get(timeout=60)
        during = asyncio.run(fresh.probe_for(load.seconds))
        stop.set()
        reconnects, answers = events.get(timeout=60)
    finally:
        stop.set()
        slow.join(30)
        if slow.is_alive():
            slow.kill()
    after = asyncio.run(fresh.probe_for(load.recovery_seconds))
    return SlowReport(during, after, held, reconnects, answers, load_average())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("--seconds", type=float, default=SlowLoad.seconds)
    parser.add_argument("--tricklers", type=int, default=64, help="half headers, half bodies")
    parser.add_argument("--idle", type=int, default=SlowLoad.idle_keepalive)
    parser.add_argument("--addresses", type=int, default=SlowLoad.addresses)
    parser.add_argument(
        "--attack",
        action="store_true",
        help="2,100 bodies at a byte every 25 s from one address, for 60 s (--seconds changes it)",
    )
    arguments = parser.parse_args(argv)
    if arguments.attack:
        seconds = arguments.seconds if "--seconds" in (argv or sys.argv) else ATTACK.seconds
        load = replace(ATTACK, seconds=seconds)
    else:
        half = arguments.tricklers // 2
        load = SlowLoad(half, arguments.tricklers - half, arguments.idle, arguments.seconds)
        load.addresses = arguments.addresses
    print(json.dumps(asdict(run(arguments.base_url, load))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
