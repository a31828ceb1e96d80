"""The original Node service, built and started by `../shared/tools/original.sh` (not part of
the repository: a clone without `../shared` cannot run the side-by-side benchmark)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from benchmarks.service import REPO_ROOT, BenchService
from testing.harness import DatabaseServer

TOOL = Path("tools") / "original.sh"


class OriginalUnavailable(RuntimeError):
    """The original cannot be built or started here; the message says why."""


def find_tool() -> Path:
    """`original.sh` from $IMAGESTORE_SHARED when set, else from a `shared` directory beside
    the repository or beside one of its parents (a worktree sits deeper than a clone)."""
    configured = os.environ.get("IMAGESTORE_SHARED", "").strip()
    if configured:
        candidates = [Path(configured)]
    else:
        candidates = [parent / "shared" for parent in REPO_ROOT.parents]
    for shared in candidates:
        if (shared / TOOL).is_file():
            return shared / TOOL
    looked = ", ".join(str(c / TOOL) for c in candidates[:3])
    raise OriginalUnavailable(
        f"the original's tool is not there (looked for {looked}); the side-by-side benchmark "
        "needs ../shared (set IMAGESTORE_SHARED to the directory holding tools/original.sh)"
    )


def build(tool: Path) -> str:
    """Builds the original once (npm ci + tsc; the tool skips a build that is up to date)."""
    completed = subprocess.run(["bash", str(tool), "build"], capture_output=True, text=True)
    if completed.returncode != 0:
        raise OriginalUnavailable(
            f"`{tool} build` failed:\n{(completed.stdout + completed.stderr)[-2000:]}"
        )
    return completed.stdout.strip()


class OriginalService(BenchService):
    """The original on a free port with the same environment variables as imagestore."""

    ready_path = "/"

    def __init__(self, workdir: Path, tool: Path, database: DatabaseServer, database_name: str):
        super().__init__(workdir, database=database, database_name=database_name, name="original")
        self.tool = tool

    def environment(self) -> dict[str, str]:
        environment = super().environment()
        environment["TZ"] = "UTC"
        # The original reads the legacy name first: it must not point elsewhere.
        environment.pop("MONGODB_URL", None)
        return environment

    def command(self) -> list[str]:
        # `serve` execs node: the process started is the service itself.
        return ["bash", str(self.tool), "serve"]
