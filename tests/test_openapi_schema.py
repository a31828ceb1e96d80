"""What `/docs/schema` promises clients: bodies, answers, statuses, examples, Swagger UI's defaults."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.helpers import image_bytes

OPERATIONS = {
    ("/images", "get"): {"200", "400", "401", "503"},
    ("/images", "post"): {"200", "400", "401", "409", "413", "503", "507"},
    ("/images", "patch"): {"200", "400", "401", "413", "415", "503"},
    ("/images", "delete"): {"200", "400", "401", "503"},
    ("/images/{id}", "get"): {"200", "400", "401", "404", "503"},
    ("/images/{id}", "patch"): {"200", "400", "401", "404", "413", "415", "503"},
    ("/images/{id}", "put"): {"200", "400", "401", "404", "413", "415", "503"},
    ("/images/{id}", "delete"): {"200", "400", "401", "404", "503"},
    ("/images/{id}/image", "get"): {"200", "206", "304", "307", "400", "401", "404", "416", "503"},
    ("/images/{id}/file", "get"): {"200", "206", "304", "307", "400", "401", "404", "416", "503"},
    ("/images/{id}/thumbnail", "get"): {"200", "304", "400", "401", "404", "422", "503"},
    ("/images/{id}/url", "post"): {"200", "400", "401", "404", "503"},
    ("/images/duplicates", "get"): {"200", "400", "401", "503"},
    ("/fields", "get"): {"200", "401", "503"},
    ("/fields/{field}", "get"): {"200", "400", "401", "503"},
    ("/export", "get"): {"200", "400", "401", "503"},
    ("/export/url", "post"): {"200", "400", "401", "503"},
    ("/import", "post"): {"200", "400", "401", "413", "503", "507"},
    ("/health/ready", "get"): {"200", "503"},
}
BINARY = {"type": "string", "format": "binary"}


@pytest.fixture
def schema(api) -> dict:
    return api.get("/docs/schema?format=json").json()


def component(schema: dict, name: str) -> dict:
    return schema["components"]["schemas"][name]


@pytest.mark.parametrize(("path", "method"), list(OPERATIONS))
def test_every_status_a_route_answers_is_documented(schema, path, method):
    responses = schema["paths"][path][method]["responses"]
    assert set(responses) == OPERATIONS[(path, method)]
    for status, response in responses.items():
        assert response["description"] or status == "200", (status, response)
        if status >= "400" and path != "/health/ready":
            error = response["content"]["application/json"]["schema"]
            # A duplicate upload names the image already holding the bytes.
            name = "DuplicateConflict" if (path, status) == ("/images", "409") else "Error"
            assert error == {"$ref": f"#/components/schemas/{name}"}


def test_list_items_require_nothing_a_projection_may_drop(schema):
    listed = component(schema, "ImageList")
    assert listed["properties"]["items"]["items"] == {"$ref": "#/components/schemas/SelectedImage"}
    assert "required" not in component(schema, "SelectedImage")
    assert set(component(schema, "Image")["required"]) == {"_id", "file", "data", "time"}
    assert component(schema, "Image")["properties"]["data"]["type"] == "object"


@pytest.mark.parametrize(
    ("path", "method"), [("/images", "patch"), ("/images/{id}", "patch"), ("/images/{id}", "put")]
)
def test_edits_take_json_bodies_only(schema, path, method):
    body = schema["paths"][path][method]["requestBody"]
    assert list(body["content"]) == ["application/json"]
    assert body["content"]["application/json"]["examples"]


@pytest.mark.parametrize(
    ("path", "status", "media_types"),
    [
        ("/images/{id}/image", "200", ["application/octet-stream"]),
        ("/images/{id}/image", "206", ["application/octet-stream"]),
        ("/images/{id}/thumbnail", "200", ["image/webp", "image/jpeg"]),
        ("/export", "200", ["application/zip", "application/x-tar"]),
    ],
)
def test_file_answers_are_binary(schema, path, status, media_types):
    content = schema["paths"][path]["get"]["responses"][status]["content"]
    assert set(media_types) <= set(content)
    assert all(content[media]["schema"] == BINARY for media in media_types)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/images", "get"),
        ("/images", "post"),
        ("/images", "patch"),
        ("/images", "delete"),
        ("/images/{id}", "get"),
        ("/images/{id}", "patch"),
        ("/images/{id}", "put"),
        ("/fields", "get"),
        ("/import", "post"),
    ],
)
def test_main_operations_have_examples(schema, path, method):
    answer = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    assert answer["examples"]


def test_image_ids_are_described_as_object_ids(schema):
    (parameter,) = schema["paths"]["/images/{id}"]["get"]["parameters"]
    assert parameter["schema"]["pattern"] == "^[0-9a-fA-F]{24}$"


def test_metadata_fields_say_null_means_none(schema):
    upload = component(schema, "ImageUploadRequest")["properties"]
    assert "null" in upload["json"]["description"]


def test_upload_publishes_its_query_parameters(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/images"]["post"]["parameters"]}
    assert set(parameters) == {"on_duplicate", "metadata", "similar", "check_leak"}
    assert parameters["metadata"]["in"] == "query"
    assert parameters["metadata"]["schema"]["enum"] == ["replace", "merge"]
    assert "merge" in parameters["metadata"]["description"]


def test_a_token_is_optional_while_auth_is_off_and_required_when_on(api, schema, oidc):
    assert schema["paths"]["/images"]["get"]["security"] == [{"bearerAuth": []}, {}]
    with_auth = api.get("/docs/schema?format=json").json()
    assert with_auth["paths"]["/images"]["get"]["security"] == [{"bearerAuth": []}]


def try_it_out(page: Page, url: str, operation_id: str) -> Locator:
    """Swagger UI at `url`/docs/, the operation opened and its "Try it out" pressed."""
    page.goto(f"{url}/docs/")
    operation = page.locator(f"#operations-images-{operation_id}")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    return operation


@pytest.mark.browser
@pytest.mark.slow
def test_swagger_try_it_out_lists_images_plainly(start_server, browser):
    server = start_server()
    context = browser.new_context()
    page = context.new_page()
    try:
        operation = try_it_out(page, server.url, "images_list")
        with page.expect_response(lambda r: "/images" in r.url and "/docs" not in r.url) as sent:
            operation.locator(".execute").click()
        response = sent.value
        assert response.url == f"{server.url}/images"
        assert response.status == 200
        expect(operation.locator(".request-url pre")).to_have_text(f"{server.url}/images")
    finally:
        context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_swagger_try_it_out_uploads_an_image_with_only_a_file_chosen(
    start_server, browser, tmp_path
):
    server = start_server()
    picture = tmp_path / "frame.jpg"
    picture.write_bytes(image_bytes())
    context = browser.new_context()
    page = context.new_page()
    try:
        operation = try_it_out(page, server.url, "images_create")
        operation.locator("input[type=file]").set_input_files(str(picture))
        with page.expect_response(lambda r: r.url == f"{server.url}/images") as sent:
            operation.locator(".execute").click()
        assert sent.value.status == 200, sent.value.text()
    finally:
        context.close()


def test_upload_form_fields_have_examples_swagger_ui_can_send(schema):
    """Swagger UI fills a field with its `example`, else the placeholder `string` (a 400)."""
    fields = component(schema, "ImageUploadRequest")["properties"]
    examples = {name: field.get("example") for name, field in fields.items() if name != "image"}
    assert examples == {
        "file": "cam1/frame_0001.jpg",
        "time": "",
        "_id": "",
        "json": '{"label": "cat"}',
        "data": "null",
    }
