"""GET /fields and GET /fields/<field>."""

from __future__ import annotations

import pytest

from tests.helpers import upload


def seed(api):
    upload(api, "a.jpg", key1="value1", key3="value3", count="5")
    upload(
        api,
        "b.jpg",
        json='{"parentKey": {"nestedKey1": "nestedValue1"}, "nested": {"x": 1}, "key3": "value3"}',
    )
    upload(api, "c.jpg", json='{"nested": {"a": {"b": "c"}}}')


KEYS = ["count", "key1", "key3", "nested", "parentKey"]


def test_field_names(api):
    seed(api)
    assert api.get("/fields").json() == KEYS


@pytest.mark.parametrize(
    "query",
    [
        "file=c.jpg",
        "limit=10&skip=0&sort=time&order=-1&camera=none",
        'filter={"$and":[{"data.camera":"nothing matches"}]}',
        "filter=half-typed{",
        "from=2999-01-01",
    ],
)
def test_field_names_ignore_the_query_as_the_original(api, query):
    # Clients send their list's query and build columns from the answer.
    seed(api)
    assert api.get(f"/fields?{query}").json() == KEYS


def test_field_names_read_a_bounded_number_of_the_newest_images(api, settings):
    seed(api)
    upload(api, "d.jpg", newest="1")
    settings.FIELDS_SAMPLE_SIZE = 2
    assert api.get("/fields").json() == ["nested", "newest"]
    settings.FIELDS_SAMPLE_SIZE = 1
    assert api.get("/fields").json() == ["newest"]


def test_field_values(api):
    seed(api)
    assert api.get("/fields/key3").json() == ["value3"]
    assert api.get("/fields/parentKey.nestedKey1").json() == ["nestedValue1"]
    nested = api.get("/fields/nested").json()
    assert {"x": 1} in nested and {"a": {"b": "c"}} in nested
    assert api.get("/fields/count?key1=value1").json() == ["5"]
    assert api.get("/fields/count?key1=nope").json() == []
    assert api.get("/fields/doesnotexist").json() == []


def test_bad_field_requests(api):
    seed(api)
    assert api.get("/fields/key3?filter=bad").status_code == 400
    assert api.get("/fields/$where").status_code == 400
    assert api.get("/fields/a..b").status_code == 400
