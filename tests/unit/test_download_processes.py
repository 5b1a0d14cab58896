"""Downloads shared across processes: two real processes fetching one job into one cache both end with the
valid file; a temp file a live process is writing is never removed by another, an abandoned one is; a temp
file that vanishes mid-download is a retried network error, not a final complaint about the folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from api.client import JobStatus, ModelsLabClient
from api.errors import Category
from api.params import GenerationParams
from tests.helpers.clients import expect_error, make_client
from tests.helpers.keys import CLIENT_KEY
from tests.helpers.paths import REPO_ROOT, example_image
from tests.helpers.servers import ServerProcess, wait_until

PADDED = 1 << 20  # bytes of the mesh: at the throttled rate a download takes seconds, so two overlap


def finished(client: ModelsLabClient) -> JobStatus:
    status = client.submit(GenerationParams(init_image=client.upload_image(example_image()), resolution=32))
    job_id = status.job_id or ""

    def done() -> JobStatus | None:
        answer = client.fetch(job_id)
        return answer if answer.status == "success" else None

    return wait_until(done, 30, 0.05, f"job {job_id}")


@pytest.fixture
def padded_job(fresh_server: ServerProcess, client: ModelsLabClient) -> JobStatus:
    fresh_server.set_faults([{"fault": "pad_output", "endpoint": "submit", "bytes": PADDED}])
    job = finished(client)
    fresh_server.clear_faults()
    return job


def links(job: JobStatus) -> list[str]:
    return [*job.output, *job.proxy_links]


CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from api.client import ClientConfig, ModelsLabClient
    from api.errors import ModelsLabError
    client = ModelsLabClient({key!r}, ClientConfig(base_url={url!r}, backoff_base=0.01, backoff_max=0.05))
    print("ready", flush=True)
    sys.stdin.readline()  # both children start their download at the same moment
    try:
        path = client.download({links!r}, Path({target!r}))
        print(json.dumps({{"ok": str(path)}}), flush=True)
    except ModelsLabError as error:
        print(json.dumps({{"error": error.to_dict()}}), flush=True)
    """
)


def start_child(srv: ServerProcess, job: JobStatus, target: Path) -> subprocess.Popen[str]:
    code = CHILD.format(root=str(REPO_ROOT), key=CLIENT_KEY, url=srv.url, links=links(job), target=str(target))
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
    return child


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_two_processes_download_one_job_into_one_cache(
    fresh_server: ServerProcess, padded_job: JobStatus, tmp_path: Path
) -> None:
    fresh_server.set_faults(
        [{"fault": "slow_download", "endpoint": "download", "bytes_per_second": 512 << 10, "times": -1}]
    )
    target = tmp_path / "cache" / "duck.obj"
    children = [start_child(fresh_server, padded_job, target) for _ in range(2)]
    try:
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [json.loads(child.communicate(timeout=60)[0].strip().splitlines()[-1]) for child in children]
    finally:
        for child in children:
            child.kill()
    assert results == [{"ok": str(target)}] * 2, results
    stats = fresh_server.stats()
    (job,) = stats["jobs"]
    assert target.stat().st_size == job["file_bytes"] >= PADDED
    assert b"\nf " in target.read_bytes()
    assert temp_files(target.parent) == []
    assert job["downloads_started"] == 2  # both really downloaded at the same time (neither found a file yet)
    assert wait_until(lambda: fresh_server.stats()["jobs"][0]["downloads_completed"] == 2, 10)


def test_a_valid_file_already_there_is_used(
    fresh_server: ServerProcess, client: ModelsLabClient, padded_job: JobStatus, tmp_path: Path
) -> None:
    target = tmp_path / "duck.obj"
    client.download(links(padded_job), target)
    before = fresh_server.stats()["requests"]["download"]
    assert client.download(links(padded_job), target) == target
    assert fresh_server.stats()["requests"]["download"] == before  # a second process would find it the same way
    target.write_bytes(b"garbage")  # not a mesh: downloaded again
    assert client.download(links(padded_job), target) == target and b"\nf " in target.read_bytes()


def test_a_live_download_is_never_disturbed_and_an_abandoned_one_is_cleaned(
    fresh_server: ServerProcess, client: ModelsLabClient, padded_job: JobStatus, tmp_path: Path
) -> None:
    fresh_server.set_faults(
        [{"fault": "slow_download", "endpoint": "download", "bytes_per_second": 256 << 10, "times": -1}]
    )
    target = tmp_path / "duck.obj"
    live = start_child(fresh_server, padded_job, target)
    try:
        assert live.stdin is not None
        live.stdin.write("go\n")
        live.stdin.flush()
        (theirs,) = wait_until(lambda: temp_files(tmp_path), 30, message="the child never started writing")
        wait_until(lambda: theirs.stat().st_size > 0, 30)
        # Killed mid-download: its temp file stays behind, its lock goes with the process.
        abandoned = tmp_path / f".{target.name}.dead1234.part"
        abandoned.write_bytes(b"v 1 2 3\n" * 100)
        legacy = tmp_path / f".{target.name}.part"  # the fixed name earlier versions used
        legacy.write_bytes(b"v 1 2 3\n")
        fresh_server.clear_faults()
        assert client.download(links(padded_job), target) == target  # this process, meanwhile, at full speed
        assert theirs.exists(), "the live process's temp file was removed"
        assert not abandoned.exists() and not legacy.exists()
        output = live.communicate(timeout=60)[0]
    finally:
        live.kill()
    assert json.loads(output.strip().splitlines()[-1]) == {"ok": str(target)}
    assert temp_files(tmp_path) == [] and b"\nf " in target.read_bytes()


def test_a_vanished_temp_file_is_a_retried_network_error(
    fresh_server: ServerProcess, padded_job: JobStatus, tmp_path: Path
) -> None:
    """Something removes the partial download mid-way (a cleanup in another process): try again, and say so."""
    target = tmp_path / "duck.obj"
    removed: list[Path] = []

    def remove_once(done: int, total: int | None) -> None:
        if not removed and done > 0:
            (temp,) = temp_files(tmp_path)
            temp.unlink()
            removed.append(temp)

    no_retry = make_client(fresh_server.url, max_retries=0)
    try:
        error = expect_error(
            Category.NETWORK, lambda: no_retry.download(padded_job.output, target, progress=remove_once)
        )
    finally:
        no_retry.close()
    assert "vanished" in error.message and "another process" in error.message
    removed.clear()
    retrying = make_client(fresh_server.url)
    try:
        assert retrying.download(padded_job.output, target, progress=remove_once) == target
    finally:
        retrying.close()
    assert removed and b"\nf " in target.read_bytes() and temp_files(tmp_path) == []


def test_a_killed_downloader_leaves_a_file_the_next_download_cleans(
    fresh_server: ServerProcess, padded_job: JobStatus, client: ModelsLabClient, tmp_path: Path
) -> None:
    fresh_server.set_faults(
        [{"fault": "slow_download", "endpoint": "download", "bytes_per_second": 256 << 10, "times": -1}]
    )
    target = tmp_path / "duck.obj"
    child = start_child(fresh_server, padded_job, target)
    try:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        (temp,) = wait_until(lambda: temp_files(tmp_path), 30, message="the child never started writing")
        wait_until(lambda: temp.stat().st_size > 0, 30)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    assert temp.exists()
    fresh_server.clear_faults()
    assert client.download(links(padded_job), target) == target
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize(
    "hostile",
    [b"mtllib ../outside.mtl\n", b"  MTLLIB /etc/x.mtl\r\n", b"mtllib \\\n  ../continued.mtl\n"],
)
def test_the_streamed_self_containment_check_sees_a_statement_split_anywhere(tmp_path: Path, hostile: bytes) -> None:
    # A download feeds the check chunk by chunk as the bytes arrive: wherever the chunks split the statement,
    # the verdict is the one the whole file gets.
    from api.errors import ModelsLabError
    from api.meshcheck import MeshScan, check_self_contained

    body = b"v 0 0 0\nv 1 0 0\nv 0 1 0\n" * 40 + hostile + b"f 1 2 3\n" * 40
    mesh = tmp_path / "mesh.obj"
    mesh.write_bytes(body)
    with pytest.raises(ModelsLabError):
        check_self_contained(mesh, "obj")
    start = body.index(hostile)
    for cut in range(start - 2, start + len(hostile) + 2):
        scan = MeshScan("obj")
        scan.feed(body[:cut])
        scan.feed(body[cut:])
        with pytest.raises(ModelsLabError) as refused:
            scan.check(mesh)
        assert refused.value.category is Category.BAD_MESH, cut
    commented = body.replace(hostile, b"#" + hostile)
    clean = MeshScan("obj")
    for at in range(0, len(commented), 7):
        clean.feed(commented[at : at + 7])
    clean.check(mesh)  # the same bytes with the statement commented out pass
