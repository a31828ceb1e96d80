"""The listening socket, bound by `serve` itself before anything starts.

Binding first means a port already taken is one clear line before "Serving on" (gunicorn
would retry for seconds and print a traceback), and no embedded database is started for a
server that cannot run. gunicorn takes the socket over (`bind = fd://N`) and listens on it
once it runs: until then connections are refused, not left waiting.
"""

from __future__ import annotations

import errno
import socket

from django.core.management.base import CommandError


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise CommandError(describe(error, host, port)) from None
    sock.set_inheritable(True)
    return sock


def describe(error: OSError, host: str, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"APP_PORT {port} is already in use on {host}: stop what listens there "
            f"or set APP_PORT to a free port"
        )
    if error.errno == errno.EACCES:
        return f"APP_PORT {port} needs privileges on {host}: set APP_PORT above 1023"
    return f"cannot listen on {host}:{port} (APP_HOST, APP_PORT): {error.strerror}"


def gunicorn_bind(sock: socket.socket) -> str:
    return f"fd://{sock.fileno()}"
