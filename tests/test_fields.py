"""GET /fields and GET /fields/<field>."""

from __future__ import annotations

from tests.helpers import upload


def seed(api):
    upload(api, "a.jpg", key1="value1", key3="value3", count="5")
    upload(
        api,
        "b.jpg",
        json='{"parentKey": {"nestedKey1": "nestedValue1"}, "nested": {"x": 1}, "key3": "value3"}',
    )
    upload(api, "c.jpg", json='{"nested": {"a": {"b": "c"}}}')


def test_field_names(api):
    seed(api)
    assert sorted(api.get("/fields").json()) == ["count", "key1", "key3", "nested", "parentKey"]
    assert sorted(api.get("/fields?file=c.jpg").json()) == ["nested"]


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
