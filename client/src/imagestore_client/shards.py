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


def write_shards(chunks: Iterable[bytes], dest: Path, shard_size: int) -> list[Path]:
    """Write the tar in `chunks` as shards of `shard_size` samples; returns the shard paths."""
    if shard_size < 1:
        raise ValueError("shard size must be at least 1")
    dest.mkdir(parents=True, exist_ok=True)
    shards: list[Path] = []
    out: tarfile.TarFile | None = None
    samples, last_key = 0, None
    with tarfile.open(fileobj=io.BufferedReader(_ChunkStream(chunks)), mode="r|") as source:
        for member in source:
            if not member.isfile():
                continue
            key = sample_key(member.name)
            if key != last_key:
                last_key = key
                if out is None or samples >= shard_size:
                    out = _next_shard(out, dest, shards)
                    samples = 0
                samples += 1
            content: IO[bytes] | None = source.extractfile(member)
            out.addfile(member, content)
    if out is not None:
        _finish(out, shards[-1])
    return shards


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
