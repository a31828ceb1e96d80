"""`python -m benchmarks.thumbnail_engines [--megapixels 64]`: Pillow against pyvips for thumbnails.

Makes one JPEG and two PNGs (a photo-like one and a flat one: a small file of many pixels) of
`--megapixels` each in a temporary directory, then renders a 256 px thumbnail of each with each
engine, every render in a fresh child process so its peak memory (VmHWM, over the process's
memory after imports) is its own. Prints the median wall time of `--repeat` renders and the
largest peak growth. Engines:

- `pillow`: what the service did before (open, `draft`, `thumbnail` with a reducing gap);
- `pillow-reduce`: `draft`, then `reduce` by the integer factor, then a final resize;
- `pyvips`: `Image.thumbnail` (shrink-on-load for JPEG, sequential streaming for PNG);
- `service`: what the service does now (`images.thumbnails.render.render_thumbnail`: libvips
  shrinks, Pillow converts and encodes), 256 px JPEG.

It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.processes import MIB, load_average

SIZE = 256
ENGINES = ("pillow", "pillow-reduce", "pyvips", "service")


def make_images(folder: Path, megapixels: int) -> dict[str, Path]:
    from PIL import Image, ImageFilter

    side = int((megapixels * 1_000_000) ** 0.5)
    small = Image.effect_noise((side // 16, side // 16), 64).convert("RGB")
    photo = small.filter(ImageFilter.GaussianBlur(2)).resize((side, side), Image.Resampling.BICUBIC)
    del small
    paths = {
        "jpeg": folder / "photo.jpg",
        "progressive": folder / "progressive.jpg",
        "png": folder / "photo.png",
        "flat-png": folder / "flat.png",
        "interlaced": folder / "interlaced.png",
    }
    photo.save(paths["jpeg"], "JPEG", quality=90)
    photo.save(paths["progressive"], "JPEG", quality=90, progressive=True)
    photo.save(paths["png"], "PNG", compress_level=1)
    del photo
    Image.new("RGB", (side, side), (200, 30, 30)).save(paths["flat-png"], "PNG")
    import pyvips  # Pillow writes no interlaced PNG

    (pyvips.Image.black(side, side, bands=3) + 90).pngsave(str(paths["interlaced"]), interlace=True)
    return paths


def _vm_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def render_once(engine: str, path: str) -> dict[str, float]:
    """In the child: import the engine, note the memory, render, report time and peak growth."""
    if engine == "service":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagestore.settings")
        os.environ["THUMBNAIL_MAX_PIXELS"] = str(10**10)
        import django

        django.setup()
        from images.thumbnails.keys import JPEG
        from images.thumbnails.render import libvips, plan_decoding, render_thumbnail

        libvips()
    elif engine == "pyvips":
        import pyvips

        pyvips.cache_set_max(0)
    else:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
    Path("/proc/self/clear_refs").write_text("5")
    before = _vm_kib("VmRSS")
    started = time.perf_counter()
    if engine == "service":
        with open(path, "rb") as source:
            render_thumbnail(source, plan_decoding(source), SIZE, JPEG)
    elif engine == "pyvips":
        image = pyvips.Image.thumbnail(path, SIZE)
        image.jpegsave_buffer(Q=85)
    else:
        with Image.open(path) as image:
            image.draft("RGB", (SIZE, SIZE))
            if engine == "pillow":
                image.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS, reducing_gap=3.0)
                picture = image
            else:
                factor = max(1, min(image.size) // SIZE // 2)
                picture = image.reduce(factor) if factor > 1 else image
                picture.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
            picture.convert("RGB").save(os.devnull, "JPEG", quality=85)
    seconds = time.perf_counter() - started
    figures = {"seconds": seconds, "peak_mib": (_vm_kib("VmHWM") - before) / 1024}
    if engine == "service":
        with open(path, "rb") as source:
            figures["estimate_mib"] = plan_decoding(source).memory / 1024 / 1024
    return figures


def measure(engine: str, path: Path, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        output = subprocess.run(
            [sys.executable, "-m", "benchmarks.thumbnail_engines", "--child", engine, str(path)],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        runs.append(json.loads(output))
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_mib": max(r["peak_mib"] for r in runs),
        "estimate_mib": runs[0].get("estimate_mib"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(render_once(*args.child)))
        return
    with tempfile.TemporaryDirectory() as folder:
        paths = make_images(Path(folder), args.megapixels)
        print(f"{args.megapixels} MP images, {SIZE} px thumbnails, load {load_average()}")
        print(
            f"{'image':<12} {'file MiB':>8} {'engine':<14} {'seconds':>8} {'peak MiB':>9}"
            f" {'estimated':>9}"
        )
        for kind, path in paths.items():
            size = path.stat().st_size / MIB
            for engine in ENGINES:
                figures = measure(engine, path, args.repeat)
                estimate = figures["estimate_mib"]
                print(
                    f"{kind:<12} {size:>8.1f} {engine:<14} "
                    f"{figures['seconds']:>8.2f} {figures['peak_mib']:>9.0f}"
                    + (f" {estimate:>9.0f}" if estimate is not None else "")
                )


if __name__ == "__main__":
    main()
