"""The newer revision's fields: checked before any request, sent only when set, echoed by the local server, and
mesh_simplify really lowering the face count of the mesh it sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.client import ModelsLabClient
from api.errors import Category, ModelsLabError
from api.params import PARAM_FIELDS, REVISION_FIELDS, GenerationParams
from tests.helpers.clients import expect_error
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess, wait_until

IMAGE = "https://cdn.invalid/duck.png"
EXAMPLE = example_image("vase_plain.png")


def refused(**values: Any) -> ModelsLabError:
    with pytest.raises(ModelsLabError) as info:
        GenerationParams(init_image=IMAGE, **values).validate()
    assert info.value.category is Category.INVALID_INPUT
    return info.value


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("ss_guidance_strength", -0.1, "from 0 to 10"),
        ("ss_guidance_strength", 10.01, "from 0 to 10"),
        ("ss_guidance_strength", float("nan"), "from 0 to 10"),
        ("ss_guidance_strength", "7.5", "from 0 to 10"),
        ("ss_sampling_steps", 0, "whole number from 1 to 50"),
        ("ss_sampling_steps", 51, "whole number from 1 to 50"),
        ("ss_sampling_steps", 12.5, "whole number from 1 to 50"),
        ("slat_guidance_strength", 11, "from 0 to 10"),
        ("slat_sampling_steps", 0, "whole number from 1 to 50"),
        ("slat_sampling_steps", True, "whole number from 1 to 50"),
        ("mesh_simplify", 0.89, "from 0.9 to 0.98"),
        ("mesh_simplify", 0.985, "from 0.9 to 0.98"),
        ("render", "yes", "true or false"),
        ("render", 1, "true or false"),
        ("temp", "no", "true or false"),
    ],
)
def test_bad_values_name_the_field_and_its_range(field: str, value: Any, says: str) -> None:
    error = refused(**{field: value})
    assert error.message.startswith(field) and says in error.message


def test_the_ranges_ends_pass() -> None:
    for low_or_high in (0, 1):
        values = {
            "ss_guidance_strength": (0.0, 10.0)[low_or_high],
            "ss_sampling_steps": (1, 50)[low_or_high],
            "slat_guidance_strength": (0, 10)[low_or_high],
            "slat_sampling_steps": (1, 50)[low_or_high],
            "mesh_simplify": (0.90, 0.98)[low_or_high],
            "render": bool(low_or_high),
            "temp": bool(low_or_high),
        }
        params = GenerationParams(init_image=IMAGE, **values)
        assert params.validate() is params


def test_unset_fields_are_not_sent_so_older_servers_see_the_old_body() -> None:
    body = GenerationParams(init_image=IMAGE).to_body()
    assert not set(REVISION_FIELDS) & set(body)
    assert set(body) == {"init_image", "image", *PARAM_FIELDS}


def test_set_fields_are_sent_and_temp_as_yes_or_no() -> None:
    values = {
        "ss_guidance_strength": 7.5,
        "ss_sampling_steps": 12,
        "slat_guidance_strength": 3.0,
        "slat_sampling_steps": 12,
        "mesh_simplify": 0.95,
        "render": False,
    }
    body = GenerationParams(init_image=IMAGE, temp=True, **values).to_body()
    assert {name: body[name] for name in values} == values
    assert body["temp"] == "yes"
    assert GenerationParams(init_image=IMAGE, temp=False).to_body()["temp"] == "no"
    assert "multi_image" not in body


def test_journal_round_trip_keeps_unset_as_unset() -> None:
    params = GenerationParams(init_image=IMAGE, mesh_simplify=0.92)
    again = GenerationParams.from_dict(params.to_dict())
    assert again == params and again.ss_sampling_steps is None and again.to_body() == params.to_body()


def test_a_text_job_refuses_image_only_fields() -> None:
    with pytest.raises(ModelsLabError) as info:
        GenerationParams(kind="text", prompt="a chair", mesh_simplify=0.95).validate()
    assert info.value.message.startswith("mesh_simplify belongs to image_to_3d")


# --- against the local server ---------------------------------------------------------------------------------------
def run(client: ModelsLabClient, tmp_path: Path, name: str, **values: Any) -> tuple[dict, int]:
    """Submit the example with these fields, wait, download; returns (the success meta, the OBJ's face count)."""
    url = client.upload_image(EXAMPLE)
    job = client.submit(GenerationParams(init_image=url, **values))
    assert job.job_id

    def done() -> Any:
        status = client.fetch(job.job_id or "")
        return status if status.status == "success" else None

    status = wait_until(done, 60, 0.05, f"job {job.job_id}")
    target = client.download(status.output, tmp_path / f"{name}.obj")
    faces = sum(1 for line in target.read_text().splitlines() if line.startswith("f "))
    return status.meta, faces


def test_the_server_echoes_the_fields_and_mesh_simplify_lowers_the_face_count(
    fresh_server: ServerProcess, client: ModelsLabClient, tmp_path: Path
) -> None:
    plain_meta, plain_faces = run(client, tmp_path, "plain", resolution=128)
    assert not set(REVISION_FIELDS) - {"render", "temp"} & set(plain_meta)
    assert plain_meta["render"] is False and plain_meta["temp"] == "no"
    sent = {
        "ss_guidance_strength": 7.5,
        "ss_sampling_steps": 20,
        "slat_guidance_strength": 2.5,
        "slat_sampling_steps": 30,
        "mesh_simplify": 0.90,
        "render": True,
    }
    meta, faces_90 = run(client, tmp_path, "s90", resolution=128, temp=True, **sent)
    assert {name: meta[name] for name in sent} == sent and meta["temp"] == "yes"
    _, faces_95 = run(client, tmp_path, "s95", resolution=128, mesh_simplify=0.95)
    _, faces_98 = run(client, tmp_path, "s98", resolution=128, mesh_simplify=0.98)
    assert plain_faces > faces_90 > faces_95 > faces_98 > 0
    # mesh_simplify is the share of triangles removed: about 10 %, 5 % and 2 % of them stay.
    for kept, share in ((faces_90, 0.10), (faces_95, 0.05), (faces_98, 0.02)):
        assert 0.5 * share < kept / plain_faces < 2.0 * share, (kept, plain_faces)
    jobs = fresh_server.stats()["jobs"]
    assert sorted(job["faces"] for job in jobs) == sorted([plain_faces, faces_90, faces_95, faces_98])


def test_the_server_refuses_out_of_range_values(fresh_server: ServerProcess) -> None:
    url = fresh_server.upload(EXAMPLE)
    for name, value in (("mesh_simplify", 0.5), ("ss_sampling_steps", 99), ("slat_guidance_strength", -1)):
        answer = fresh_server.post("/api/v6/3d/image_to_3d", {"key": "k", "init_image": url, name: value})
        assert answer.status_code == 400 and name in answer.json()["message"]
    assert fresh_server.stats()["submits"] == 0


def test_bad_values_never_reach_the_server(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    expect_error(Category.INVALID_INPUT, lambda: client.submit(GenerationParams(init_image=IMAGE, ss_sampling_steps=0)))
    assert sum(fresh_server.stats()["requests"].values()) == 0
