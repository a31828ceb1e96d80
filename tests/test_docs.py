"""The documentation stays whole: every setting is documented, every relative link resolves,
every curl example sends a valid URL.

No server: these read files only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(
    [
        REPO_ROOT / "README.md",
        REPO_ROOT / "client" / "README.md",
        REPO_ROOT / "benchmarks" / "README.md",
        *(REPO_ROOT / "docs").glob("*.md"),
    ]
)
ENV_CALL = re.compile(r"""env_(?:str|int|float|bool|choice|directory)\(\s*["']([A-Z0-9_]+)["']""")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
# A quoted URL of a curl example: curl sends it as written, so it must be percent-encoded.
CURL_URL = re.compile(r"""curl [^\n]*?(['"])((?:https?://)?(?:localhost|host)[:/][^'"]*)\1""")


def settings_variables() -> set[str]:
    return set(ENV_CALL.findall((REPO_ROOT / "imagestore" / "settings.py").read_text()))


def test_every_environment_variable_is_in_the_configuration_page() -> None:
    documented = (REPO_ROOT / "docs" / "configuration.md").read_text()
    variables = settings_variables()
    assert len(variables) > 40  # the pattern still finds the settings
    missing = sorted(v for v in variables if f"`{v}`" not in documented)
    assert not missing, f"not in docs/configuration.md: {missing}"


def prose_lines(path: Path) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for line in prose_lines(path):
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(document: Path) -> None:
    broken = []
    for line in prose_lines(document):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            name, _, fragment = target.partition("#")
            linked = (document.parent / name).resolve() if name else document
            exists = linked.exists()
            if exists and fragment and linked.suffix == ".md":
                exists = fragment in anchors(linked)
            if not exists:
                broken.append(target)
    assert not broken, f"{document.relative_to(REPO_ROOT)}: {broken}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_curl_examples_send_encoded_urls(document: Path) -> None:
    """A space, brace or quote in a URL curl is given makes a request the server refuses: such
    values go in `-G --data-urlencode`."""
    unencoded = [
        url for _, url in CURL_URL.findall(document.read_text()) if re.search(r"[ {}\"|]", url)
    ]
    assert not unencoded, f"{document.relative_to(REPO_ROOT)}: {unencoded}"
