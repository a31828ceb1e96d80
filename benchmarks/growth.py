"""`python -m benchmarks.run --growth`: how the cost of a request grows with the collection.

One imagestore, one mongod; the collection is seeded straight through PyMongo up to each
size in turn (2,000, 20,000, 200,000 and 1,000,000 documents by default), and at each size the same requests
run at c=1: a list of one camera (1 in 20 documents match) without and with an index on
`data.camera`, one document, an upload, and `/fields`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks import payloads
from benchmarks.processes import load_average
from benchmarks.report import Row
from benchmarks.scenarios import Scenario
from benchmarks.service import DATABASE, BenchService

SIZES = (2_000, 20_000, 200_000, 1_000_000)
LIST_QUERY = "/images?camera=cam07&limit=100"
CAMERA_INDEX = "data.camera_1"


@dataclass
class GrowthPlan:
    sizes: tuple[int, ...] = SIZES
    repeat: int = 2
    seconds: float = 3.0
    max_requests: int = 2_000


def plan_for(arguments: argparse.Namespace) -> GrowthPlan:
    plan = GrowthPlan()
    if arguments.quick:
        plan = GrowthPlan(sizes=(200, 2_000), repeat=1, seconds=0.5, max_requests=5)
    if arguments.sizes:
        plan.sizes = tuple(int(size) for size in arguments.sizes.split(","))
    plan.repeat = arguments.repeat or plan.repeat
    plan.seconds = arguments.seconds or plan.seconds
    plan.max_requests = arguments.requests or plan.max_requests
    return plan


def scenarios(image_id: str, upload_body: bytes) -> list[Scenario]:
    multipart = {"Content-Type": payloads.MULTIPART_TYPE}
    return [
        Scenario("list", "list no index", "GET", LIST_QUERY, 1, camera_index=False),
        Scenario("list", "list indexed", "GET", LIST_QUERY, 1, camera_index=True),
        Scenario("get", "get one document", "GET", f"/images/{image_id}", 1),
        Scenario("upload", "upload", "POST", "/images", 1, headers=multipart, body=upload_body),
        Scenario("fields", "/fields", "GET", "/fields", 1),
    ]


def grow_to(service: BenchService, size: int, seeded: int) -> float:
    """Seeds documents `seeded`..`size` (numbered on, so files stay unique); returns seconds."""
    started = time.perf_counter()
    with service.mongo() as client:
        collection = client[DATABASE]["images"]
        for batch in payloads.seed_documents(size - seeded, start=seeded):
            collection.insert_many(batch, ordered=False)
    return time.perf_counter() - started


def set_camera_index(service: BenchService, wanted: bool | None) -> None:
    """Made through PyMongo without a time limit (at 200,000 documents it takes a while)."""
    if wanted is None:
        return
    with service.mongo() as client:
        collection = client[DATABASE]["images"]
        present = CAMERA_INDEX in collection.index_information()
        if wanted and not present:
            collection.create_index("data.camera")
        elif present and not wanted:
            collection.drop_index(CAMERA_INDEX)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("growth (--growth)")
    group.add_argument(
        "--sizes", help="comma-separated collection sizes (default 2000,20000,200000,1000000)"
    )


def line(size: int, row: Row) -> str:
    throughput = row.median("throughput")
    rate = f"{throughput:,.1f}" if throughput >= 1 else f"{throughput:.3f}"
    return (
        f"| {size:,} | {row.label} | {rate} | {row.median('p50_ms'):.1f} "
        f"| {row.median('service_cpu_ms'):.2f} | {row.median('database_cpu_ms'):.2f} |"
    )


def run(arguments: argparse.Namespace, runner_class) -> int:
    plan = plan_for(arguments)
    print(
        f"growth: sizes {', '.join(f'{s:,}' for s in plan.sizes)}; {plan.repeat} run(s) per "
        f"request, each up to {plan.max_requests} requests or {plan.seconds:g} s, c=1; "
        f"load {load_average()}",
        flush=True,
    )
    lines = [
        "| documents | request | req/s | p50 ms | svc CPU ms/req | DB CPU ms/req |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="imagestore-growth-") as temporary:
        workdir = Path(temporary)
        service = BenchService(workdir)
        try:
            service.start()
            jpeg = payloads.jpeg_of_about()
            with httpx.Client(base_url=service.url, timeout=120) as client:
                response = client.post(
                    "/images", files={"image": ("growth.jpg", jpeg, "image/jpeg")}
                )
                image_id = response.raise_for_status().json()["_id"]
            runner = runner_class(service, plan, workdir)
            seeded = 0
            for size in plan.sizes:
                seconds = grow_to(service, size, seeded)
                seeded = size
                print(f"seeded to {size:,} documents in {seconds:.1f} s", flush=True)
                for scenario in scenarios(image_id, payloads.upload_body(jpeg)):
                    set_camera_index(service, scenario.camera_index)
                    row = Row(scenario.label)
                    for run in range(plan.repeat):
                        row.runs.append(runner.run_scenario(scenario, f"g{size}-{run}-"))
                    lines.append(line(size, row))
                    print(f"  {lines[-1]} load {load_average()}", flush=True)
        finally:
            service.stop()
    print()
    print("\n".join(lines))
    print()
    print(f"load average (1/5/15 min) at the end: {load_average()}")
    return 0
