"""A mesh from the server is untrusted: only a self-contained file may reach an importer.

The local server's hostile-mesh faults serve real meshes that point elsewhere (a GLB buffer or image `uri`,
an OBJ `mtllib` whose material names a texture). The download refuses each as bad_mesh and leaves no file;
the harmless variants (a `data:` URI, a sibling material file) still download. api.meshcheck is also tried
directly on hand-made files for the tricks a server could add (continued lines, backslashes, symlinks).
"""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path

import pytest

from api.cache import MeshCache
from api.client import JobStatus, ModelsLabClient
from api.errors import Category, ModelsLabError
from api.jobs import JobRunner
from api.journal import JobJournal
from api.meshcheck import check_self_contained
from api.params import GenerationParams
from tests.helpers.clients import expect_error, make_client
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess, wait_until

IMAGE = example_image("vase_plain.png")
PIXEL_PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a")).decode()


def finished(client: ModelsLabClient, fmt: str) -> JobStatus:
    job_id = client.submit(GenerationParams(init_image=client.upload_image(IMAGE), resolution=32, output_format=fmt))
    ident = job_id.job_id or ""

    def done() -> JobStatus | None:
        status = client.fetch(ident)
        return status if status.status == "success" else None

    return wait_until(done, 30, 0.05, f"job {ident}")


def hostile_job(srv: ServerProcess, client: ModelsLabClient, fault: dict, fmt: str) -> list[str]:
    srv.set_faults([{**fault, "endpoint": "submit"}])
    job = finished(client, fmt)
    assert srv.stats()["faults_fired"]["by_kind"].get(fault["fault"]) == 1, "the server did not make it hostile"
    return [*job.output, *job.proxy_links]


def job_folder(tmp_path: Path) -> Path:
    """Where the mesh goes: a folder of its own, two levels below tmp_path (room for ../ to land in tmp_path)."""
    (tmp_path / "cache").mkdir(exist_ok=True)
    return tmp_path / "cache" / "job"


@pytest.mark.parametrize(
    ("fault", "fmt", "said"),
    [
        ({"fault": "glb_buffer_uri", "uri": "/dev/zero"}, "glb", "/dev/zero"),
        ({"fault": "glb_buffer_uri", "uri": "../../secret.bin"}, "glb", "secret.bin"),
        ({"fault": "glb_buffer_uri", "uri": "file:///etc/passwd"}, "glb", "passwd"),
        ({"fault": "glb_image_uri", "uri": "../../outside.png"}, "glb", "outside.png"),
        ({"fault": "glb_image_uri", "uri": "\\\\server\\share\\x.png"}, "glb", "server"),
        ({"fault": "obj_mtllib", "mtllib": "../../x.mtl"}, "obj", "x.mtl"),
        ({"fault": "obj_mtllib", "mtllib": "/etc/x.mtl"}, "obj", "/etc/x.mtl"),
        ({"fault": "obj_mtllib", "mtllib": "C:\\Users\\me\\x.mtl"}, "obj", "x.mtl"),
        ({"fault": "obj_mtllib", "mtllib": "\\\\server\\share\\x.mtl"}, "obj", "server"),
        ({"fault": "obj_mtllib", "mtllib": "sub/../../x.mtl"}, "obj", "x.mtl"),
    ],
)
def test_hostile_meshes_are_refused(
    fresh_server: ServerProcess, client: ModelsLabClient, tmp_path: Path, fault: dict, fmt: str, said: str
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x01" * 4096)
    (tmp_path / "x.mtl").write_text("newmtl hostile\nmap_Kd secret.bin\n", encoding="utf-8")
    urls = hostile_job(fresh_server, client, fault, fmt)
    target = job_folder(tmp_path) / f"mesh.{fmt}"
    error = expect_error(Category.BAD_MESH, lambda: client.download(urls, target, expected_format=fmt))
    assert said in error.message and "refused" in error.message, error.message
    assert "not opened" in error.fix
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cache", "secret.bin", "x.mtl"], "a refused mesh left files"
    assert fresh_server.stats()["requests"]["download"] == 2  # the mirror was asked too, once: same bytes


@pytest.mark.parametrize(
    ("fault", "fmt"),
    [
        ({"fault": "glb_image_uri", "uri": f"data:image/png;base64,{PIXEL_PNG}"}, "glb"),
        ({"fault": "obj_mtllib", "mtllib": "model.mtl"}, "obj"),  # a sibling that is not there: a warning only
    ],
)
def test_self_contained_variants_still_download(
    fresh_server: ServerProcess, client: ModelsLabClient, tmp_path: Path, fault: dict, fmt: str
) -> None:
    urls = hostile_job(fresh_server, client, fault, fmt)
    target = job_folder(tmp_path) / f"mesh.{fmt}"
    assert client.download(urls, target, expected_format=fmt) == target
    assert target.stat().st_size > 0


def test_material_file_inside_the_folder_must_name_textures_inside_too(
    fresh_server: ServerProcess, client: ModelsLabClient, tmp_path: Path
) -> None:
    folder = job_folder(tmp_path)
    folder.mkdir(parents=True)
    material = folder / "model.mtl"
    urls = hostile_job(fresh_server, client, {"fault": "obj_mtllib", "mtllib": "model.mtl"}, "obj")
    for texture in ("/etc/passwd", "..\\..\\secret.png", "-bm 0.5 ../secret.png", "-clamp on C:/x.png"):
        material.write_text(f"newmtl hostile\nKd 1 1 1\nmap_Kd {texture}\n", encoding="utf-8")
        error = expect_error(Category.BAD_MESH, lambda: client.download(urls, folder / "m.obj"))
        assert "texture" in error.message, error.message
        assert not (folder / "m.obj").exists()
    material.write_text("newmtl hostile\nmap_Kd -s 1 1 1 wood.png\nbump wood_n.png\n", encoding="utf-8")
    assert client.download(urls, folder / "m.obj").is_file()


def test_a_hostile_mesh_fails_the_job_and_never_lands_in_the_cache(fresh_server: ServerProcess, tmp_path: Path) -> None:
    """The runner's path (operator, script, batch and resume all use it): the job fails as bad_mesh."""
    fresh_server.set_faults([{"fault": "glb_buffer_uri", "endpoint": "submit", "uri": "/dev/zero"}])
    client = make_client(fresh_server.url)
    runner = JobRunner(client, JobJournal(tmp_path / "jobs"), MeshCache(tmp_path / "meshes"), max_workers=1)
    try:
        record = runner.submit(str(IMAGE), GenerationParams(resolution=32, output_format="glb"))
        done = runner.wait(record.local_id, timeout=60)
    finally:
        runner.shutdown()
        client.close()
    assert done.state == "failed" and done.error and done.error["category"] == "bad_mesh", done.error
    assert "/dev/zero" in done.error["message"]
    assert not [p for p in (tmp_path / "meshes").rglob("*") if p.is_file()]


# --- api.meshcheck on hand-made files ------------------------------------------------------------------------------
def glb(document: dict) -> bytes:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    return b"glTF" + struct.pack("<II", 2, 20 + len(text)) + struct.pack("<II", len(text), 0x4E4F534A) + text


def refused(path: Path, fmt: str) -> str:
    with pytest.raises(ModelsLabError) as caught:
        check_self_contained(path, fmt)
    assert caught.value.category is Category.BAD_MESH
    return caught.value.message


def test_glb_uri_anywhere_in_the_json_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "m.glb"
    path.write_bytes(glb({"asset": {"version": "2.0"}, "buffers": [{"byteLength": 4}]}))
    check_self_contained(path, "glb")
    path.write_bytes(glb({"asset": {"version": "2.0"}, "extensions": {"X_audio": {"sources": [{"uri": "a.wav"}]}}}))
    assert "a.wav" in refused(path, "glb")
    path.write_bytes(glb({"buffers": [{"uri": "DATA:application/octet-stream;base64,AAAA", "byteLength": 3}]}))
    check_self_contained(path, "glb")
    path.write_bytes(b"glTF" + struct.pack("<II", 2, 28) + struct.pack("<II", 8, 0x4E4F534A) + b"{not js}")
    assert "not valid" in refused(path, "glb")


def test_obj_tricks(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    folder.mkdir()
    obj = folder / "m.obj"
    (tmp_path / "x.mtl").write_text("newmtl a\n", encoding="utf-8")
    cases = [
        "mtllib \\\n../x.mtl\n",  # a continued line (Blender's reader joins it)
        "  MTLLIB ../x.mtl\r\n",  # indented, upper case, CRLF
        "mtllib ok.mtl ../x.mtl\n",  # several names on one line
        "mtllib ~/x.mtl\n",
    ]
    for text in cases:
        obj.write_text(f"# made by hand\n{text}v 0 0 0\nf 1 1 1\n", encoding="utf-8")
        assert "mtllib" in refused(obj, "obj"), text
    # The OBJ names itself as its material file and hides a texture line in it.
    obj.write_text("mtllib m.obj\nv 0 0 0\nf 1 1 1\nmap_Kd /etc/passwd\n", encoding="utf-8")
    assert "texture" in refused(obj, "obj")
    # A material file inside the folder that is a symlink to one outside it.
    os.symlink(tmp_path / "x.mtl", folder / "link.mtl")
    obj.write_text("mtllib link.mtl\nv 0 0 0\nf 1 1 1\n", encoding="utf-8")
    assert "mtllib" in refused(obj, "obj")
    obj.write_text("# mtllib ../x.mtl is only a comment\nv 0 0 0\nf 1 1 1\n", encoding="utf-8")
    check_self_contained(obj, "obj")


def test_a_long_obj_is_scanned_to_its_end(tmp_path: Path) -> None:
    obj = tmp_path / "m.obj"
    with open(obj, "wb") as out:
        out.write(b"v 0 0 0\n" * 400_000)  # 3.2 MB: the statement sits past several read chunks
        out.write(b"mtllib /etc/x.mtl\nf 1 1 1\n")
    assert "/etc/x.mtl" in refused(obj, "obj")


@pytest.mark.parametrize("fmt", ["ply", "stl"])
def test_ply_and_stl_are_self_contained(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"m.{fmt}"
    path.write_bytes(b"ply\nformat ascii 1.0\ncomment TextureFile /etc/passwd\nend_header\n")
    check_self_contained(path, fmt)
