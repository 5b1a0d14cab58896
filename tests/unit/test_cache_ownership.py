"""The mesh cache preference may point at a folder the user keeps other files in: pruning deletes only the
meshes (and partial downloads) the add-on wrote, never follows a symlink, never enters a subfolder."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from api.cache import MeshCache
from api.jobs import JobRunner
from api.journal import JobJournal
from api.params import GenerationParams
from api.records import JobRecord
from tests.helpers.clients import make_client
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess

DAY = 86400.0


def age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then), follow_symlinks=False)


def write(path: Path, days_old: float, data: bytes = b"mine") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    age(path, days_old)
    return path


def mesh_of(cache: MeshCache, stem: str = "duck") -> Path:
    record = JobRecord(uuid.uuid4().hex, "duck", "/tmp/duck.png", {"output_format": "obj"}, "http://x", "enterprise")
    record.meta = {"file_prefix": stem}
    return cache.path_for(record)


def test_the_users_own_files_survive_pruning(tmp_path: Path) -> None:
    folder = tmp_path / "Documents"
    users = [
        write(folder / "thesis.docx", 60),
        write(folder / "scan.obj", 60),
        write(folder / "duck-model.glb", 60),
        write(folder / "backup-1234.stl", 60),
        write(folder / f"notes-{'a' * 32}.obj", 60),  # looks like a job name, but no runner makes that id
        write(folder / ".hidden.part", 60),
        write(folder / "photos" / f"x-{uuid.uuid4().hex}.obj", 60),  # inside a subfolder: never entered
    ]
    cache = MeshCache(folder)
    ours = [write(mesh_of(cache), 60, b"v 0 0 0\nf 1 1 1\n"), write(mesh_of(cache, "vase"), 60)]
    partial = write(ours[0].with_name(f".{ours[0].name}.ab_12cd.part"), 60)
    legacy_partial = write(ours[1].with_name(f".{ours[1].name}.part"), 60)
    fresh = write(mesh_of(cache, "new"), 1)
    assert cache.files() == sorted([*ours, partial, legacy_partial, fresh])
    assert cache.prune(30) == 4
    assert all(path.is_file() for path in users), [p for p in users if not p.exists()]
    assert fresh.is_file() and not any(p.exists() for p in (*ours, partial, legacy_partial))


def test_symlinks_are_never_followed_or_removed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    precious = write(outside / f"duck-{uuid.uuid4().hex}.obj", 60)
    cache = MeshCache(tmp_path / "cache")
    link = mesh_of(cache)  # a name the add-on could have written, but a symlink to a file elsewhere
    link.symlink_to(precious)
    age(link, 60)
    (cache.directory / "linked-folder").symlink_to(outside, target_is_directory=True)
    assert cache.files() == []
    assert cache.prune(0) == 0
    assert precious.is_file() and link.is_symlink()


def test_a_runner_in_a_shared_folder_prunes_only_its_meshes(fresh_server: ServerProcess, tmp_path: Path) -> None:
    """A real job downloads into a folder holding the user's files; months later only the mesh goes."""
    folder = tmp_path / "shared"
    thesis = write(folder / "thesis.docx", 0, b"chapter one")
    client = make_client(fresh_server.url)
    runner = JobRunner(client, JobJournal(tmp_path / "jobs"), MeshCache(folder), max_workers=1)
    try:
        record = runner.submit(str(example_image()), GenerationParams(resolution=32))
        done = runner.wait(record.local_id, timeout=60)
        assert done.state == "downloaded", done.error
        runner.mark_imported(done.local_id, "duck")
        mesh = Path(done.file_path or "")
        for path in (mesh, thesis):
            age(path, 60)
        assert runner.prune_cache(30) == 1
    finally:
        runner.shutdown()
        client.close()
    assert thesis.read_bytes() == b"chapter one"
    assert not mesh.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.docx"]
