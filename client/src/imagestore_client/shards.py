"""Split a streamed WebDataset tar into `shard-000000.tar`, ... of at most N samples each."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO


class _ChunkStream(io.RawIOBase):
    """A readable stream over an iterator of byte chunks, for `tarfile`'s stream mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.left:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.left = memoryview(chunk)
        size = min(len(buffer), len(self.left))
        buffer[:size] = self.left[:size]
        self.left = self.left[size:]
        return size


def sample_key(name: str) -> str:
    """WebDataset's key: the member's path up to the first dot of its base name."""
    folder, _, base = name.rpartition("/")
    stem = base.split(".", 1)[0]
    return f"{folder}/{stem}" if folder else stem


def write_shards(chunks: Iterable[bytes], dest: Path, shard_size: int) -> list[tuple[Path, int]]:
    """Write the tar in `chunks` as shards of `shard_size` samples: [(shard, samples), ...]."""
    if shard_size < 1:
        raise ValueError("shard size must be at least 1")
    dest.mkdir(parents=True, exist_ok=True)
    shards: list[Path] = []
    samples: list[int] = []
    try:
        with tarfile.open(fileobj=io.BufferedReader(_ChunkStream(chunks)), mode="r|") as source:
            out = _copy_members(source, dest, shard_size, shards, samples)
    except BaseException:
        if shards:
            _partial(shards[-1]).unlink(missing_ok=True)
        raise
    if out is not None:
        _finish(out, shards[-1])
    _remove_stale_shards(dest, len(shards))
    return list(zip(shards, samples, strict=True))


def _copy_members(
    source: tarfile.TarFile, dest: Path, shard_size: int, shards: list[Path], samples: list[int]
) -> tarfile.TarFile | None:
    """Copy every file member into the shards; `samples` gets each shard's sample count."""
    out: tarfile.TarFile | None = None
    last_key = None
    try:
        for member in source:
            if not member.isfile():
                continue
            key = sample_key(member.name)
            # `__name__/` entries (the export's own notes) ride along without counting as samples.
            if key != last_key and not member.name.startswith("__"):
                last_key = key
                if out is None or samples[-1] >= shard_size:
                    out = _next_shard(out, dest, shards)
                    samples.append(0)
                samples[-1] += 1
            if out is None:
                out = _next_shard(out, dest, shards)
                samples.append(0)
            content: IO[bytes] | None = source.extractfile(member)
            out.addfile(member, content)
    except BaseException:
        if out is not None:
            out.close()
        raise
    return out


def _remove_stale_shards(dest: Path, count: int) -> None:
    """Shards past `count` left by an earlier, larger export into the same folder."""
    for shard in dest.glob("shard-[0-9][0-9][0-9][0-9][0-9][0-9].tar"):
        if int(shard.stem.split("-")[1]) >= count:
            shard.unlink()


def _next_shard(current: tarfile.TarFile | None, dest: Path, shards: list[Path]) -> tarfile.TarFile:
    if current is not None:
        _finish(current, shards[-1])
    shard = dest / f"shard-{len(shards):06d}.tar"
    shards.append(shard)
    return tarfile.open(_partial(shard), mode="w", format=tarfile.PAX_FORMAT)


def _partial(shard: Path) -> Path:
    return shard.with_name(f".{shard.name}.partial")


def _finish(tar: tarfile.TarFile, shard: Path) -> None:
    tar.close()
    os.replace(_partial(shard), shard)
