"""`requirements/base.txt` brings every distribution the served service needs: the serving stack
is imported with every module of the other installed distributions hidden, as on a clean clone
after `make run` (a module only the dev requirements brought, as `packaging` once was for
gunicorn's gevent worker, crashed `make run` while every test passed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement

from tests.helpers import REPO_ROOT

# What `manage.py serve` loads in a worker, with the modules in HIDDEN made unimportable.
SERVED = """
import importlib.machinery, json, os, sys
HIDDEN = set(json.loads(sys.argv[1]))

class Hidden(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hidden)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagestore.settings")
from images.runtime.serving.cooperative import patch_for_serve
patch_for_serve([])
import django
django.setup()
import gunicorn.app.base, gunicorn.workers.ggevent
import imagestore.urls, imagestore.wsgi
import images.api.auth.tokens, images.runtime.serving.server
"""


def base_requirements() -> list[Requirement]:
    lines = (REPO_ROOT / "requirements" / "base.txt").read_text().splitlines()
    wanted = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return [r for r in wanted if r.marker is None or r.marker.evaluate()]


def installed_by(requirements: list[Requirement]) -> set[str]:
    """The distributions these requirements install: them and what they declare, in turn."""
    seen: set[str] = set()
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        name = normal(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        extras = sorted(requirement.extras) or [""]
        for declared in metadata.requires(requirement.name) or []:
            dependency = Requirement(declared)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras):
                pending.append(dependency)
    return seen


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_served_service_imports_only_what_the_base_requirements_install():
    installed = installed_by(base_requirements())
    hidden = sorted(
        module
        for module, distributions in metadata.packages_distributions().items()
        if not any(normal(d) in installed for d in distributions)
        and not module.startswith("_")  # interpreter hooks loaded before the test (.pth files)
    )
    served = subprocess.run(
        [sys.executable, "-c", SERVED, json.dumps(hidden)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert served.returncode == 0, served.stderr[-2000:]
