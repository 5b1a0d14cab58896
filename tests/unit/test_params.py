"""api.params without a server: every bad value is refused before any request, naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from api.errors import Category, ModelsLabError
from api.params import (
    OUTPUT_FORMATS,
    PARAM_FIELDS,
    REVISION_FIELDS,
    SPECS,
    TEXT_FIELDS,
    GenerationParams,
    check_http_url,
    fields_for,
    is_url,
)

IMAGE = "https://cdn.invalid/duck.png"


def refused(**fields: Any) -> ModelsLabError:
    params = GenerationParams(**{"init_image": IMAGE, **fields})
    with pytest.raises(ModelsLabError) as info:
        params.validate()
    assert info.value.category is Category.INVALID_INPUT
    return info.value


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("resolution", 31, "from 32 to 512"),
        ("resolution", 513, "from 32 to 512"),
        ("resolution", 256.5, "whole number"),
        ("resolution", True, "whole number"),
        ("resolution", "256", "whole number"),
        ("foreground_ratio", 0.49, "from 0.5 to 1"),
        ("foreground_ratio", float("nan"), "from 0.5 to 1"),
        ("foreground_ratio", float("inf"), "from 0.5 to 1"),
        ("chunk_size", 1023, "from 1024 to 12000"),
        ("seed", -1, "from 0 to"),
        ("seed", 2**32, "from 0 to"),
        ("remove_bg", "yes", "true or false"),
        ("output_format", "fbx", "obj, glb, ply, stl"),
        ("output_format", None, "obj, glb, ply, stl"),
        ("webhook", "ftp://hooks.invalid/x", "http://"),
        ("webhook", "https://hooks.invalid/a b", "spaces"),
        ("track_id", "x" * 257, "at most 256"),
        ("track_id", 5, "at most 256"),
    ],
)
def test_bad_values_name_their_field(field: str, value: Any, says: str) -> None:
    error = refused(**{field: value})
    assert error.message.startswith(field) and says in error.message


@pytest.mark.parametrize(
    ("image", "says"),
    [
        ("", "no image was given"),
        (None, "no image was given"),
        ("/local/duck.png", "only http:// and https://"),
        ("https://", "only http:// and https://"),
        ("https://cdn.invalid:0/duck.png", "only http:// and https://"),
        ("https://cdn.invalid/" + "a" * 2100, "longer than 2048"),
        ("https://cdn.invalid/\x00.png", "control characters"),
        (12, "must be a URL"),
    ],
)
def test_bad_images_name_init_image(image: Any, says: str) -> None:
    error = refused(init_image=image)
    assert error.message.startswith("init_image") and says in error.message


def test_good_values_pass_and_validate_returns_the_params() -> None:
    for fmt in OUTPUT_FORMATS:
        params = GenerationParams(
            init_image=IMAGE, output_format=fmt, resolution=32, foreground_ratio=1, seed=2**32 - 1
        )
        assert params.validate() is params
    assert GenerationParams(init_image=IMAGE, resolution=256.0).validate().resolution == 256.0  # whole floats pass
    assert GenerationParams(init_image=IMAGE, webhook="").validate().webhook == ""  # empty means none


def test_an_upload_is_validated_without_an_image() -> None:
    GenerationParams().validate(require_image=False)
    with pytest.raises(ModelsLabError):
        GenerationParams(resolution=5).validate(require_image=False)


def test_body_sends_the_image_under_both_names_and_no_key() -> None:
    body = GenerationParams(init_image=IMAGE, webhook="", track_id="").to_body()
    assert body["init_image"] == body["image"] == IMAGE
    assert body["webhook"] is None and body["track_id"] is None
    assert "key" not in body


def test_dict_round_trip_ignores_unknown_keys() -> None:
    params = GenerationParams(init_image=IMAGE, resolution=128, remove_bg=True, track_id="t1")
    assert GenerationParams.from_dict({**params.to_dict(), "no_such_field": 3}) == params


def test_every_field_but_the_images_and_the_kind_has_one_spec() -> None:
    assert "init_image" not in PARAM_FIELDS
    assert set(SPECS) | {"init_image", "extra_views", "kind"} == set(GenerationParams().to_dict())
    assert set(fields_for("image")) == set(PARAM_FIELDS) | set(REVISION_FIELDS)
    assert set(fields_for("text")) == set(PARAM_FIELDS) - {"resolution", "chunk_size"} | set(TEXT_FIELDS)


def test_check_http_url_names_the_given_field() -> None:
    with pytest.raises(ModelsLabError) as info:
        check_http_url("mailto:a@b.invalid", "image URL")
    assert info.value.message.startswith("image URL:")
    assert check_http_url("http://[::1]:8080/a.png", "x") == "http://[::1]:8080/a.png"


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("https://cdn.invalid/a.png", True),
        ("http://[", True),  # broken, but URL-shaped: check_http_url then says what is wrong
        ("ftp://host/a.png", True),
        ("/home/me/a.png", False),
        ("C:\\images\\a.png", False),
        ("C:/images/a.png", False),
        ("a.png", False),
    ],
)
def test_is_url_tells_urls_from_paths(text: str, url: bool) -> None:
    assert is_url(text) is url
