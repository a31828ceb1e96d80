"""`total` of GET /images is right whether or not the page alone tells it."""

from __future__ import annotations

import pytest

from tests.helpers import upload


@pytest.mark.parametrize(
    ("params", "items"),
    [
        ({"limit": 2}, 2),
        ({"limit": 10}, 5),
        ({"limit": 5}, 5),
        ({"skip": 3, "limit": 10}, 2),
        ({"skip": 3, "limit": 2}, 2),
        ({"skip": 5, "limit": 10}, 0),
        ({"skip": 10, "limit": 10}, 0),
    ],
)
def test_total_counts_every_match(api, params, items):
    for index in range(5):
        upload(api, f"a{index}.jpg", label="a")
    upload(api, "b.jpg", label="b")
    body = api.get("/images", {"label": "a", **params}).json()
    assert body["total"] == 5
    assert len(body["items"]) == items


def test_total_is_zero_without_matches(api):
    upload(api, "b.jpg", label="b")
    assert api.get("/images", {"label": "none"}).json()["total"] == 0
