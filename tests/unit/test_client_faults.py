"""Every fault the local server can inject, seen through ModelsLabClient: the right category, safe retries
(idempotent calls retried, a submit never sent twice once it may have arrived), downloads that never leave
half-written files, and an API key that appears in no error and no file."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from api.client import JobStatus, ModelsLabClient
from api.errors import Category, ModelsLabError
from api.params import GenerationParams
from tests.helpers.clients import CLIENT_RETRIES, expect_error, make_client, run_in_threads
from tests.helpers.keys import CLIENT_KEY
from tests.helpers.paths import REPO_ROOT, example_image
from tests.helpers.servers import ServerProcess, start_server, wait_until

EXAMPLE = example_image("vase_plain.png")


def raises(category: Category, call: Callable[[], object]) -> ModelsLabError:
    error = expect_error(category, call)
    assert "Traceback" not in error.message
    return error


def requests_to(srv: ServerProcess, endpoint: str) -> int:
    return srv.stats()["requests"].get(endpoint, 0)


def submit(c: ModelsLabClient, **params: Any) -> JobStatus:
    url = c.upload_image(EXAMPLE)
    return c.submit(GenerationParams(init_image=url, resolution=32, **params))


def finished(c: ModelsLabClient, **params: Any) -> JobStatus:
    job_id = submit(c, **params).job_id or ""

    def done() -> JobStatus | None:
        status = c.fetch(job_id)
        return status if status.status == "success" else None

    return wait_until(done, 30, 0.05, f"job {job_id}")


def no_files(directory: Path) -> None:
    assert [p for p in directory.rglob("*")] == [], "a failed download left files behind"


# --- JSON endpoints ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "body"), [(500, "json"), (502, "html"), (503, "json"), (503, "html")])
def test_5xx_on_idempotent_calls_is_retried(
    fresh_server: ServerProcess, client: ModelsLabClient, status: int, body: str
) -> None:
    fresh_server.set_faults([{"fault": "http_error", "endpoint": "wallet", "status": status, "body": body}])
    assert client.wallet_balance()["currency"] == "USD"
    assert requests_to(fresh_server, "wallet") == 2
    fresh_server.set_faults(
        [{"fault": "http_error", "endpoint": "system", "status": status, "body": body, "times": -1}]
    )
    error = raises(Category.SERVER, client.system_details)
    assert error.http_status == status and str(status) in error.message
    if body == "html":
        assert "HTML" in error.message
    assert requests_to(fresh_server, "system") == CLIENT_RETRIES + 1


@pytest.mark.parametrize(("status", "body"), [(500, "json"), (502, "html"), (503, "json")])
def test_5xx_on_submit_is_not_retried(
    fresh_server: ServerProcess, client: ModelsLabClient, status: int, body: str
) -> None:
    url = client.upload_image(EXAMPLE)
    fresh_server.set_faults([{"fault": "http_error", "endpoint": "submit", "status": status, "body": body}])
    raises(Category.SERVER, lambda: client.submit(GenerationParams(init_image=url, resolution=32)))
    stats = fresh_server.stats()
    assert stats["requests"]["submit"] == 1 and stats["submits"] == 0


@pytest.mark.parametrize(
    ("status", "category"),
    [(400, Category.INVALID_INPUT), (401, Category.AUTH), (403, Category.AUTH), (402, Category.CREDITS)],
)
def test_4xx_categories_are_not_retried(
    fresh_server: ServerProcess, client: ModelsLabClient, status: int, category: Category
) -> None:
    fresh_server.set_faults(
        [{"fault": "http_error", "endpoint": "fetch", "status": status, "message": "said the server", "times": -1}]
    )
    error = raises(category, lambda: client.fetch("1000"))
    assert error.http_status == status and "said the server" in error.message
    assert error.server_message == "said the server"
    assert requests_to(fresh_server, "fetch") == 1


def test_429_on_submit_is_retried_and_makes_exactly_one_job(
    fresh_server: ServerProcess, client: ModelsLabClient
) -> None:
    url = client.upload_image(EXAMPLE)
    fresh_server.set_faults([{"fault": "rate_limit", "endpoint": "submit", "retry_after": 0.05, "times": 2}])
    status = client.submit(GenerationParams(init_image=url, resolution=32))
    assert status.status == "processing" and status.job_id
    stats = fresh_server.stats()
    assert stats["requests"]["submit"] == 3 and stats["submits"] == 1 and len(stats["jobs"]) == 1


def test_429_longer_than_max_retry_after_is_rate_limited(fresh_server: ServerProcess) -> None:
    c = make_client(fresh_server.url, max_retry_after=5)
    fresh_server.set_faults([{"fault": "rate_limit", "endpoint": "any", "retry_after": 30, "times": -1}])
    error = raises(Category.RATE_LIMITED, lambda: c.submit(GenerationParams(init_image="http://127.0.0.1/a.png")))
    assert error.retry_after == 30 and error.http_status == 429
    assert requests_to(fresh_server, "submit") == 1  # no point waiting 30 s inside the call


def test_429_forever_gives_up_after_the_retries(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    fresh_server.set_faults([{"fault": "rate_limit", "endpoint": "wallet", "retry_after": 0.01, "times": -1}])
    raises(Category.RATE_LIMITED, client.wallet_balance)
    assert requests_to(fresh_server, "wallet") == CLIENT_RETRIES + 1


def test_malformed_json_retried_on_fetch_not_on_submit(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    job = submit(client)
    fresh_server.set_faults([{"fault": "malformed_json", "endpoint": "fetch"}])
    assert client.fetch(job.job_id or "").status in ("processing", "success")
    assert requests_to(fresh_server, "fetch") == 2
    url = client.upload_image(EXAMPLE)
    fresh_server.set_faults([{"fault": "malformed_json", "endpoint": "submit"}])
    error = raises(Category.SERVER, lambda: client.submit(GenerationParams(init_image=url, resolution=32)))
    assert "malformed JSON" in error.message
    assert requests_to(fresh_server, "submit") == 2  # the first, good one and this one: no retry


@pytest.mark.parametrize("spelling", ["message", "messege"])
def test_status_error_with_http_200(fresh_server: ServerProcess, client: ModelsLabClient, spelling: str) -> None:
    fresh_server.set_faults([{"fault": "status_error", "endpoint": "wallet", "spelling": spelling}])
    assert client.wallet_balance()["currency"] == "USD"  # an unexplained error on an idempotent call: tried again
    assert requests_to(fresh_server, "wallet") == 2
    fresh_server.set_faults([{"fault": "status_error", "endpoint": "wallet", "spelling": spelling, "times": -1}])
    error = raises(Category.SERVER, client.wallet_balance)
    assert error.server_message == "Server is busy, please try again later"
    assert "Server is busy" in error.message and error.http_status == 200
    url = client.upload_image(EXAMPLE)
    fresh_server.set_faults([{"fault": "status_error", "endpoint": "submit", "spelling": spelling}])
    raises(Category.SERVER, lambda: client.submit(GenerationParams(init_image=url, resolution=32)))
    assert requests_to(fresh_server, "submit") == 1  # a submit is not sent again
    fresh_server.set_faults(
        [{"fault": "status_error", "endpoint": "submit", "spelling": spelling, "text": "Invalid API key"}]
    )
    raises(Category.AUTH, lambda: client.submit(GenerationParams(init_image="http://127.0.0.1/a.png")))
    assert fresh_server.stats()["submits"] == 0


def test_job_failed(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    fresh_server.set_faults([{"fault": "job_failed", "endpoint": "submit", "text": "could not see an object"}])
    job_id = submit(client).job_id or ""

    def failure() -> ModelsLabError | None:
        try:
            client.fetch(job_id)
        except ModelsLabError as error:
            return error
        return None

    error = wait_until(failure, 30, 0.05, "job_failed never surfaced")
    assert error.category is Category.SERVER and "could not see an object" in error.message
    assert error.server_message == "could not see an object" and CLIENT_KEY not in str(error)


def test_expired_fetch(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    job = submit(client)
    fresh_server.set_faults([{"fault": "expired", "endpoint": "fetch"}])
    error = raises(Category.EXPIRED, lambda: client.fetch(job.job_id or ""))
    assert error.http_status == 404 and "24 hours" in error.message
    assert requests_to(fresh_server, "fetch") == 1


def test_upload_faults_are_retried(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    fresh_server.set_faults(
        [
            {"fault": "drop_connection", "endpoint": "upload"},
            {"fault": "http_error", "endpoint": "upload", "status": 503, "body": "html"},
        ]
    )
    assert client.upload_image(EXAMPLE).startswith(fresh_server.url)
    assert requests_to(fresh_server, "upload") == 3


# --- a submit is never sent twice once it may have reached the server ---------------------------------------------
def test_drop_connection_on_submit_is_not_retried(fresh_server: ServerProcess, client: ModelsLabClient) -> None:
    url = client.upload_image(EXAMPLE)
    fresh_server.set_faults([{"fault": "drop_connection", "endpoint": "submit"}])
    error = raises(Category.NETWORK, lambda: client.submit(GenerationParams(init_image=url, resolution=32)))
    assert "may have been accepted" in error.fix
    stats = fresh_server.stats()
    assert stats["requests"]["submit"] == 1 and stats["submits"] == 1  # charged once, never twice


def test_read_timeout_on_submit_is_not_retried(fresh_server: ServerProcess) -> None:
    c = make_client(fresh_server.url, read_timeout=0.3)
    url = c.upload_image(EXAMPLE)
    fresh_server.set_faults([{"fault": "delay", "endpoint": "submit", "seconds": 1.5}])
    error = raises(Category.NETWORK, lambda: c.submit(GenerationParams(init_image=url, resolution=32)))
    assert "read timeout" in error.message and "may have been accepted" in error.fix
    wait_until(lambda: fresh_server.stats()["submits"] == 1, 10, 0.05, "the delayed submit was handled")
    assert requests_to(fresh_server, "submit") == 1


def test_drop_connection_and_timeout_on_fetch_are_retried(fresh_server: ServerProcess) -> None:
    c = make_client(fresh_server.url, read_timeout=0.3)
    job = submit(c)
    fresh_server.set_faults(
        [{"fault": "drop_connection", "endpoint": "fetch"}, {"fault": "delay", "endpoint": "fetch", "seconds": 1.0}]
    )
    assert c.fetch(job.job_id or "").status in ("processing", "success")  # first try: read timeout, then dropped
    assert requests_to(fresh_server, "fetch") == 2


def test_connection_refused_is_network(closed_port: int) -> None:
    c = make_client(f"http://127.0.0.1:{closed_port}")
    error = raises(Category.NETWORK, c.wallet_balance)
    assert "refused" in error.message and f"127.0.0.1:{closed_port}" in error.message
    error = raises(Category.NETWORK, lambda: c.submit(GenerationParams(init_image="http://127.0.0.1/a.png")))
    assert "may have been accepted" not in error.fix  # it surely was not: nothing connected


def test_submit_retried_after_connection_refused(
    server: ServerProcess, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The server is down at the first try and up later: the same submit goes through, once."""
    image_url = server.upload(EXAMPLE, key=CLIENT_KEY)  # served by the session server, fetched by the new one
    c = make_client(f"http://127.0.0.1:{closed_port}", max_retries=100, backoff_base=0.05, backoff_max=0.1)
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(c.submit(GenerationParams(init_image=image_url, resolution=32)))
        except BaseException as exc:  # reported by the assertion below
            outcome.append(exc)

    caplog.set_level(logging.INFO, logger="api.client")
    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_until(lambda: any("refused" in r.getMessage() for r in caplog.records), 10, 0.01, "first refusal")
        with start_server("--workers", "1", "--port", str(closed_port)) as late:
            worker.join(30)
            assert not worker.is_alive()
            assert isinstance(outcome[0], JobStatus), outcome
            assert late.stats()["submits"] == 1 and late.stats()["requests"]["submit"] == 1
    finally:
        worker.join(30)


def test_dns_failure_is_network() -> None:
    c = make_client("http://nonexistent.invalid")
    error = raises(Category.NETWORK, c.wallet_balance)
    assert "nonexistent.invalid" in error.message and "DNS" in error.message
    raises(Category.NETWORK, lambda: c.submit(GenerationParams(init_image="http://127.0.0.1/a.png")))
    raises(Category.NETWORK, lambda: c.download(["http://nonexistent.invalid/out/a.obj"], Path("/nonexistent/x.obj")))


# --- downloads ----------------------------------------------------------------------------------------------------
@pytest.fixture
def done_job(client: ModelsLabClient) -> JobStatus:
    return finished(client)


def links(job: JobStatus) -> list[str]:
    return [*job.output, *job.proxy_links]


def test_truncated_download_is_retried(
    fresh_server: ServerProcess, client: ModelsLabClient, done_job: JobStatus, tmp_path: Path
) -> None:
    fresh_server.set_faults([{"fault": "truncate", "endpoint": "download", "bytes": 1000}])
    target = client.download(links(done_job), tmp_path / "mesh.obj")
    full = fresh_server.job(done_job.job_id or fresh_server.stats()["jobs"][0]["id"])
    assert full is not None and target.stat().st_size == full["file_bytes"]
    assert requests_to(fresh_server, "download") == 2
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.obj"]


def test_always_truncated_download_fails_cleanly(
    fresh_server: ServerProcess, client: ModelsLabClient, done_job: JobStatus, tmp_path: Path
) -> None:
    fresh_server.set_faults([{"fault": "truncate", "endpoint": "download", "bytes": 1000, "times": -1}])
    error = raises(Category.NETWORK, lambda: client.download(links(done_job), tmp_path / "mesh.obj"))
    assert "1000" in error.message
    assert requests_to(fresh_server, "download") == 2 * (CLIENT_RETRIES + 1)  # each URL, with retries
    no_files(tmp_path)


def test_html_instead_of_mesh_falls_back_to_the_mirror(
    fresh_server: ServerProcess, client: ModelsLabClient, done_job: JobStatus, tmp_path: Path
) -> None:
    fresh_server.set_faults([{"fault": "html_mesh", "endpoint": "download"}])
    target = client.download(links(done_job), tmp_path / "mesh.obj")
    assert b"\nf " in target.read_bytes()
    assert requests_to(fresh_server, "download") == 2
    fresh_server.set_faults([{"fault": "html_mesh", "endpoint": "download", "times": -1}])
    error = raises(Category.BAD_MESH, lambda: client.download(links(done_job), tmp_path / "again.obj"))
    assert "web page" in error.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.obj"]


@pytest.mark.parametrize(("size", "words"), [(256, "not an OBJ"), (0, "empty")])
def test_corrupt_mesh_is_bad_mesh(
    fresh_server: ServerProcess, client: ModelsLabClient, done_job: JobStatus, tmp_path: Path, size: int, words: str
) -> None:
    fresh_server.set_faults([{"fault": "corrupt_mesh", "endpoint": "download", "bytes": size, "times": -1}])
    error = raises(Category.BAD_MESH, lambda: client.download(links(done_job), tmp_path / "mesh.obj"))
    assert words in error.message
    no_files(tmp_path)


def test_corrupt_glb_is_bad_mesh(fresh_server: ServerProcess, client: ModelsLabClient, tmp_path: Path) -> None:
    job = finished(client, output_format="glb")
    fresh_server.set_faults([{"fault": "corrupt_mesh", "endpoint": "download", "times": -1}])
    error = raises(Category.BAD_MESH, lambda: client.download(links(job), tmp_path / "m.glb", expected_format="glb"))
    assert "GLB" in error.message
    no_files(tmp_path)


def test_expired_download(
    fresh_server: ServerProcess, client: ModelsLabClient, done_job: JobStatus, tmp_path: Path
) -> None:
    fresh_server.set_faults([{"fault": "expired", "endpoint": "download", "times": -1}])
    raises(Category.EXPIRED, lambda: client.download(links(done_job), tmp_path / "mesh.obj"))
    assert requests_to(fresh_server, "download") == 2  # a 404 is not retried, but the mirror is asked
    no_files(tmp_path)


def test_mirror_used_when_primary_is_gone_or_unreachable(
    fresh_server: ServerProcess, client: ModelsLabClient, done_job: JobStatus, tmp_path: Path, closed_port: int
) -> None:
    gone = fresh_server.url + "/out/00000000-0000-0000-0000-000000000000.obj"
    unreachable = f"http://127.0.0.1:{closed_port}/out/x.obj"
    for index, primary in enumerate((gone, unreachable)):
        target = client.download([primary, *done_job.proxy_links], tmp_path / f"mesh{index}.obj")
        assert b"\nf " in target.read_bytes()
    fresh_server.set_faults(
        [{"fault": "http_error", "endpoint": "download", "status": 503, "times": CLIENT_RETRIES + 1}]
    )
    before = requests_to(fresh_server, "download")
    client.download(links(done_job), tmp_path / "mesh2.obj")
    assert requests_to(fresh_server, "download") - before == CLIENT_RETRIES + 2  # primary exhausted, mirror once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh0.obj", "mesh1.obj", "mesh2.obj"]


def test_download_size_cap(fresh_server: ServerProcess, done_job: JobStatus, tmp_path: Path) -> None:
    c = make_client(fresh_server.url, max_download_bytes=1000)
    error = raises(Category.BAD_MESH, lambda: c.download(links(done_job), tmp_path / "mesh.obj"))
    assert "limit" in error.message
    assert requests_to(fresh_server, "download") == 1  # the mirror holds the same file: not asked
    no_files(tmp_path)


def test_cancel_mid_download(fresh_server: ServerProcess, client: ModelsLabClient, tmp_path: Path) -> None:
    fresh_server.set_faults([{"fault": "pad_output", "endpoint": "submit", "bytes": 4 << 20}])
    job = finished(client)
    fresh_server.set_faults([{"fault": "slow_download", "endpoint": "download", "bytes_per_second": 1 << 20}])
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int | None) -> None:
        seen.append(done)
        if done >= 200_000:
            cancel.set()

    error = raises(
        Category.CANCELLED, lambda: client.download(links(job), tmp_path / "m.obj", cancel=cancel, progress=progress)
    )
    assert "cancelled" in error.message.lower()
    assert seen and seen[-1] < 4 << 20
    assert requests_to(fresh_server, "download") == 1
    no_files(tmp_path)
    raises(Category.CANCELLED, lambda: client.download(links(job), tmp_path / "m.obj", cancel=cancel))
    assert requests_to(fresh_server, "download") == 1  # already cancelled: nothing requested


def test_hostile_names_still_download_inside_the_target(
    fresh_server: ServerProcess, client: ModelsLabClient, tmp_path: Path
) -> None:
    fresh_server.set_faults([{"fault": "hostile_names", "endpoint": "submit"}])
    job = finished(client)
    assert any(".." in url or "%2F" in url or "%2f" in url for url in links(job)), links(job)
    target = tmp_path / "inside" / "mesh.obj"
    assert client.download(links(job), target) == target
    assert b"\nf " in target.read_bytes()
    assert [p.relative_to(tmp_path).as_posix() for p in sorted(tmp_path.rglob("*"))] == ["inside", "inside/mesh.obj"]


def test_the_key_is_in_no_written_file(fresh_server: ServerProcess, client: ModelsLabClient, tmp_path: Path) -> None:
    job = finished(client)
    client.download(links(job), tmp_path / "ok.obj")
    fresh_server.set_faults([{"fault": "truncate", "endpoint": "download", "bytes": 500, "times": -1}])
    raises(Category.NETWORK, lambda: client.download(links(job), tmp_path / "cut.obj"))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["ok.obj"]
    for path in files:
        assert CLIENT_KEY.encode() not in path.read_bytes()


def test_corrupt_once_is_retried_on_the_same_url(
    fresh_server: ServerProcess, client: ModelsLabClient, done_job: JobStatus, tmp_path: Path
) -> None:
    fresh_server.set_faults([{"fault": "corrupt_mesh", "endpoint": "download"}])
    target = client.download(done_job.output, tmp_path / "mesh.obj")  # no mirror given
    assert b"\nf " in target.read_bytes()
    assert requests_to(fresh_server, "download") == 2


def test_unwritable_folder_is_a_local_error(client: ModelsLabClient, done_job: JobStatus, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"x")
    error = raises(Category.INVALID_INPUT, lambda: client.download(links(done_job), blocker / "mesh.obj"))
    assert "not-a-folder" in error.message and "disk space" in error.fix
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if not os.access(readonly, os.W_OK):  # root can write anywhere: then only the first case applies
            error = raises(Category.INVALID_INPUT, lambda: client.download(links(done_job), readonly / "mesh.obj"))
            assert "readonly" in error.message
    finally:
        readonly.chmod(0o700)


def test_disk_full_mid_download_leaves_nothing(
    fresh_server: ServerProcess, done_job: JobStatus, tmp_path: Path
) -> None:
    """A child process with a file size limit: writes past it fail (EFBIG) like a full disk; no partial file stays."""
    size = fresh_server.stats()["jobs"][0]["file_bytes"]
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from pathlib import Path
        from api.client import ClientConfig, ModelsLabClient
        from api.errors import ModelsLabError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({size - 10}, resource.RLIM_INFINITY))
        client = ModelsLabClient({CLIENT_KEY!r}, ClientConfig(base_url={fresh_server.url!r}))
        try:
            client.download({links(done_job)!r}, Path({str(tmp_path / "mesh.obj")!r}))
            print("ACCEPTED")
        except ModelsLabError as error:
            print("ERROR", error.category.value, error.message)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("ERROR invalid_input"), result.stdout + result.stderr
    assert str(tmp_path) in result.stdout
    no_files(tmp_path)


def test_a_part_file_left_by_a_killed_process_is_cleaned(
    fresh_server: ServerProcess, client: ModelsLabClient, done_job: JobStatus, tmp_path: Path
) -> None:
    stale = tmp_path / ".mesh.obj.part"
    stale.write_bytes(b"v 1 2 3\n" * 1000)  # what a kill -9 mid-download leaves behind
    fresh_server.set_faults([{"fault": "expired", "endpoint": "download", "times": -1}])
    raises(Category.EXPIRED, lambda: client.download(links(done_job), tmp_path / "mesh.obj"))
    no_files(tmp_path)
    stale.write_bytes(b"v 1 2 3\n" * 1000)
    fresh_server.clear_faults()
    client.download(links(done_job), tmp_path / "mesh.obj")
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.obj"]


def test_concurrent_downloads_of_one_target(client: ModelsLabClient, done_job: JobStatus, tmp_path: Path) -> None:
    target = tmp_path / "mesh.obj"
    results: list[object] = []

    def work() -> None:
        try:
            results.append(client.download(links(done_job), target))
        except BaseException as exc:  # reported below
            results.append(exc)

    run_in_threads(work, 4)
    assert results == [target] * 4
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.obj"] and b"\nf " in target.read_bytes()


def test_the_key_is_in_no_log_line(
    fresh_server: ServerProcess, client: ModelsLabClient, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3's connection logs included
    fresh_server.set_faults([{"fault": "http_error", "endpoint": "any", "status": 503, "times": 2}])
    client.wallet_balance()
    raises(Category.NETWORK, make_client(f"http://127.0.0.1:{closed_port}").wallet_balance)
    assert "retrying" in caplog.text and CLIENT_KEY not in caplog.text
