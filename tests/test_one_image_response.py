"""`GET /images/<id>` answers the bytes and headers DRF's rendering gave, from a plain response."""

from __future__ import annotations

import orjson
from bson import ObjectId

from images.core.documents import to_api
from tests.helpers import upload


def test_the_document_and_headers_are_those_of_the_rendered_response(api, collection):
    created = upload(api, "cat.jpg", data='{"label": "ok"}').json()
    response = api.get(f"/images/{created['_id']}")
    assert response.status_code == 200
    stored = collection.find_one({"_id": ObjectId(created["_id"])})
    assert response.content == orjson.dumps(to_api(stored))
    assert response.json() == created
    assert list(response.headers.items()) == [
        ("Content-Type", "application/json"),
        ("Allow", "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"),
        ("Content-Length", str(len(response.content))),
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Expose-Headers", "Content-Disposition"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]


def test_a_missing_image_still_answers_the_error_body(api):
    response = api.get("/images/0123456789abcdef01234567")
    assert response.status_code == 404
    assert response.json() == {"detail": "Image 0123456789abcdef01234567 not found"}
    assert response["Allow"] == "GET, PUT, PATCH, DELETE, HEAD, OPTIONS"
