"""The HTTP server's own error answers (a malformed request line, a URL too long, headers
too large, a failure before a streamed response's first byte) as JSON, like every other
answer of the service."""

from __future__ import annotations

import contextlib
import socket
import time

from gunicorn import util

from images.api.error_body import error_body

# After an error answer, what the client still sends is read (and dropped) for this long, up
# to this much, before closing: closing with unread bytes would reset the connection, and the
# client (still sending a 300 KB URL, say) might never read the answer.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1024 * 1024

MESSAGES = {
    400: "Malformed HTTP request",
    414: "Request line too long: at most {line} bytes (method, URL and query)",
    431: "Request headers too large",
    500: "Internal server error",
    501: "Transfer coding not supported",
}


def body_for(status: int, reason: str, detail: str, max_line: int) -> bytes:
    message = MESSAGES.get(status, reason).format(line=max_line)
    if detail and status not in (414, 500):
        message = f"{message}: {detail}"
    return error_body(message)


def install(max_line: int) -> None:
    """Replace gunicorn's HTML error page writer in this process."""

    def write_error(sock, status_int: int, reason: str, mesg: str) -> None:
        body = body_for(status_int, reason, mesg, max_line)
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        util.write_nonblock(sock, head.encode("latin-1") + body)
        linger(sock)

    util.write_error = write_error


def linger(sock) -> None:
    """Close the sending side, then read and drop what the client still sends: at most
    LINGER_BYTES for LINGER_SECONDS in all (a trickle cannot stretch it byte by byte)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if not (chunk := sock.recv(65536)):
                break
            drained += len(chunk)
