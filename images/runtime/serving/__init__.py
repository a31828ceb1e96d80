"""How the service is started and served.

`manage.py` patches the standard library for gevent before anything else is imported when
`serve` runs with gevent workers (`cooperative`), turns a wrong setting into one line and exit
status 2, and gives the project's management commands the embedded database (`startup`).
`serve` binds its listening socket itself (`listener`), leases the embedded database, and runs
gunicorn (`server`) with workers that answer the HTTP server's own errors in JSON, send local
files with sendfile(2) without blocking other connections, and time out silent clients
(`workers`, `http_errors`); a request body that keeps a worker waiting too long is answered
408, and a client holding too many of a worker's connections 429 (`client_limits`). The master watches the embedded database and starts it again on the
same port when it dies; only the process that leases it can stop it, never a worker.
"""
