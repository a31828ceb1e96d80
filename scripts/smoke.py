"""Drive every route of the contract against a running server and print what was checked.

    .venv/bin/python scripts/smoke.py http://localhost:3000

It works in its own folder (`smoke-<random>/`) and deletes what it created. Exit code 1 when a
check fails. Needs only the standard library and Pillow (both there after `make run`).
"""

from __future__ import annotations

import io
import json
import sys
import uuid
import zipfile
from dataclasses import dataclass
from email.message import Message
from functools import partialmethod
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from PIL import Image

CHECKS: list[tuple[bool, str]] = []
TIMEOUT_SECONDS = 60


@dataclass
class Answer:
    """What the server answered: any status, 4xx and 5xx included."""

    status_code: int
    headers: Message
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = f"smoke{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"--{boundary}\r\n{head}".encode() + value.encode() + b"\r\n")
    for name, (filename, content) in files.items():
        head = (
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(f"--{boundary}\r\n{head}".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Session:
    """requests' calls used here (get, post, patch, put, delete, head), on urllib."""

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None = None,
        json: object = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        headers = dict(headers or {})
        body = None
        if json is not None:
            body, headers["Content-Type"] = _json_dumps(json), "application/json"
        elif data is not None or files is not None:
            body, headers["Content-Type"] = multipart(data or {}, files or {})
        if params:
            url = f"{url}?{urlencode(params)}"
        try:
            with urlopen(Request(url, body, headers, method=method), timeout=TIMEOUT_SECONDS) as r:
                return Answer(r.status, r.headers, r.read())
        except HTTPError as error:
            with error:
                return Answer(error.code, error.headers, error.read())

    get = partialmethod(request, "GET")
    head = partialmethod(request, "HEAD")
    post = partialmethod(request, "POST")
    patch = partialmethod(request, "PATCH")
    put = partialmethod(request, "PUT")
    delete = partialmethod(request, "DELETE")


def _json_dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def check(condition: bool, what: str) -> None:
    CHECKS.append((bool(condition), what))
    print(f"{'ok  ' if condition else 'FAIL'} {what}")


def jpeg(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buffer, "JPEG")
    return buffer.getvalue()


def main(base: str) -> int:
    s = Session()
    folder = f"smoke-{uuid.uuid4().hex[:8]}"
    info = s.get(f"{base}/").json()
    check(info["mongodb"]["connected"] is True, "GET / reports the database connected")

    up = s.post(
        f"{base}/images",
        files={"image": ("a.jpg", jpeg())},
        data={"file": f"{folder}/a.jpg", "label": "cat", "smoke": folder},
    )
    check(
        up.status_code == 200 and up.json()["data"]["label"] == "cat", "POST /images plain fields"
    )
    image_id = up.json()["_id"]
    up2 = s.post(
        f"{base}/images",
        files={"image": ("b.jpg", jpeg("blue"))},
        data={"json": json.dumps({"file": f"{folder}/b.jpg", "smoke": folder, "n": {"x": 1}})},
    )
    check(up2.json()["data"]["n"] == {"x": 1}, "POST /images json field keeps types")
    check(s.post(f"{base}/images", data={"file": "/abs.jpg"}).status_code == 400, "no file → 400")
    bad = s.post(f"{base}/images", files={"image": ("x.jpg", jpeg())}, data={"file": "../x.jpg"})
    check(bad.status_code == 400 and "detail" in bad.json(), "path traversal in file → 400 JSON")

    listed = s.get(f"{base}/images", params={"smoke": folder}).json()
    check(listed["total"] == 2, "GET /images?key=value")
    check(
        s.get(f"{base}/images", params={"smoke": folder, "label": "CA", "regex": "true"}).json()[
            "total"
        ]
        == 1,
        "regex=true",
    )
    f = json.dumps({"data.smoke": folder, "data.n.x": {"$gte": 1}})
    check(s.get(f"{base}/images", params={"filter": f}).json()["total"] == 1, "filter={JSON}")
    check(
        s.get(f"{base}/images", params={"filter": '{"$where":"1"}'}).status_code == 400,
        "$where → 400",
    )
    check(s.get(f"{base}/images", params={"ids": image_id}).json()["total"] == 1, "ids=")
    sel = s.get(
        f"{base}/images", params={"smoke": folder, "select": "file", "sort": "file", "order": "-1"}
    ).json()
    check(
        [i["file"] for i in sel["items"]] == [f"{folder}/b.jpg", f"{folder}/a.jpg"],
        "sort/order/select",
    )

    check(
        s.get(f"{base}/images/{image_id}").json()["file"] == f"{folder}/a.jpg", "GET /images/<id>"
    )
    file = s.get(f"{base}/images/{image_id}/image")
    check(
        file.content == jpeg() and "a.jpg" in file.headers["Content-Disposition"],
        "GET /images/<id>/image",
    )
    part = s.get(f"{base}/images/{image_id}/file", headers={"Range": "bytes=0-9"})
    check(part.status_code == 206 and part.content == jpeg()[:10], "Range → 206")
    check(
        s.head(f"{base}/images/{image_id}/image").headers["Content-Length"] == str(len(jpeg())),
        "HEAD",
    )
    etag = file.headers["ETag"]
    check(
        s.get(f"{base}/images/{image_id}/image", headers={"If-None-Match": etag}).status_code
        == 304,
        "ETag → 304",
    )

    patched = s.patch(f"{base}/images/{image_id}", json={"label": "dog", "extra.deep": 1}).json()
    check(
        patched["data"]["label"] == "dog" and patched["data"]["extra"] == {"deep": 1},
        "PATCH /images/<id>",
    )
    put = s.put(f"{base}/images/{image_id}", json={"smoke": folder, "replaced": True}).json()
    check(put["data"] == {"smoke": folder, "replaced": True}, "PUT returns the updated document")
    bulk = s.patch(f"{base}/images", params={"smoke": folder}, json={"bulk": 1}).json()
    check(bulk["matchedCount"] == 2, "PATCH /images bulk")
    check("bulk" in s.get(f"{base}/fields").json(), "GET /fields")
    check(
        s.get(f"{base}/fields/bulk", params={"smoke": folder}).json() == [1], "GET /fields/<field>"
    )

    typo = s.delete(f"{base}/images", params={"filter": '{"fiel": "typo"}'}).json()
    check(typo["deletedCount"] == 0, "DELETE with a typo in filter deletes nothing")

    export = s.get(f"{base}/export", params={"smoke": folder})
    if export.status_code == 200:
        names = zipfile.ZipFile(io.BytesIO(export.content)).namelist()
        check(f"{folder}/a.jpg" in names and "mongodb_data.json" in names, "GET /export")
    else:
        check(False, f"GET /export answered {export.status_code}")

    check(s.delete(f"{base}/images/{image_id}").json() == {"_id": image_id}, "DELETE /images/<id>")
    check(s.get(f"{base}/images/{image_id}").status_code == 404, "deleted → 404")
    check(
        s.delete(f"{base}/images", params={"smoke": folder}).json()["deletedCount"] == 1,
        "DELETE /images",
    )
    check(s.get(f"{base}/nonexistent").status_code == 404, "unknown route → 404 JSON")
    check("swagger" in s.get(f"{base}/docs/").text.lower(), "GET /docs Swagger UI")
    check(s.get(f"{base}/metrics").status_code == 200, "GET /metrics")

    failed = [what for ok, what in CHECKS if not ok]
    print(f"\n{len(CHECKS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://localhost:3000"))
