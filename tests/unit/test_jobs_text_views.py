"""JobRunner with text jobs, several views and adopted remote jobs, against the real local server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api import Category, ClientConfig, GenerationParams, JobRunner, ModelsLabClient, ModelsLabError
from api.cache import MeshCache
from api.journal import JobJournal
from api.params import text_params
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess

DUCK = str(example_image("duck_512.png"))
VASE = str(example_image("vase_plain.png"))
MUSHROOM = str(example_image("mushroom_rgba.png"))
KEY = "sk-jobs-views-test-3b8e51c0"

MakeRunner = Callable[..., JobRunner]


@pytest.fixture
def make_runner(tmp_path: Path) -> Iterator[MakeRunner]:
    made: list[tuple[JobRunner, ModelsLabClient]] = []

    def make(server: ServerProcess, **options: object) -> JobRunner:
        client = ModelsLabClient(KEY, ClientConfig(base_url=server.url, max_retries=2, backoff_base=0.1))
        runner = JobRunner(client, JobJournal(tmp_path / "jobs"), MeshCache(tmp_path / "meshes"), **options)  # type: ignore[arg-type]
        made.append((runner, client))
        return runner

    yield make
    for runner, client in made:
        runner.shutdown(timeout=15)
        client.close()
    assert [t.name for t in threading.enumerate() if t.name.startswith("modelslab-job")] == []


def refused(call: Callable[[], object]) -> ModelsLabError:
    with pytest.raises(ModelsLabError) as info:
        call()
    assert info.value.category is Category.INVALID_INPUT
    return info.value


# --- text jobs -------------------------------------------------------------------------------------------------------
def test_a_text_job_runs_without_upload_and_is_named_from_its_prompt(
    fresh_server: ServerProcess, make_runner: MakeRunner
) -> None:
    runner = make_runner(fresh_server)
    record = runner.submit("", text_params("  a small   red wooden chair with four legs and a tall back  ", seed=3))
    assert record.name == "a small red wooden chair with four legs"
    assert record.source == "" and record.image_url is None
    done = runner.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    assert "uploading" not in [entry[0] for entry in done.history]
    assert Path(str(done.file_path)).stat().st_size > 0
    assert done.meta["prompt"].startswith("a small") and done.meta["seed"] == 3
    stats = fresh_server.stats()
    assert stats["submits"] == 1 and stats["requests"].get("upload", 0) == 0
    assert stats["jobs"][0]["kind"] == "text"


def test_bad_text_jobs_are_refused_before_any_request(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(fresh_server)
    assert "prompt" in refused(lambda: runner.submit("", text_params("   "))).message
    assert "takes no image" in refused(lambda: runner.submit(DUCK, text_params("a chair"))).message
    assert "guidance_scale" in refused(lambda: runner.submit("", text_params("a chair", guidance_scale=99.0))).message
    assert runner.records() == [] and runner.journal.unfinished() == []
    assert fresh_server.stats()["submits"] == 0


# --- several views ---------------------------------------------------------------------------------------------------
def test_local_views_are_uploaded_after_the_front_and_sent_as_multi_image(
    fresh_server: ServerProcess, make_runner: MakeRunner
) -> None:
    runner = make_runner(fresh_server)
    record = runner.submit(DUCK, GenerationParams(resolution=48, extra_views=[VASE, MUSHROOM]))
    assert record.params["extra_views"] == [VASE, MUSHROOM]  # absolute local paths until uploaded
    done = runner.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    views = done.params["extra_views"]
    assert len(views) == 2 and all(v.startswith(fresh_server.url) and "/uploads/" in v for v in views)
    assert done.params["init_image"] == done.image_url and done.image_url not in views
    assert done.meta["multi_image"] is True and done.meta["image"] == [done.image_url, *views]
    stats = fresh_server.stats()
    assert stats["requests"]["upload"] == 3 and stats["submits"] == 1 and stats["jobs"][0]["views"] == 3
    assert runner.journal.load(record.local_id).params["extra_views"] == views


def test_url_front_with_a_local_view_uploads_only_the_view(
    fresh_server: ServerProcess, make_runner: MakeRunner
) -> None:
    front = fresh_server.upload(DUCK, key=KEY)
    runner = make_runner(fresh_server)
    done = runner.wait(runner.submit(front, GenerationParams(resolution=48, extra_views=[VASE])).local_id, 60)
    assert done.state == "downloaded", done.error
    assert done.params["init_image"] == front and done.meta["image"][0] == front
    assert fresh_server.stats()["requests"]["upload"] == 2  # the test's own, and the side view


@pytest.mark.parametrize(
    ("views", "says"),
    [
        (["/no/such/side.png"], "extra_views (view 2, right side): image file not found"),
        ([VASE, __file__], "extra_views (view 3, back)"),
        ([VASE, "ftp://x/back.png"], "extra_views (view 3, back): only http:// and https://"),
        ([VASE, VASE, VASE, VASE], "extra_views: several views means 2 to 4"),
        ([""], "extra_views (view 2, right side): no image was given"),
    ],
)
def test_bad_views_are_refused_before_any_request(
    fresh_server: ServerProcess, make_runner: MakeRunner, views: list[str], says: str
) -> None:
    runner = make_runner(fresh_server)
    error = refused(lambda: runner.submit(DUCK, GenerationParams(extra_views=views)))
    assert error.message.startswith(says), error.message
    stats = fresh_server.stats()
    assert stats["submits"] == 0 and stats["requests"].get("upload", 0) == 0


# --- adopting a remote job -------------------------------------------------------------------------------------------
def submit_directly(server: ServerProcess, fmt: str = "obj") -> str:
    """A job started by another client with the same key (the CLI, a web app)."""
    url = server.upload(VASE, key=KEY)
    answer = server.post(
        "/api/v1/enterprise/3d/image_to_3d", {"key": KEY, "init_image": url, "resolution": 32, "output_format": fmt}
    )
    return str(answer.json()["id"])


@pytest.mark.parametrize("fmt", ["obj", "glb"])
def test_adopt_polls_and_downloads_without_submitting(
    fresh_server: ServerProcess, make_runner: MakeRunner, fmt: str
) -> None:
    remote_id = submit_directly(fresh_server, fmt)
    before = fresh_server.stats()
    runner = make_runner(fresh_server)
    record = runner.adopt(remote_id, extra={"origin": "test"})
    assert record.state == "submitted" and record.remote_id == remote_id and record.name == f"job {remote_id}"
    assert runner.journal.load(record.local_id).remote_id == remote_id
    done = runner.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    path = Path(str(done.file_path))
    assert path.suffix == f".{fmt}" and path.stat().st_size > 0
    states = [entry[0] for entry in done.history]
    assert "submitting" not in states and "uploading" not in states
    assert done.extra == {"origin": "test", "adopted": True}
    after = fresh_server.stats()
    assert after["submits"] == before["submits"] == 1
    assert after["requests"]["upload"] == before["requests"]["upload"]


def test_adopt_of_an_unknown_or_malformed_id(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(fresh_server)
    for bad in ("", "../etc", "a b", "x" * 65, "..."):
        assert "Not a valid job id" in refused(lambda bad=bad: runner.adopt(bad)).message
    assert runner.records() == []
    done = runner.wait(runner.adopt("424242").local_id, timeout=30)
    assert done.state == "failed" and done.error and done.error["category"] in ("expired", "server")
    assert fresh_server.stats()["submits"] == 0
