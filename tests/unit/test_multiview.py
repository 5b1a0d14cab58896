"""Several views of one object: the multi_image request shape (no server), then the local server's visual hull
measured against a held-out view of a known synthetic object."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from api.client import ModelsLabClient
from api.errors import Category, ModelsLabError
from api.params import GenerationParams, image_fields
from tests.helpers.clients import expect_error
from tests.helpers.servers import ServerProcess, wait_until

FRONT, SIDE, BACK, LEFT = (f"https://cdn.invalid/{name}.png" for name in ("front", "side", "back", "left"))
RED, BLUE = (220, 40, 30), (30, 60, 220)
SILHOUETTE_SIDE = 160  # pixels of the square in which silhouettes are compared (object height = 0.9 of it)
IOU_MARGIN = 0.3  # front+side must beat the front alone by at least this much on the held-out view


# --- the request's shape --------------------------------------------------------------------------------------------
def test_one_view_is_the_plain_shape_and_several_are_multi_image() -> None:
    assert image_fields([FRONT]) == {"init_image": FRONT, "image": FRONT}
    assert image_fields([FRONT, SIDE]) == {"multi_image": True, "init_image": [FRONT, SIDE], "image": [FRONT, SIDE]}
    body = GenerationParams(init_image=FRONT, extra_views=[SIDE, BACK]).validate().to_body()
    assert body["multi_image"] is True and body["image"] == body["init_image"] == [FRONT, SIDE, BACK]
    assert "multi_image" not in GenerationParams(init_image=FRONT).to_body()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ([SIDE, BACK, LEFT, FRONT], "extra_views: several views means 2 to 4 views in all (front first), got 5"),
        (["/local/side.png"], "extra_views (view 2, right side): only http:// and https://"),
        ([SIDE, "ftp://x/back.png"], "extra_views (view 3, back): only http:// and https://"),
        ([SIDE, 7], "extra_views (view 3, back) must be a URL"),
    ],
)
def test_bad_views_are_named(extra: list[Any], says: str) -> None:
    with pytest.raises(ModelsLabError) as info:
        GenerationParams(init_image=FRONT, extra_views=extra).validate()
    assert info.value.category is Category.INVALID_INPUT and info.value.message.startswith(says)


def test_before_upload_only_the_number_of_views_is_checked() -> None:
    GenerationParams(extra_views=["/local/side.png"]).validate(require_image=False)
    with pytest.raises(ModelsLabError):
        GenerationParams(extra_views=["a", "b", "c", "d"]).validate(require_image=False)
    params = GenerationParams.from_dict(GenerationParams(init_image=FRONT, extra_views=[SIDE]).to_dict())
    assert params.views == [FRONT, SIDE]


# --- a known object, seen from any side -----------------------------------------------------------------------------
def inside(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """A long low box (narrow from the front, long from the side) with a round tower at its back."""
    body = (np.abs(x) <= 0.25) & (np.abs(y + 0.2) <= 0.3) & (np.abs(z) <= 0.7)
    tower = (x**2 + (z + 0.45) ** 2 <= 0.2**2) & (y >= 0.0) & (y <= 0.5)
    return body | tower


def object_points(step: float = 0.01) -> np.ndarray:
    grid = np.arange(-1.0, 1.0, step)
    x, y, z = np.meshgrid(grid, grid, grid, indexing="ij")
    solid = inside(x, y, z)
    return np.column_stack([x[solid], y[solid], z[solid]])


def across(points: np.ndarray, degrees: float) -> np.ndarray:
    """The horizontal image coordinate of points seen from a camera turned `degrees` from the front (+Z) towards
    the right side (+X): the convention of the views (front, right side, back, left side)."""
    t = math.radians(degrees)
    return points[:, 0] * math.cos(t) - points[:, 2] * math.sin(t)


def photo(points: np.ndarray, degrees: float, colour: tuple[int, int, int], size: int = 256) -> bytes:
    """A PNG of the object seen from that side (orthographic, transparent background, one colour)."""
    column = np.round((across(points, degrees) + 1) / 2 * (size - 1)).astype(int)
    row = np.round((1 - (points[:, 1] + 1) / 2) * (size - 1)).astype(int)
    solid = np.zeros((size, size), bool)
    solid[row, column] = True
    solid = ndimage.binary_closing(solid, iterations=2)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[solid] = (*colour, 255)
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, "PNG")
    return out.getvalue()


def normalised(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates with the object's height 0.9 of the square, centred on the middle of its box."""
    height = v.max() - v.min()
    scale = 0.9 * SILHOUETTE_SIDE / height
    middle = (v.max() + v.min()) / 2
    return SILHOUETTE_SIDE / 2 + u * scale, SILHOUETTE_SIDE / 2 - (v - middle) * scale


def true_silhouette(points: np.ndarray, degrees: float) -> np.ndarray:
    u, v = normalised(across(points, degrees), points[:, 1])
    solid = np.zeros((SILHOUETTE_SIDE, SILHOUETTE_SIDE), bool)
    solid[np.clip(v.astype(int), 0, SILHOUETTE_SIDE - 1), np.clip(u.astype(int), 0, SILHOUETTE_SIDE - 1)] = True
    return ndimage.binary_closing(solid, iterations=2)


def mesh_silhouette(vertices: np.ndarray, faces: np.ndarray, degrees: float) -> np.ndarray:
    """Every triangle of the mesh filled in, seen from that side (the mesh is centred on its box by the server)."""
    u, v = normalised(across(vertices, degrees), vertices[:, 1])
    image = Image.new("1", (SILHOUETTE_SIDE, SILHOUETTE_SIDE), 0)
    draw = ImageDraw.Draw(image)
    for a, b, c in faces:
        draw.polygon([(u[a], v[a]), (u[b], v[b]), (u[c], v[c])], fill=1)
    return np.asarray(image, dtype=bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices, 0-based faces, colours) of the server's OBJ."""
    lines = path.read_text().splitlines()
    v = np.asarray([line.split()[1:7] for line in lines if line.startswith("v ")], dtype=np.float64)
    f = np.asarray([line.split()[1:4] for line in lines if line.startswith("f ")], dtype=np.int64) - 1
    return v[:, :3], f, v[:, 3:]


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Photos of the object at 0, 90, 180 and 270 degrees (front red, right side blue, back red, left blue)."""
    folder = tmp_path_factory.mktemp("views")
    points = object_points()
    paths = {}
    for degrees, colour in ((0, RED), (90, BLUE), (180, RED), (270, BLUE)):
        paths[degrees] = folder / f"view_{degrees}.png"
        paths[degrees].write_bytes(photo(points, degrees, colour))
    return paths


def reconstruct(client: ModelsLabClient, paths: list[Path], target: Path) -> Path:
    urls = [client.upload_image(path) for path in paths]
    job = client.submit(GenerationParams(init_image=urls[0], extra_views=urls[1:], resolution=96))
    assert job.job_id

    def done() -> Any:
        status = client.fetch(job.job_id or "")
        return status if status.status == "success" else None

    status = wait_until(done, 60, 0.05, f"job {job.job_id}")
    if len(paths) > 1:
        assert status.meta["multi_image"] is True and status.meta["image"] == urls
    return client.download(status.output, target)


def test_front_and_side_beat_the_front_alone_on_a_held_out_view(
    fresh_server: ServerProcess, client: ModelsLabClient, views: dict[int, Path], tmp_path: Path
) -> None:
    """Silhouette IoU at 45 degrees (a view no reconstruction was given) against the true object."""
    points = object_points()
    held_out = true_silhouette(points, 45)
    scores = {}
    for name, angles in (("front", [0]), ("front+side", [0, 90]), ("all four", [0, 90, 180, 270])):
        target = reconstruct(client, [views[a] for a in angles], tmp_path / f"{name}.obj")
        vertices, faces, _ = read_obj(target)
        scores[name] = iou(mesh_silhouette(vertices, faces, 45), held_out)
    print(f"silhouette IoU at the held-out 45-degree view: {scores}")
    assert scores["front+side"] > scores["front"] + IOU_MARGIN, scores
    assert scores["front+side"] > 0.85 and scores["all four"] >= scores["front+side"] - 0.02, scores
    jobs = {job["views"]: job for job in fresh_server.stats()["jobs"]}
    assert sorted(jobs) == [1, 2, 4] and all(job["status"] == "success" for job in jobs.values())


def test_each_side_is_coloured_from_the_view_that_sees_it(
    client: ModelsLabClient, views: dict[int, Path], tmp_path: Path
) -> None:
    vertices, _, colours = read_obj(reconstruct(client, [views[0], views[90]], tmp_path / "two.obj"))
    front = vertices[:, 2] > vertices[:, 2].max() - 0.02  # on the face towards the front camera
    side = vertices[:, 0] > vertices[:, 0].max() - 0.02  # on the face towards the right-side camera
    assert front.sum() > 20 and side.sum() > 20
    assert np.allclose(np.median(colours[front], axis=0), np.asarray(RED) / 255, atol=0.05)
    assert np.allclose(np.median(colours[side], axis=0), np.asarray(BLUE) / 255, atol=0.05)


def test_the_server_checks_the_views(fresh_server: ServerProcess, views: dict[int, Path]) -> None:
    url = fresh_server.upload(views[0])
    path = "/api/v1/enterprise/3d/image_to_3d"
    for body in (
        {"multi_image": True, "init_image": [url] * 5},
        {"multi_image": True, "image": [url]},
        {"multi_image": True, "image": [url, "ftp://x/y.png"]},
        {"init_image": [url, url]},  # a list needs multi_image
    ):
        answer = fresh_server.post(path, {"key": "k", **body})
        assert answer.status_code == 400 and "init_image" in answer.json()["message"], answer.text
    assert fresh_server.stats()["submits"] == 0


def test_five_views_never_reach_the_server(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    params = GenerationParams(init_image=FRONT, extra_views=[SIDE, BACK, LEFT, FRONT])
    expect_error(Category.INVALID_INPUT, lambda: client.submit(params))
    assert sum(fresh_server.stats()["requests"].values()) == 0
