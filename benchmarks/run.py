"""`python -m benchmarks.run`: start a fresh service + database, seed, load, print the table.

See benchmarks/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks import compare, growth, payloads
from benchmarks.processes import load_average, rss_bytes
from benchmarks.report import Row, RunFigures, mib, table
from benchmarks.scenarios import SCENARIO_GROUPS, Fixtures, Scenario, build_scenarios
from benchmarks.service import DATABASE, REPO_ROOT, BenchService, ServerOptions

CAMERA_INDEX = "data.camera_1"


@dataclass
class Plan:
    """How much to do: the full run, or `--quick` (a smoke run with a few requests)."""

    seed_documents: int
    repeat: int
    seconds: float
    max_requests: int
    export_images: int
    import_images: int


FULL = Plan(seed_documents=20_000, repeat=3, seconds=4.0, max_requests=20_000, export_images=50,
            import_images=20)  # fmt: skip
QUICK = Plan(seed_documents=500, repeat=1, seconds=1.0, max_requests=8, export_images=3,
             import_images=2)  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIO_GROUPS),
        help=f"comma-separated, of: {', '.join(SCENARIO_GROUPS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: serve's)")
    parser.add_argument("--threads", type=int, help="threads per gthread worker (gthread only)")
    parser.add_argument(
        "--worker-class", help="gunicorn worker class: gevent (default), gthread or sync"
    )
    parser.add_argument("--repeat", type=int, help="runs per scenario (medians are printed)")
    parser.add_argument("--seconds", type=float, help="time limit of one run")
    parser.add_argument("--requests", type=int, help="request limit of one run")
    parser.add_argument(
        "--compare",
        metavar="original|PATH",
        help="run the original (needs ../shared/tools/original.sh), or imagestore at another "
        "checkout PATH, side by side with this one",
    )
    parser.add_argument("--growth", action="store_true", help="cost of requests by collection size")
    compare.add_arguments(parser)
    growth.add_arguments(parser)
    arguments = parser.parse_args(argv)
    groups = [name.strip() for name in arguments.scenarios.split(",") if name.strip()]
    unknown = sorted(set(groups) - set(SCENARIO_GROUPS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIO_GROUPS)}")
    arguments.groups = groups
    return arguments


def plan_for(arguments: argparse.Namespace) -> Plan:
    plan = QUICK if arguments.quick else FULL
    return Plan(
        seed_documents=plan.seed_documents,
        repeat=arguments.repeat or plan.repeat,
        seconds=arguments.seconds or plan.seconds,
        max_requests=arguments.requests or plan.max_requests,
        export_images=plan.export_images,
        import_images=plan.import_images,
    )


# --- preparing the data --------------------------------------------------------------------
def seed(service: BenchService, count: int) -> None:
    """The list scenario's documents, written straight to the database (no files)."""
    with service.mongo() as client:
        collection = client[DATABASE]["images"]
        for batch in payloads.seed_documents(count):
            collection.insert_many(batch, ordered=False)


def post_image(client: httpx.Client, jpeg: bytes, name: str, **fields: str) -> dict:
    response = client.post("/images", files={"image": (name, jpeg, "image/jpeg")}, data=fields)
    response.raise_for_status()
    return response.json()


def prepare(service: BenchService, plan: Plan) -> Fixtures:
    seed(service, plan.seed_documents)
    jpeg = payloads.jpeg_of_about()
    with httpx.Client(base_url=service.url, timeout=60) as client:
        image = post_image(client, jpeg, "download.jpg", camera="download")
        etag = client.head(f"/images/{image['_id']}/image").headers["ETag"]
        for index in range(plan.export_images):
            post_image(client, jpeg, f"export/{index:04d}.jpg", camera="export")
    return Fixtures(
        image_id=image["_id"],
        etag=etag,
        upload_body=payloads.upload_body(jpeg),
        import_body=payloads.import_body(jpeg, plan.import_images),
        export_images=plan.export_images,
    )


def warm_up(service: BenchService, fixtures: Fixtures) -> None:
    """Touch every route in every worker, so idle memory is that of a worker that has served."""
    paths = ["/", "/images?limit=5", f"/images/{fixtures.image_id}", "/fields"]
    service.warm_up([*paths, f"/images/{fixtures.image_id}/image"])


def idle_memory(service: BenchService) -> str:
    time.sleep(1.0)
    group = service.service_group()
    each = ", ".join(f"{mib(rss_bytes(pid)):.0f}" for pid in group.pids)
    return (
        f"service RSS {mib(group.rss_bytes()):.0f} MiB (master + workers: {each}), "
        f"PSS {mib(group.pss_bytes()):.0f} MiB; database RSS "
        f"{mib(service.database_group().rss_bytes()):.0f} MiB"
    )


# --- running ---------------------------------------------------------------------------------
class Runner:
    def __init__(self, service: BenchService, plan: Plan, workdir: Path) -> None:
        self.service = service
        self.plan = plan
        self.workdir = workdir
        self.camera_index: bool | None = None

    def set_camera_index(self, wanted: bool | None) -> None:
        if wanted is None or wanted == self.camera_index:
            return
        if wanted:
            self.service.manage("ensure_indexes", "--field", "camera")
        else:
            with self.service.mongo() as client:
                collection = client[DATABASE]["images"]
                if CAMERA_INDEX in collection.index_information():
                    collection.drop_index(CAMERA_INDEX)
        self.camera_index = wanted

    def route_missing(self, scenario: Scenario) -> bool:
        probe = httpx.request(scenario.method, f"{self.service.url}{scenario.path}", timeout=60)
        return probe.status_code == 404

    def run_row(self, number: int, scenario: Scenario) -> Row:
        row = Row(scenario.label)
        if scenario.optional_route and self.route_missing(scenario):
            row.note = f"skipped: {scenario.method} {scenario.path.split('?')[0]} answers 404"
            print(f"  {scenario.label}: {row.note}", flush=True)
            return row
        self.set_camera_index(scenario.camera_index)
        for run in range(self.plan.repeat):
            row.runs.append(self.run_scenario(scenario, f"{number}-{run}-"))
            figures = row.runs[-1]
            print(
                f"  {scenario.label} run {run + 1}: {figures.throughput:.0f} req/s, "
                f"p95 {figures.p95_ms:.1f} ms, svc CPU {figures.service_cpu_ms:.2f} ms/req, "
                f"load {load_average()}",
                flush=True,
            )
        return row

    def run_scenario(self, scenario: Scenario, prefix: str) -> RunFigures:
        """One run; `prefix` makes the names of uploaded files unique to it."""
        body_path = None
        if scenario.body is not None:
            body_path = self.workdir / "body.bin"
            body_path.write_bytes(scenario.body)
        return self.run_once(scenario, body_path, prefix)

    def run_once(self, scenario: Scenario, body_path: Path | None, prefix: str) -> RunFigures:
        limit = min(self.plan.max_requests, scenario.max_requests or self.plan.max_requests)
        spec = {
            "base_url": self.service.url,
            "method": scenario.method,
            "path": scenario.path,
            "concurrency": scenario.concurrency,
            "max_requests": limit,
            "max_seconds": self.plan.seconds,
            "expect_status": scenario.expect_status,
            "headers": scenario.headers,
            "body_path": str(body_path) if body_path else None,
            "vary_prefix": prefix,
            "warmup": scenario.concurrency,
            "paths": scenario.paths or [],
        }
        spec_path = self.workdir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        service, database = self.service.service_group(), self.service.database_group()
        service.reset_peak_rss()
        database.reset_peak_rss()
        service_before, database_before = service.cpu_seconds(), database.cpu_seconds()
        result = self.load(spec_path)
        service_cpu = service.cpu_seconds() - service_before
        database_cpu = database.cpu_seconds() - database_before
        count = max(1, result["total_requests"])
        return RunFigures(
            throughput=result["throughput"],
            p50_ms=result["p50_ms"],
            p95_ms=result["p95_ms"],
            p99_ms=result["p99_ms"],
            errors=result["errors"],
            service_cpu_ms=service_cpu * 1000 / count,
            database_cpu_ms=database_cpu * 1000 / count,
            client_cpu_ms=result["client_cpu_ms"],
            service_peak_mib=mib(service.peak_rss_bytes()),
            database_peak_mib=mib(database.peak_rss_bytes()),
            first_error=result["first_error"],
        )

    def load(self, spec_path: Path) -> dict:
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.client", str(spec_path)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"the load client failed:\n{completed.stderr[-3000:]}")
        return json.loads(completed.stdout)


def describe(arguments: argparse.Namespace, plan: Plan) -> str:
    server = (
        f"workers={arguments.workers or 'default'} threads={arguments.threads or 'default'} "
        f"worker-class={arguments.worker_class or 'default'}"
    )
    return (
        f"imagestore benchmark: {server}; {plan.repeat} run(s) per scenario, each up to "
        f"{plan.max_requests} requests or {plan.seconds:g} s; {plan.seed_documents} seeded "
        f"documents; {os.cpu_count()} CPUs"
    )


def main(argv: list[str] | None = None) -> int:
    arguments = parse_args(argv)
    if arguments.compare:
        return compare.run(arguments, Runner)
    if arguments.growth:
        return growth.run(arguments, Runner)
    plan = plan_for(arguments)
    print(describe(arguments, plan), flush=True)
    options = ServerOptions(arguments.workers, arguments.threads, arguments.worker_class)
    with tempfile.TemporaryDirectory(prefix="imagestore-bench-") as temporary:
        workdir = Path(temporary)
        service = BenchService(workdir, options)
        try:
            service.start()
            fixtures = prepare(service, plan)
            warm_up(service, fixtures)
            idle_before = idle_memory(service)
            load_before = load_average()
            runner = Runner(service, plan, workdir)
            rows = [
                runner.run_row(number, scenario)
                for number, scenario in enumerate(build_scenarios(fixtures, arguments.groups))
            ]
            idle_after = idle_memory(service)
        finally:
            service.stop()
    print()
    print(table(rows))
    print()
    print(f"idle after warm-up: {idle_before}")
    print(f"idle after the runs: {idle_after}")
    print(f"load average (1/5/15 min): before {load_before}, after {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
