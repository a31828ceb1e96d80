"""The workloads: one `Scenario` per table row, grouped by the names `--scenarios` takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.payloads import MULTIPART_TYPE

# In the order they run: reads on the seeded collection first, writes after.
SCENARIO_GROUPS = (
    "list",
    "get",
    "download",
    "download-304",
    "patch-bulk",
    "upload",
    "export",
    "import",
)
LIST_QUERY = "/images?camera=cam07&limit=100"


@dataclass
class Scenario:
    group: str
    label: str
    method: str
    path: str
    concurrency: int
    expect_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # True/False: the runner creates/drops the index on data.camera first; None: either.
    camera_index: bool | None = None
    # A cap on requests per run for heavy requests (each one touches many documents or files).
    max_requests: int | None = None
    # A route that may not exist yet: the scenario is skipped when it answers 404.
    optional_route: bool = False
    # Paths sent in turn instead of `path` (which then only labels the row).
    paths: list[str] | None = None


@dataclass
class Fixtures:
    image_id: str
    etag: str
    upload_body: bytes
    import_body: bytes
    export_images: int


def build_scenarios(fixtures: Fixtures, groups: list[str]) -> list[Scenario]:
    image = f"/images/{fixtures.image_id}"
    multipart = {"Content-Type": MULTIPART_TYPE}
    upload = fixtures.upload_body
    rows = [
        Scenario("list", "list no index c=1", "GET", LIST_QUERY, 1, camera_index=False),
        Scenario("list", "list no index c=16", "GET", LIST_QUERY, 16, camera_index=False),
        Scenario("list", "list indexed c=1", "GET", LIST_QUERY, 1, camera_index=True),
        Scenario("list", "list indexed c=16", "GET", LIST_QUERY, 16, camera_index=True),
        Scenario("get", "get c=1", "GET", image, 1),
        Scenario("get", "get c=16", "GET", image, 16),
        Scenario("download", "download c=1", "GET", f"{image}/image", 1),
        Scenario("download", "download c=16", "GET", f"{image}/image", 16),
        Scenario(
            "download-304",
            "download-304 c=16",
            "GET",
            f"{image}/image",
            16,
            expect_status=304,
            headers={"If-None-Match": fixtures.etag},
        ),
        Scenario(
            "patch-bulk",
            "patch-bulk c=1 (camera=cam03)",
            "PATCH",
            "/images?camera=cam03",
            1,
            headers={"Content-Type": "application/json"},
            body=b'{"reviewed": true, "batch": "bench"}',
            camera_index=True,
            max_requests=300,
        ),
        Scenario("upload", "upload c=1", "POST", "/images", 1, headers=multipart, body=upload),
        Scenario("upload", "upload c=16", "POST", "/images", 16, headers=multipart, body=upload),
        Scenario(
            "export",
            f"export c=1 ({fixtures.export_images} images)",
            "GET",
            f"/export?camera=export&limit={fixtures.export_images}",
            1,
            max_requests=200,
            optional_route=True,
        ),
        Scenario(
            "import",
            "import c=1 (zip of 100 KB JPEGs)",
            "POST",
            "/import",
            1,
            headers=multipart,
            body=fixtures.import_body,
            max_requests=200,
            optional_route=True,
        ),
    ]
    return [row for row in rows if row.group in groups]
