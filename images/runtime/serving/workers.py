"""gunicorn workers of the service: gevent (the default), gthread and sync.

Each worker answers the HTTP server's own errors in JSON, ignores the terminal's SIGINT (the
master, which gets it too, tells its workers to stop: two signals made workers hang until
killed), and accepts request lines up to HTTP_MAX_REQUEST_LINE. The gevent worker holds a slow
or idle connection in a greenlet, not a thread; a silent socket times out after
HTTP_IDLE_TIMEOUT, a request body that keeps it waiting too long is answered 408, a client over
its connection cap 429 (`client_limits`); files are sent with sendfile(2) while other
connections go on.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

from django.conf import settings
from gunicorn.http import message

from images.runtime.offload import cooperate
from images.runtime.serving import client_limits, http_errors

if TYPE_CHECKING:
    from gunicorn.workers.base import Worker as _Worker
else:
    _Worker = object


class ServiceWorkerMixin(_Worker):
    """What every worker class of the service does on top of gunicorn's."""

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def init_process(self) -> None:
        allow_request_line(self.cfg.limit_request_line)
        http_errors.install(self.cfg.limit_request_line)
        super().init_process()


def allow_request_line(limit: int) -> None:
    """gunicorn caps `limit_request_line` at 8,190 bytes; the service documents its own."""
    message.MAX_REQUEST_LINE = max(message.MAX_REQUEST_LINE, limit)


def cooperative_sendfile(sock, file, offset: int = 0, count: int | None = None) -> int:
    """`socket.sendfile` for a gevent socket: os.sendfile on its non-blocking descriptor,
    waiting for room in the send buffer cooperatively (gevent's own falls back to 8 KiB
    reads and sends)."""
    from gevent.socket import wait_write

    in_fd, out_fd = file.fileno(), sock.fileno()
    if count is None:
        count = os.fstat(in_fd).st_size - offset
    sent_total = 0
    while sent_total < count:
        try:
            sent = os.sendfile(out_fd, in_fd, offset + sent_total, count - sent_total)
        except BlockingIOError:
            wait_write(out_fd, timeout=sock.gettimeout(), timeout_exc=TimeoutError("timed out"))
            continue
        if sent == 0:
            break
        sent_total += sent
        cooperate()  # a client reading as fast as the kernel sends never makes it wait
    file.seek(offset + sent_total)
    return sent_total


def _gevent_worker_class():
    import gevent.socket
    from gunicorn import util
    from gunicorn.workers.ggevent import GeventWorker

    class ServiceGeventWorker(ServiceWorkerMixin, GeventWorker):
        def init_process(self) -> None:
            gevent.socket.socket.sendfile = cooperative_sendfile
            self.body_policy = client_limits.BodyPolicy(
                grace=settings.HTTP_BODY_TIMEOUT,
                min_rate=settings.HTTP_BODY_MIN_RATE,
                idle=settings.HTTP_IDLE_TIMEOUT,
            )
            self.connection_cap = client_limits.ConnectionCap(
                settings.HTTP_MAX_CONNECTIONS_PER_CLIENT
            )
            super().init_process()

        def load_wsgi(self) -> None:
            super().load_wsgi()
            self.wsgi = client_limits.answer_expired_bodies(self.wsgi)  # type: ignore[has-type]

        def handle(self, listener, client, addr) -> None:
            # gunicorn makes the socket blocking; a timeout bounds every silent read/write.
            client.settimeout(settings.HTTP_IDLE_TIMEOUT)
            key = client_limits.client_key(addr)
            if not self.connection_cap.admit(key):
                try:
                    self.connection_cap.refuse(client)
                finally:
                    util.close(client)
                return
            try:
                connection = client_limits.ClientSocket(client, self.body_policy)
                super(GeventWorker, self).handle(listener, connection, addr)
            finally:
                self.connection_cap.release(key)

        def handle_request(self, listener_name, req, sock, addr):
            # The app reads the request's body (if any) in here: under the body deadline.
            sock.begin_body(req)
            try:
                return super().handle_request(listener_name, req, sock, addr)
            finally:
                if sock.end_body() is not None:
                    http_errors.linger(sock)  # the 408 is sent: close without a reset

    return ServiceGeventWorker


def _gthread_worker_class():
    from gunicorn.workers.gthread import ThreadWorker

    class ServiceThreadWorker(ServiceWorkerMixin, ThreadWorker):
        pass

    return ServiceThreadWorker


def _sync_worker_class():
    from gunicorn.workers.sync import SyncWorker

    class ServiceSyncWorker(ServiceWorkerMixin, SyncWorker):
        pass

    return ServiceSyncWorker


def __getattr__(name: str):
    """Worker classes by name (gunicorn's `worker_class = "images.runtime.serving.workers.gevent"`),
    built on first use so that gevent is imported only by the gevent worker."""
    factories = {"gevent": _gevent_worker_class, "gthread": _gthread_worker_class}
    factories["sync"] = _sync_worker_class
    if name not in factories:
        raise AttributeError(name)
    worker_class = factories[name]()
    globals()[name] = worker_class
    return worker_class
