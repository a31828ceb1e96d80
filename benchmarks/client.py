"""The load client: a separate process, asyncio + aiohttp, loopback only.

`python -m benchmarks.client SPEC.json` sends one kind of request at a fixed concurrency until
`max_requests` or `max_seconds` is reached, and prints one JSON object with what it measured.
A body may hold the `VARY_TOKEN` bytes: each request replaces them with a unique name (uploads
then create a new image per request). With `paths`, the requests go to each path in turn
instead of `path` (different images, say).

aiohttp rather than httpx: httpx spent about 2 ms of client CPU per request, so on a 2-core
machine the client, not the service, capped the small-response scenarios near 500 req/s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

VARY_TOKEN = b"@@VARY@@"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LoadSpec:
    base_url: str
    method: str
    path: str
    concurrency: int
    max_requests: int
    max_seconds: float
    expect_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body_path: str | None = None
    vary_prefix: str = ""
    warmup: int = 0
    paths: list[str] = field(default_factory=list)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    response_bytes: int = 0

    def record(self, spec: LoadSpec, status: int, body: bytes, seconds: float) -> None:
        self.latencies.append(seconds)
        self.response_bytes += len(body)
        if status != spec.expect_status:
            self.errors += 1
            if not self.first_error:
                self.first_error = f"{status} {body[:200].decode(errors='replace')}"


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


class LoadClient:
    def __init__(self, spec: LoadSpec) -> None:
        if urlsplit(spec.base_url).hostname not in LOOPBACK_HOSTS:
            raise SystemExit(f"the load client only talks to loopback, not {spec.base_url}")
        self.spec = spec
        self.body = Path(spec.body_path).read_bytes() if spec.body_path else None
        self.sequence = itertools.count()
        self.urls = [spec.base_url + path for path in spec.paths or [spec.path]]

    def body_for(self, index: int) -> bytes | None:
        if self.body is None or VARY_TOKEN not in self.body:
            return self.body
        return self.body.replace(VARY_TOKEN, f"{self.spec.vary_prefix}{index:07d}".encode())

    async def send(self, client: aiohttp.ClientSession, tally: Tally) -> None:
        index = next(self.sequence)
        started = time.perf_counter()
        url = self.urls[index % len(self.urls)]
        async with client.request(
            self.spec.method, url, headers=self.spec.headers, data=self.body_for(index)
        ) as response:
            body = await response.read()
        tally.record(self.spec, response.status, body, time.perf_counter() - started)

    async def loop(self, client: aiohttp.ClientSession, tally: Tally, deadline: float) -> None:
        while len(tally.latencies) < self.spec.max_requests and time.perf_counter() < deadline:
            await self.send(client, tally)

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        connector = aiohttp.TCPConnector(limit=spec.concurrency)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
        ) as client:
            warmup = Tally()
            await asyncio.gather(*(self.send(client, warmup) for _ in range(spec.warmup)))
            cpu_before, started = os.times(), time.perf_counter()
            tally = Tally()
            deadline = started + spec.max_seconds
            await asyncio.gather(
                *(self.loop(client, tally, deadline) for _ in range(spec.concurrency))
            )
            elapsed = time.perf_counter() - started
            cpu_after = os.times()
        return self.summary(tally, warmup, elapsed, cpu_after, cpu_before)

    def summary(self, tally: Tally, warmup: Tally, elapsed: float, after, before) -> dict:
        latencies = sorted(tally.latencies)
        client_cpu = (after.user - before.user) + (after.system - before.system)
        return {
            "requests": len(latencies),
            "total_requests": len(latencies) + len(warmup.latencies),
            "errors": tally.errors + warmup.errors,
            "first_error": tally.first_error or warmup.first_error,
            "seconds": elapsed,
            "throughput": len(latencies) / elapsed if elapsed else 0.0,
            "p50_ms": percentile(latencies, 0.50) * 1000,
            "p95_ms": percentile(latencies, 0.95) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "response_bytes": tally.response_bytes,
            "client_cpu_ms": client_cpu * 1000 / max(1, len(latencies)),
        }


def main() -> None:
    spec = LoadSpec(**json.loads(Path(sys.argv[1]).read_text()))
    result = asyncio.run(LoadClient(spec).run())
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
