"""`python -m benchmarks.client_rates [--tile 64] [--min-images 2000] [--jobs 8]`: push, pull.

The images are real photos a package ships: scikit-image's sample pictures (`skimage/data`),
cut into `--tile`-pixel tiles (every tile of every photo, as PNG in `<photo>/<row>_<col>.png`
with a sidecar `{"photo", "row", "col"}`), enough tiles to reach `--min-images`. Starts a fresh
database and `manage.py serve` (benchmarks.service, local disk) and times the `imagestore`
command: a first push, an unchanged re-push (everything skipped), a first pull and an unchanged
re-pull. Prints images/s and MB/s (of the image bytes) per run and the load average.
It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from benchmarks.client_transfer import imagestore
from benchmarks.processes import load_average
from benchmarks.service import BenchService, ServerOptions

PHOTO_SUFFIXES = (".png", ".jpg")


def shipped_photos() -> Iterator[tuple[str, Image.Image]]:
    """scikit-image's sample photos, as RGB or grey PIL images, by name."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    for path in sorted(folder.iterdir()):
        if path.suffix in PHOTO_SUFFIXES:
            with Image.open(path) as photo:
                yield path.stem, photo.convert("RGB" if photo.mode not in ("L", "1") else "L")


def tiles(photo: Image.Image, side: int) -> Iterator[tuple[int, int, Image.Image]]:
    width, height = photo.size
    for row in range(height // side):
        for col in range(width // side):
            yield row, col, photo.crop((col * side, row * side, (col + 1) * side, (row + 1) * side))


def write_dataset(root: Path, side: int, minimum: int) -> tuple[int, int]:
    """Tiles of the shipped photos under `root`, at least `minimum` (smaller tiles if need be):
    (images, bytes of the images)."""
    while True:
        shutil.rmtree(root, ignore_errors=True)
        count, size = 0, 0
        for name, photo in shipped_photos():
            for row, col, tile in tiles(photo, side):
                path = root / name / f"{row:03d}_{col:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                tile.save(path)
                path.with_suffix(".json").write_text(
                    json.dumps({"photo": name, "row": row, "col": col})
                )
                count, size = count + 1, size + path.stat().st_size
        if count >= minimum:
            return count, size
        side //= 2


def rates(seconds: float, count: int, size: int) -> str:
    """Wall seconds, images/s and MB/s of the image bytes, as the table's columns."""
    return f"{seconds:7.2f} {count / seconds:9.1f} {size / 1e6 / seconds:7.2f}"


def run(side: int, minimum: int, jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="imagestore-client-rates-") as workdir:
        root = Path(workdir)
        count, size = write_dataset(root / "tiles", side, minimum)
        print(f"{count} tiles of scikit-image's photos, {size / 1e6:.1f} MB, --jobs {jobs}")
        service = BenchService(root / "service", ServerOptions())
        service.start()
        try:
            push = ["push", str(root / "tiles"), "--folders-as", "photo", "--jobs", str(jobs)]
            pull = ["pull", str(root / "pulled"), "--jobs", str(jobs)]
            print(
                f"{'run':<22} {'wall s':>7} {'images/s':>9} {'MB/s':>7} {'load before-after':>18}"
            )
            for label, arguments in (
                ("push (first)", push),
                ("push (unchanged)", push),
                ("pull (first)", pull),
                ("pull (unchanged)", pull),
            ):
                before = load_average()
                seconds, _ = imagestore(service.base_url, *arguments)
                print(f"{label:<22} {rates(seconds, count, size)} {before} - {load_average()}")
        finally:
            service.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=64, help="tile side in pixels (default 64)")
    parser.add_argument("--min-images", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=8)
    arguments = parser.parse_args(argv)
    run(arguments.tile, arguments.min_images, arguments.jobs)


if __name__ == "__main__":
    main()
