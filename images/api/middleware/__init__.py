"""Django middleware: CORS, the request log and request metrics."""
