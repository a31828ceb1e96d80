"""Slow clients against a running service, and what a fresh client sees meanwhile.

`python -m benchmarks.slow_clients http://127.0.0.1:PORT` holds connections that trickle a
header line or a request body (one byte per interval, reconnecting whenever the server drops
them, as a persistent attacker would) and idle keep-alive connections (one request answered,
then silence), while a fresh client sends `GET /health/live` and `GET /images?limit=1` on new
connections. It then stops the slow clients and probes again: the service must recover.
Loopback only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
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
    load_average: str


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class SlowClients:
    def __init__(self, base_url: str, load: SlowLoad) -> None:
        parts = urlsplit(base_url)
        if parts.hostname not in LOOPBACK_HOSTS:
            raise SystemExit(f"slow clients only talk to loopback, not {base_url}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.load = load
        self.stop = asyncio.Event()
        self.open_connections = 0
        self.reconnects = 0

    # --- the slow side ----------------------------------------------------------------------
    async def hold(self, opening: bytes, trickle: bytes | None) -> None:
        """One slow connection, reopened whenever the server closes it, until `stop`."""
        while not self.stop.is_set():
            writer = None
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
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
                await self.pause(0.2)

    async def trickle(self, reader, writer, byte: bytes) -> None:
        while not self.stop.is_set():
            if reader.at_eof():
                return
            writer.write(byte)
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(65536), self.load.trickle_interval) == b"":
                    return  # answered or dropped by the server: reconnect

    async def idle_after_answer(self, reader) -> None:
        """Read the answer, then keep the connection open and silent."""
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.load.probe_timeout)
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
        return [asyncio.create_task(self.hold(opening, trickle)) for opening, trickle in specs]

    # --- the fresh client -------------------------------------------------------------------
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
        """One client, one request at a time, each on a new connection."""
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

    async def run(self) -> SlowReport:
        tasks = self.slow_tasks()
        await asyncio.sleep(min(2.0, self.load.seconds / 4))  # let them all connect
        held = self.open_connections
        during = await self.probe_for(self.load.seconds)
        self.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        after = await self.probe_for(self.load.recovery_seconds)
        return SlowReport(during, after, held, self.reconnects, load_average())


def run(base_url: str, load: SlowLoad) -> SlowReport:
    return asyncio.run(SlowClients(base_url, load).run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("--seconds", type=float, default=SlowLoad.seconds)
    parser.add_argument("--tricklers", type=int, default=64, help="half headers, half bodies")
    parser.add_argument("--idle", type=int, default=SlowLoad.idle_keepalive)
    arguments = parser.parse_args(argv)
    half = arguments.tricklers // 2
    load = SlowLoad(half, arguments.tricklers - half, arguments.idle, arguments.seconds)
    print(json.dumps(asdict(run(arguments.base_url, load))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
