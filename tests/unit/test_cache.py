"""MeshCache: server-supplied names never escape the cache folder; retention pruning."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import Category, ClientConfig, GenerationParams, JobRunner, ModelsLabClient, ModelsLabError
from api.cache import MeshCache, safe_name
from api.jobs import JobRecord
from api.journal import JobJournal

REPO = Path(__file__).resolve().parents[2]
SAFE = re.compile(r"[A-Za-z0-9._-]+")
HOSTILE = [
    "../../etc/passwd",
    "/abs/x.obj",
    "..",
    "...",
    "....//....//x.obj",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fshadow",  # encoded twice
    "C:\\Windows\\System32\\x.obj",
    "\\\\server\\share\\x.obj",
    "é漢字 ;$(rm -rf ~)|.obj",
    "nul\x00byte.obj",
    "",
    " ",
    "-rf",
    ".bashrc",
    "~/.ssh/id_rsa",
    "a" * 500,
]


def record(local_id: str = "f" * 32, **fields) -> JobRecord:
    values = {
        "name": "duck",
        "source": "/tmp/duck.png",
        "params": {"output_format": "obj"},
        "base_url": "http://127.0.0.1:1",
        "flavor": "enterprise",
        **fields,
    }
    return JobRecord(local_id=local_id, **values)


def assert_inside(cache: MeshCache, path: Path) -> None:
    assert path.parent == cache.directory
    assert path.resolve().parent == cache.directory.resolve()
    assert SAFE.fullmatch(path.name), path.name
    assert ".." not in path.name
    assert not path.name.startswith((".", "-"))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_stay_inside(tmp_path: Path, hostile: str) -> None:
    cache = MeshCache(tmp_path / "meshes")
    for job in (record(meta={"file_prefix": hostile}), record(remote_id=hostile), record(name=hostile)):
        for url in (f"http://h/out/{hostile}", "http://h/out/" + hostile.replace("/", "%2F"), None):
            path = cache.path_for(job, url)
            assert_inside(cache, path)
            assert path.suffix == ".obj"


def test_hostile_local_id_and_format(tmp_path: Path) -> None:
    cache = MeshCache(tmp_path)
    path = cache.path_for(record("../../etc", params={"output_format": "../../sh"}), "http://h/out/x.glb")
    assert_inside(cache, path)
    assert path.suffix == ".glb"  # unknown format: the URL's (safe) suffix, else obj
    assert cache.path_for(record(params={}), "http://h/out/x.exe").suffix == ".obj"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_safe_name_property(text: str) -> None:
    name = safe_name(text)
    assert SAFE.fullmatch(name)
    assert ".." not in name and not name.startswith(".") and len(name) <= 80


def test_names_follow_the_remote_name_and_never_collide(tmp_path: Path) -> None:
    cache = MeshCache(tmp_path)
    first = cache.path_for(record("1" * 32, meta={"file_prefix": "924a461e-abc"}, params={"output_format": "glb"}))
    assert first.name == f"924a461e-abc-{'1' * 32}.glb"
    # The same remote id on two servers (or two journal generations) never shares a file.
    second = cache.path_for(record("2" * 32, remote_id="1000"), "http://a/out/x.obj")
    third = cache.path_for(record("3" * 32, remote_id="1000"), "http://b/out/x.obj")
    assert second != third
    assert cache.path_for(record("4" * 32, remote_id="1000")).name.startswith("1000-")


def test_prune_removes_only_old_files(tmp_path: Path) -> None:
    cache = MeshCache(tmp_path)
    ids = [uuid.uuid4().hex for _ in range(3)]
    old, kept, fresh = (cache.path_for(record(i)) for i in ids)
    part = old.with_name(f".{old.name}.k2j4_x9q.part")
    for path in (old, kept, fresh, part):
        path.write_text("v 0 0 0\n", encoding="utf-8")
    ten_days_ago = time.time() - 10 * 86400
    for path in (old, kept, part):
        os.utime(path, (ten_days_ago, ten_days_ago))
    (tmp_path / "sub").mkdir()  # folders are never touched
    assert cache.prune(7, keep=[kept]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, kept.name, "sub"])
    assert cache.prune(30) == 0
    with pytest.raises(ModelsLabError) as caught:
        cache.prune(-1)
    assert caught.value.category is Category.INVALID_INPUT
    assert MeshCache(tmp_path / "missing").prune(1) == 0


def test_cache_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ModelsLabError) as caught:
        MeshCache(tmp_path / "file" / "meshes").path_for(record())
    assert caught.value.category is Category.INVALID_INPUT
    assert "cache folder" in caught.value.message


def test_hostile_server_names_end_to_end(fresh_server, tmp_path: Path) -> None:
    """hostile_names fault: ../, absolute and odd names in URLs and file_prefix; every download lands inside."""
    fresh_server.set_faults([{"fault": "hostile_names", "endpoint": "submit", "times": -1}])
    cache = MeshCache(tmp_path / "meshes")
    client = ModelsLabClient("test-key", ClientConfig(base_url=fresh_server.url))
    runner = JobRunner(client, JobJournal(tmp_path / "jobs"), cache, max_workers=2)
    try:
        ids = [runner.submit(str(REPO / "examples" / "duck_512.png"), GenerationParams(resolution=48)).local_id]
        ids.append(runner.submit(str(REPO / "examples" / "vase_plain.png"), GenerationParams(resolution=48)).local_id)
        done = [runner.wait(local_id, timeout=60) for local_id in ids]
    finally:
        runner.shutdown()
        client.close()
    assert fresh_server.stats()["faults_fired"]["by_kind"].get("hostile_names") == 2
    for job in done:
        assert job.state == "downloaded", job.error
        assert "../" in job.meta["file_prefix"]
        path = Path(job.file_path)
        assert_inside(cache, path)
        assert path.read_bytes().startswith((b"v ", b"#", b"o ", b"mtllib"))
    assert sorted(p.parent for p in (tmp_path).rglob("*") if p.is_file()) == sorted(
        [cache.directory] * 2 + [tmp_path / "jobs"] * 2
    )
