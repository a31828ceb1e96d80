"""Property tests: any query string → a valid filter or a 400, never another exception."""

from __future__ import annotations

import json

from django.http import QueryDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from images.api.filters import ImageQueryFilter
from images.core.errors import InvalidInput
from images.core.query import ALLOWED_OPERATORS

KEYS = st.one_of(
    st.sampled_from(
        ["filter", "ids", "from", "to", "sort", "order", "limit", "skip", "select", "regex", "file"]
    ),
    st.text(max_size=12),
)
JSON_KEYS = st.one_of(
    st.sampled_from(
        [*sorted(ALLOWED_OPERATORS), "$where", "$expr", "_id", "time", "file", "data.x"]
    ),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(JSON_KEYS, children, max_size=3)
    ),
    max_leaves=12,
)


def check(params: QueryDict) -> None:
    try:
        query = ImageQueryFilter().query(params)
    except InvalidInput as error:
        assert error.status == 400 and str(error.detail)
        return
    assert isinstance(query.filter, dict)
    assert query.skip >= 0 and query.limit >= 0
    _assert_only_allowed_operators(query.filter)


def _assert_only_allowed_operators(node) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.startswith("$"):
                assert key in ALLOWED_OPERATORS
            _assert_only_allowed_operators(value)
    elif isinstance(node, list):
        for item in node:
            _assert_only_allowed_operators(item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(KEYS, st.text(max_size=30)), max_size=6))
def test_any_parameters_parse_or_400(pairs):
    params = QueryDict(mutable=True)
    for key, value in pairs:
        params.appendlist(key, value)
    check(params)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_any_filter_document_parses_or_400(document):
    params = QueryDict(mutable=True)
    params["filter"] = json.dumps(document)
    check(params)
