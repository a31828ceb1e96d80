"""django-prometheus' request metrics, with each labelled child looked up once per process.

`metric.labels(...)` validates the label names, takes the metric's lock and looks the child up
on every call; the after-middleware calls it eight times a request (a tenth of a small
request's CPU with the locks gevent patches in). The children are kept here by metric and
labels instead: the same series, the same counts, fewer calls.
"""

from __future__ import annotations

from typing import Any

from django_prometheus import middleware

# As many children as the metrics themselves hold; past this (methods are free text in one
# label) the cache starts over rather than grow without end.
MAX_CACHED_CHILDREN = 4096


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    _children: dict[tuple, Any] = {}

    def label_metric(self, metric, request, response=None, **labels):
        if not labels:
            return metric
        key = (metric, *labels.items())
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_CACHED_CHILDREN:
                self._children.clear()
            child = self._children[key] = metric.labels(**labels)
        return child
