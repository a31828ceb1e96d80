"""Streamed answers written in pieces of about one size: fewer, larger socket writes."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

from images.runtime.offload import cooperate


def coalesce(pieces: Generator[bytes, None, None], size: int) -> Generator[bytes, None, None]:
    """Join small pieces (archive headers, printed documents) into writes of about `size`;
    pass large ones through. `pieces` is closed when this is."""
    with contextlib.closing(pieces):
        buffer = bytearray()
        for piece in pieces:
            # A client that reads as fast as it is sent never makes the socket wait: every
            # piece (read, checksummed, compressed or printed on the loop) gives the loop a turn.
            cooperate()
            if len(piece) >= size:
                if buffer:
                    yield bytes(buffer)
                    buffer.clear()
                yield piece
                continue
            buffer += piece
            if len(buffer) >= size:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)
