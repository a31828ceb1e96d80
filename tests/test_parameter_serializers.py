"""Parameter serializers share their bound fields and the outcome of an empty query string: one
request's values never reach another's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.http import QueryDict

from images.api.change_parameters import ChangeFeedParameters
from images.api.duplicate_parameters import (
    CopyCheckParameters,
    DuplicatePageParameters,
    LeakParameters,
    NearPageParameters,
    SimilarParameters,
)
from images.api.export_parameters import ExportParameters
from images.api.filters import ImageQueryFilter, ImageQueryParameters
from images.api.parameters import Parameters, bound_fields, checked, validated
from images.api.thumbnail_parameters import ThumbnailParameters, thumbnail_size
from images.api.upload_parameters import UploadParameters
from images.core.errors import InvalidInput


def test_fields_are_bound_once_to_an_instance_without_data():
    first = ImageQueryParameters(data=QueryDict("limit=5"))
    second = ImageQueryParameters(data=QueryDict("limit=6"))
    assert first.fields is second.fields is bound_fields(ImageQueryParameters)
    prototype = first.fields["limit"].parent
    assert not hasattr(prototype, "initial_data")
    assert set(first.fields) >= {"filter", "ids", "limit", "from", "to"}


def test_each_class_has_its_own_fields():
    assert "metadata" in bound_fields(UploadParameters)
    assert "metadata" not in bound_fields(ImageQueryParameters)


def test_a_bad_value_then_good_ones_validate_each_on_its_own():
    with pytest.raises(InvalidInput, match="Parameter 'limit' must be a non-negative integer"):
        ImageQueryFilter().query(QueryDict("limit=-1"))
    assert ImageQueryFilter().query(QueryDict("limit=7&skip=2")).limit == 7
    assert ImageQueryFilter().query(QueryDict("regex=true&sort=time")).limit == 100
    with pytest.raises(InvalidInput, match="Parameter 'limit' must be a non-negative integer"):
        ImageQueryFilter().query(QueryDict("limit=x"))


def test_list_fields_keep_no_items_between_requests():
    many = validated(ImageQueryParameters, QueryDict("file=a.jpg&file=b.jpg"))
    one = validated(ImageQueryParameters, QueryDict("file=c.jpg"))
    assert many["files"] == ["a.jpg", "b.jpg"]
    assert one["files"] == ["c.jpg"]


def test_cross_field_checks_still_run():
    with pytest.raises(InvalidInput, match="Parameter 'similar' needs 'on_duplicate'"):
        validated(UploadParameters, QueryDict("similar=4"))
    checked = validated(UploadParameters, QueryDict("similar=4&on_duplicate=skip"))
    assert checked["similar"] == 4


def test_threads_validating_at_once_get_their_own_values():
    def limit_of(value: int) -> int:
        return ImageQueryFilter().query(QueryDict(f"limit={value}&skip={value}")).limit

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(limit_of, range(400))) == list(range(400))


def test_defaults_are_not_shared_state():
    assert thumbnail_size(QueryDict("size=64")) == 64
    assert thumbnail_size(QueryDict("")) == thumbnail_size(QueryDict("size="))


EVERY_PARAMETERS: list[type[Parameters]] = [
    ChangeFeedParameters,
    CopyCheckParameters,
    DuplicatePageParameters,
    ExportParameters,
    ImageQueryParameters,
    LeakParameters,
    NearPageParameters,
    SimilarParameters,
    ThumbnailParameters,
    UploadParameters,
]


@pytest.mark.parametrize("parameters", EVERY_PARAMETERS, ids=lambda cls: cls.__name__)
def test_nothing_sent_gives_what_a_full_validation_gives(parameters):
    try:
        expected: dict | str = checked(parameters(data=QueryDict()))
    except InvalidInput as error:
        expected = error.detail
    for _ in range(2):
        try:
            assert validated(parameters, QueryDict()) == expected
        except InvalidInput as error:
            assert error.detail == expected


def test_parameters_sent_after_an_empty_request_are_still_validated():
    assert validated(UploadParameters, QueryDict()) == {}
    with pytest.raises(InvalidInput) as refused:
        validated(UploadParameters, QueryDict("metadata=mix"))
    assert refused.value.detail == "Parameter 'metadata' must be replace or merge, got 'mix'"
    assert refused.value.status == 400
    assert validated(UploadParameters, QueryDict("metadata=MERGE"))["metadata"].value == "merge"
    assert validated(UploadParameters, QueryDict()) == {}


def test_changing_an_empty_outcome_changes_no_later_one():
    named = validated(ImageQueryParameters, QueryDict())
    named["limit"] = 5
    assert validated(ImageQueryParameters, QueryDict()) == {}
    assert ImageQueryFilter().query(QueryDict()).limit == 100
    assert ImageQueryFilter(default_limit=0).query(QueryDict()).limit == 0


def test_a_required_parameter_is_refused_every_time_it_is_missing():
    for _ in range(2):
        with pytest.raises(InvalidInput, match=r"^Parameter 'field' is required"):
            validated(LeakParameters, QueryDict())
