"""The enterprise server's actions (system details, clear queue, clear cache, restart, update) against the local
server, refused before any request on the standard flavour; and adopting a job another client submitted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.client import ADMIN_ACTIONS, ModelsLabClient
from api.errors import Category
from api.params import GenerationParams
from tests.helpers.clients import expect_error, make_client
from tests.helpers.keys import CLIENT_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess, fresh, serve, slow_server_args, wait_until

EXAMPLE = example_image("vase_plain.png")
OTHER_KEY = "sk-other-customer-5d1c"


@pytest.fixture(scope="module")
def one_worker_server() -> Iterator[ServerProcess]:
    yield from serve("--workers", "1")


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    yield from serve(*slow_server_args(1.0, workers=1))


@pytest.fixture
def one_worker(one_worker_server: ServerProcess) -> Iterator[ServerProcess]:
    yield from fresh(one_worker_server)


@pytest.fixture
def slow(slow_server: ServerProcess) -> Iterator[ServerProcess]:
    yield from fresh(slow_server)


def submit(client: ModelsLabClient, url: str) -> str:
    job = client.submit(GenerationParams(init_image=url, resolution=32))
    assert job.job_id
    return job.job_id


def wait_status(server: ServerProcess, job_id: str, status: str) -> dict:
    return wait_until(lambda: (job := server.job(job_id)) and job["status"] == status and job, 30, 0.02, status)


def wait_success(client: ModelsLabClient, job_id: str) -> Any:
    def done() -> Any:
        status = client.fetch(job_id)
        return status if status.status == "success" else None

    return wait_until(done, 30, 0.05, f"job {job_id}")


# --- refused before any request -------------------------------------------------------------------------------------
def test_the_standard_flavour_refuses_every_action_before_any_request(fresh_server: ServerProcess) -> None:
    standard = make_client(fresh_server.url, flavor="standard")
    calls = [lambda action=action: standard.server_admin(action) for action in ADMIN_ACTIONS]
    calls += [
        standard.system_details,
        standard.clear_queue,
        standard.clear_cache,
        standard.restart_server,
        standard.update_server,
    ]
    for call in calls:
        error = expect_error(Category.INVALID_INPUT, call)
        assert "enterprise" in error.message and "enterprise" in error.fix
    enterprise = make_client(fresh_server.url)
    error = expect_error(Category.INVALID_INPUT, lambda: enterprise.server_admin("format_disk"))
    assert "format_disk" in error.message
    assert sum(fresh_server.stats()["requests"].values()) == 0
    # The local server has them on the enterprise path only, like the service.
    assert fresh_server.post("/api/v6/3d/clear_queue", {"key": "k"}).status_code == 404


# --- each action ----------------------------------------------------------------------------------------------------
def test_system_details_and_update_report_the_same_version(
    fresh_server: ServerProcess, client: ModelsLabClient
) -> None:
    details = client.system_details()
    answer = client.update_server()
    assert answer["status"] == "success" and details["version"] in answer["message"]
    assert answer["data"]["version"] == details["version"] and answer["data"]["updated"] is False
    assert fresh_server.stats()["requests"]["system"] == 2


def test_clear_queue_drops_the_keys_queued_jobs(one_worker: ServerProcess) -> None:
    server = one_worker
    mine, theirs = make_client(server.url), make_client(server.url, key=OTHER_KEY)
    url, other_url = mine.upload_image(EXAMPLE), theirs.upload_image(EXAMPLE)
    server.set_faults([{"fault": "hold_job", "endpoint": "submit"}])
    running = submit(mine, url)  # keeps the only worker until released
    wait_status(server, running, "processing")
    queued = [submit(mine, url), submit(mine, url)]
    other = submit(theirs, other_url)
    assert server.stats()["queue_depth"] == 3

    answer = mine.clear_queue()
    assert answer["status"] == "success" and sorted(answer["data"]["removed_jobs"]) == sorted(int(i) for i in queued)
    assert "2 queued job" in answer["message"]
    for job_id in queued:
        error = expect_error(Category.SERVER, lambda job_id=job_id: mine.fetch(job_id))
        assert "Removed from the queue" in error.message
    assert mine.wallet_balance()["balance"] == pytest.approx(100 - 4 * 0.2 + 2 * 0.2)  # the dropped ones refunded
    server.release()
    assert wait_success(mine, running).output and wait_success(theirs, other).output  # the rest is untouched


def test_clear_cache_deletes_the_keys_outputs(fresh_server: ServerProcess, tmp_path: Path) -> None:
    mine, theirs = make_client(fresh_server.url), make_client(fresh_server.url, key=OTHER_KEY)
    job_id = submit(mine, mine.upload_image(EXAMPLE))
    done = wait_success(mine, job_id)
    other = wait_success(theirs, submit(theirs, theirs.upload_image(EXAMPLE)))
    mine.download(done.output, tmp_path / "before.obj")

    answer = mine.clear_cache()
    assert (
        answer["data"]["files_removed"] == 1
        and answer["data"]["bytes_freed"] == (tmp_path / "before.obj").stat().st_size
    )
    expect_error(Category.EXPIRED, lambda: mine.download(done.output, tmp_path / "after.obj"))
    expect_error(Category.EXPIRED, lambda: mine.fetch(job_id))
    assert theirs.download(other.output, tmp_path / "theirs.obj").stat().st_size > 0
    assert mine.clear_cache()["data"]["files_removed"] == 0


def test_restart_starts_running_and_queued_jobs_again(slow: ServerProcess) -> None:
    server = slow
    client = make_client(server.url)
    url = client.upload_image(EXAMPLE)
    first, second = submit(client, url), submit(client, url)
    wait_status(server, first, "processing")
    restarted_at = time.time()
    answer = client.restart_server()
    assert answer["data"] == {"workers": 1, "restarted_jobs": 2}
    for job_id in (first, second):
        assert wait_success(client, job_id).output
    jobs = {str(job["id"]): job for job in server.stats()["jobs"]}
    assert jobs[first]["started_at"] >= restarted_at  # the run in progress was abandoned and begun again
    assert jobs[second]["started_at"] >= jobs[first]["finished_at"] - 0.05  # one worker: one after the other


# --- adopting a job this client did not submit ----------------------------------------------------------------------
@pytest.mark.parametrize("flavor", ["standard", "enterprise"])
def test_a_job_submitted_elsewhere_is_fetched_and_downloaded(
    fresh_server: ServerProcess, tmp_path: Path, flavor: str
) -> None:
    url = fresh_server.upload(EXAMPLE, key=CLIENT_KEY)
    path = "/api/v6/3d/image_to_3d" if flavor == "standard" else "/api/v1/enterprise/3d/image_to_3d"
    answer = fresh_server.post(path, {"key": CLIENT_KEY, "init_image": url, "resolution": 32})  # e.g. the CLI
    remote_id = str(answer.json()["id"])
    adopter = make_client(fresh_server.url, flavor=flavor)
    done = wait_success(adopter, remote_id)
    assert adopter.download(done.output, tmp_path / "adopted.obj").stat().st_size > 0
    stranger = make_client(fresh_server.url, key=OTHER_KEY, flavor=flavor)
    expect_error(Category.EXPIRED, lambda: stranger.fetch(remote_id))  # another key's job is not there for it
    assert fresh_server.stats()["submits"] == 1
