"""The client package as pip installs it: its command, its pinned dependencies, no Django."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib

from conftest import REPO_ROOT, cli_environment

PYPROJECT = tomllib.loads((REPO_ROOT / "client" / "pyproject.toml").read_text())


def test_the_imagestore_command_points_at_the_cli():
    module, _, function = PYPROJECT["project"]["scripts"]["imagestore"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_dependencies_are_pinned_as_the_service_pins_them():
    pins = {}
    for name in ("base.txt", "dev.txt"):
        for line in (REPO_ROOT / "requirements" / name).read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                package, version = line.split(";")[0].strip().split("==")
                pins[package.split("[")[0].lower()] = version
    for requirement in PYPROJECT["project"]["dependencies"]:
        package, version = requirement.split("==")
        assert pins[package.lower()] == version


def test_the_client_imports_without_django_or_the_service():
    code = (
        "import sys, imagestore_client.cli, imagestore_client.commands; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'images', 'imagestore', 'pymongo')))"
    )
    env = {**cli_environment(), "PYTHONSAFEPATH": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
