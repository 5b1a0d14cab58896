"""Text to 3D: the params of a text job and its body (no server), then full jobs against the local server's offline
stand-in in both flavours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.client import ModelsLabClient
from api.errors import Category, ModelsLabError
from api.params import MAX_PROMPT_LENGTH, TEXT_FIELDS, GenerationParams, fields_for, text_params
from tests.helpers.clients import expect_error, make_client
from tests.helpers.servers import ServerProcess, wait_until

IMAGE = "https://cdn.invalid/duck.png"


def refused(params: GenerationParams) -> ModelsLabError:
    with pytest.raises(ModelsLabError) as info:
        params.validate()
    assert info.value.category is Category.INVALID_INPUT
    return info.value


# --- params and body ------------------------------------------------------------------------------------------------
def test_a_text_body_has_the_prompt_and_the_shared_fields_only() -> None:
    body = text_params("a red chair", seed=7, output_format="glb", resolution=64).validate().to_body()
    assert body == {
        "prompt": "a red chair",
        "foreground_ratio": 0.85,
        "remove_bg": False,
        "seed": 7,
        "output_format": "glb",
        "webhook": None,
        "track_id": None,
    }


def test_optional_text_fields_are_sent_when_set() -> None:
    params = text_params(
        "  a lamp ", negative_prompt="blurry", guidance_scale=7.5, num_inference_steps=30, model_id="instantmesh"
    )
    body = params.validate().to_body("enterprise")
    assert body["prompt"] == "a lamp"
    assert {name: body[name] for name in TEXT_FIELDS if name != "prompt"} == {
        "negative_prompt": "blurry",
        "guidance_scale": 7.5,
        "num_inference_steps": 30,
        "model_id": "instantmesh",
    }
    assert params.endpoint == "text_to_3d" and GenerationParams().endpoint == "image_to_3d"


def test_model_id_is_enterprise_only() -> None:
    with pytest.raises(ModelsLabError) as info:
        text_params("a lamp", model_id="instantmesh").to_body("standard")
    assert info.value.message.startswith("model_id") and "enterprise" in info.value.message
    assert "model_id" not in text_params("a lamp").to_body("standard")


@pytest.mark.parametrize(
    ("values", "starts"),
    [
        ({"prompt": ""}, "prompt: no prompt"),
        ({"prompt": "   "}, "prompt: no prompt"),
        ({"prompt": None}, "prompt: no prompt"),
        ({"prompt": 5}, "prompt must be text"),
        ({"prompt": "x" * (MAX_PROMPT_LENGTH + 1)}, f"prompt must be text of at most {MAX_PROMPT_LENGTH}"),
        ({"prompt": "a\x00b"}, "prompt cannot contain control characters"),
        ({"negative_prompt": 5}, "negative_prompt must be text"),
        ({"guidance_scale": 0.5}, "guidance_scale must be a number from 1 to 20"),
        ({"guidance_scale": 21}, "guidance_scale must be a number from 1 to 20"),
        ({"num_inference_steps": 0}, "num_inference_steps must be a whole number from 1 to 50"),
        ({"num_inference_steps": 51}, "num_inference_steps must be a whole number from 1 to 50"),
        ({"seed": -1}, "seed must be a whole number from 0"),
        ({"output_format": "fbx"}, "output_format must be one of"),
        ({"init_image": IMAGE}, "init_image: a text job takes no image"),
        ({"extra_views": [IMAGE]}, "init_image: a text job takes no image"),
        ({"kind": "video"}, "kind must be one of image, text"),
    ],
)
def test_bad_text_jobs_name_the_field(values: dict[str, Any], starts: str) -> None:
    params = GenerationParams.from_dict({"kind": "text", "prompt": "a chair", **values})
    assert refused(params).message.startswith(starts)


def test_an_image_job_refuses_text_fields() -> None:
    error = refused(GenerationParams(init_image=IMAGE, prompt="a chair"))
    assert error.message.startswith("prompt belongs to text_to_3d")
    error = refused(GenerationParams(init_image=IMAGE, guidance_scale=5))
    assert error.message.startswith("guidance_scale belongs to text_to_3d")


def test_fields_for_each_kind() -> None:
    assert "prompt" in fields_for("text") and "resolution" not in fields_for("text")
    assert "prompt" not in fields_for("image") and "mesh_simplify" in fields_for("image")
    with pytest.raises(ModelsLabError):
        fields_for("video")


# --- against the local server ---------------------------------------------------------------------------------------
def wait_success(client: ModelsLabClient, job_id: str) -> Any:
    def done() -> Any:
        status = client.fetch(job_id)
        return status if status.status == "success" else None

    return wait_until(done, 60, 0.05, f"job {job_id}")


def obj_colours(path: Path) -> np.ndarray:
    rows = [line.split()[4:7] for line in path.read_text().splitlines() if line.startswith("v ")]
    return np.asarray(rows, dtype=np.float64)


@pytest.mark.parametrize(("flavor", "server_flavor"), [("enterprise", "enterprise"), ("standard", "v6")])
def test_a_text_job_runs_end_to_end_in_both_flavours(
    fresh_server: ServerProcess, tmp_path: Path, flavor: str, server_flavor: str
) -> None:
    client = make_client(fresh_server.url, flavor=flavor)
    try:
        extra = {"model_id": "instantmesh"} if flavor == "enterprise" else {}
        params = text_params("a red teapot", negative_prompt="handles", guidance_scale=6.0, seed=11, **extra)
        submitted = client.submit(params)
        assert submitted.status == "processing" and submitted.job_id
        assert submitted.raw["fetch_result"].endswith(f"/3d/fetch/{submitted.job_id}")
        done = wait_success(client, submitted.job_id)
        target = client.download([*done.output, *done.proxy_links], tmp_path / "teapot.obj")
    finally:
        client.close()
    assert done.meta["prompt"] == "a red teapot" and done.meta["negative_prompt"] == "handles"
    assert done.meta["guidance_scale"] == 6.0 and done.meta["seed"] == 11
    assert done.meta.get("model_id") == extra.get("model_id")
    assert "stand-in" in done.meta["stand_in"]
    colours = obj_colours(target)
    assert len(colours) > 1000
    assert np.allclose(np.median(colours, axis=0), [1.0, 0.0, 0.0], atol=0.05)  # "red" from the prompt
    (job,) = fresh_server.stats()["jobs"]
    assert job["flavor"] == server_flavor and job["kind"] == "text" and job["status"] == "success"


def test_the_prompt_shapes_the_stand_in_mesh(client: ModelsLabClient, tmp_path: Path) -> None:
    """The words are what is reconstructed: a one-letter "I" stands tall, "cup" lies wide."""
    aspect = {}
    for prompt in ("I", "cup"):
        job = client.submit(text_params(prompt, seed=1))
        done = wait_success(client, job.job_id or "")
        target = client.download(done.output, tmp_path / f"{prompt}.obj")
        rows = [line.split()[1:3] for line in target.read_text().splitlines() if line.startswith("v ")]
        size = np.ptp(np.asarray(rows, dtype=np.float64), axis=0)
        aspect[prompt] = size[1] / size[0]  # height / width
    assert aspect["I"] > 3.0 and aspect["cup"] < 0.8, aspect


def test_the_server_refuses_a_text_job_without_a_prompt(fresh_server: ServerProcess) -> None:
    for path in ("/api/v6/3d/text_to_3d", "/api/v1/enterprise/3d/text_to_3d"):
        for body in ({"key": "k"}, {"key": "k", "prompt": "  "}, {"key": "k", "prompt": "x", "guidance_scale": 99}):
            answer = fresh_server.post(path, body)
            assert answer.status_code == 400 and answer.json()["status"] == "error"
    assert fresh_server.stats()["submits"] == 0


def test_bad_text_jobs_never_reach_the_server(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    expect_error(Category.INVALID_INPUT, lambda: client.submit(text_params("")))
    standard = make_client(fresh_server.url, flavor="standard")
    expect_error(Category.INVALID_INPUT, lambda: standard.submit(text_params("a lamp", model_id="instantmesh")))
    assert sum(fresh_server.stats()["requests"].values()) == 0
