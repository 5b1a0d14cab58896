"""The server's reconstruction gives closed, coloured, upright meshes that follow the image and the parameters."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import requests
import trimesh
from PIL import Image, ImageDraw

from server import reconstruct
from tests.helpers.servers import ServerProcess, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "test-key"


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def to_trimesh(mesh: reconstruct.Mesh) -> trimesh.Trimesh:
    """Through the OBJ text, as a client would read it (trimesh welds vertices by position)."""
    return trimesh.load(io.BytesIO(reconstruct.obj_bytes(mesh)), file_type="obj")


def red_disc() -> bytes:
    image = Image.new("RGB", (200, 200), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((40, 40, 160, 160), fill=(220, 20, 20))
    return png(image)


@pytest.mark.parametrize("name", ["mushroom_rgba.png", "vase_plain.png", "duck_512.png"])
def test_examples_give_closed_coloured_3d_meshes(name: str) -> None:
    mesh = reconstruct.reconstruct((EXAMPLES / name).read_bytes(), resolution=96)
    tm = to_trimesh(mesh)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    assert tm.euler_number == 2  # one closed surface without handles
    extents = tm.extents
    assert 1.5 < extents.max() < 1.8  # ~2 units * foreground_ratio 0.85
    assert extents[2] > 0.25 * extents.max()  # visibly 3D, not a flat slab
    assert np.allclose(tm.bounds.mean(axis=0), 0, atol=0.02)  # centred
    assert mesh.colors.shape == (len(mesh.vertices), 3) and mesh.colors.std(axis=0).max() > 0.05


def test_colours_come_from_the_image() -> None:
    mesh = reconstruct.reconstruct(red_disc(), resolution=64, remove_bg=True)
    mean = mesh.colors.mean(axis=0)
    assert mean[0] > 0.7 and mean[1] < 0.25 and mean[2] < 0.25  # red, no white background on the rim
    assert (mesh.colors[:, 1] > 0.5).mean() < 0.01


def test_detail_grows_with_resolution() -> None:
    data = (EXAMPLES / "vase_plain.png").read_bytes()
    counts = [len(reconstruct.reconstruct(data, resolution=r).vertices) for r in (64, 128, 256)]
    assert counts[0] * 3 < counts[1] and counts[1] * 3 < counts[2]


def test_foreground_ratio_sets_the_size() -> None:
    data = (EXAMPLES / "duck_512.png").read_bytes()
    small = reconstruct.reconstruct(data, resolution=64, foreground_ratio=0.5).vertices
    large = reconstruct.reconstruct(data, resolution=64, foreground_ratio=1.0).vertices
    ratio = np.ptp(small, axis=0)[0] / np.ptp(large, axis=0)[0]
    assert 0.45 < ratio < 0.55


def test_remove_bg_keys_out_a_plain_background() -> None:
    data = (EXAMPLES / "vase_plain.png").read_bytes()
    width, height, _ = np.ptp(reconstruct.reconstruct(data, resolution=64, remove_bg=True).vertices, axis=0)
    assert height > 1.5 and width < 0.75 * height  # the vase, not the square frame


def test_busy_background_is_kept_unless_remove_bg() -> None:
    ramp = np.linspace(0, 1, 160, dtype=np.float32)[None, :, None]
    photo = ((1 - ramp) * [40, 60, 200] + ramp * [250, 150, 40]) * np.ones((160, 1, 1))  # blue -> orange
    photo[50:110, 60:100] = (20, 200, 20)  # a green block in front of it
    data = png(Image.fromarray(photo.astype(np.uint8), "RGB"))
    kept = np.ptp(reconstruct.reconstruct(data, resolution=48).vertices, axis=0)
    assert abs(kept[0] - kept[1]) < 0.1  # no plain background: the whole (square) frame is the object
    keyed = np.ptp(reconstruct.reconstruct(data, resolution=48, remove_bg=True).vertices, axis=0)
    assert keyed[0] < 0.8 * keyed[1]  # the 40x60 green block


def test_alpha_is_respected() -> None:
    image = Image.new("RGBA", (128, 128), (30, 90, 200, 0))  # one colour everywhere: only alpha shows the shape
    ImageDraw.Draw(image).rectangle((44, 10, 84, 118), fill=(30, 90, 200, 255))
    width, height, _ = np.ptp(reconstruct.reconstruct(png(image), resolution=48).vertices, axis=0)
    assert width < 0.5 * height


def test_mushroom_stands_upright_facing_front() -> None:
    mesh = reconstruct.reconstruct((EXAMPLES / "mushroom_rgba.png").read_bytes(), resolution=64)
    red = (mesh.colors[:, 0] > 0.4) & (mesh.colors[:, 1] < 0.3)
    order = np.argsort(mesh.vertices[:, 1])
    tenth = len(order) // 10
    assert red[order[-tenth:]].mean() > 0.6  # Y-up: the red cap is on top ...
    assert red[order[:tenth]].mean() == 0.0  # ... and the pale stem at the bottom
    front = mesh.vertices[:, 2] > 0
    assert 0.4 < front.mean() < 0.6  # symmetric in depth around the image plane


def test_chunk_size_does_not_change_the_field() -> None:
    height = np.random.default_rng(1).random((37, 53), dtype=np.float32) * 50
    whole = reconstruct.evaluate_field(height, 12, 12000)
    assert np.array_equal(whole, reconstruct.evaluate_field(height, 12, 1))
    assert np.array_equal(whole, reconstruct.evaluate_field(height, 12, 100))
    assert whole[5, 3, 7] == pytest.approx(height[3, 7] - 0.25)


@pytest.mark.parametrize(("fmt", "magic"), [("glb", b"glTF"), ("ply", b"ply"), ("stl", None), ("obj", None)])
def test_formats_over_http(fresh_server: ServerProcess, fmt: str, magic: bytes | None) -> None:
    srv = fresh_server
    url = srv.upload(EXAMPLES / "mushroom_rgba.png")
    body = {"key": KEY, "init_image": url, "resolution": 48, "output_format": fmt}
    job = srv.post("/api/v6/3d/image_to_3d", body).json()
    assert job["future_links"][0].endswith("." + fmt)

    def done() -> dict | None:
        answer = srv.post(f"/api/v6/3d/fetch/{job['id']}", {"key": KEY}).json()
        return answer if answer["status"] == "success" else None

    result = wait_until(done, 20, 0.05)
    data = requests.get(result["output"][0], timeout=10).content
    if magic:
        assert data.startswith(magic)
    tm = trimesh.load(io.BytesIO(data), file_type=fmt, force="mesh")
    assert tm.is_watertight and len(tm.faces) > 1000
    if fmt != "stl":
        colours = np.asarray(tm.visual.vertex_colors)[:, :3]
        assert colours.std(axis=0).max() > 10
    up = 2 if fmt in ("ply", "stl") else 1  # PLY/STL: Blender's Z-up; OBJ/glTF: Y-up (importers convert)
    assert tm.extents[up] == pytest.approx(tm.extents.max(), abs=0.05)
