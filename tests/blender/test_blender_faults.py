"""Every failure category reaches the user of the operator as an error report, and nothing lands in the scene."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.blender import FAST_PARAMS, BlenderFn, BlenderOn, UserDir
from tests.helpers.keys import BLENDER_KEY
from tests.helpers.paths import example_image
from tests.helpers.servers import ServerProcess, serve

# (id, server fault rules, expected category, submits the server should count[, preferences])
FAULTS = [
    ("credits_402", [{"fault": "http_error", "endpoint": "submit", "status": 402, "times": -1}], "credits", 0),
    (
        "server_500_html",
        [{"fault": "http_error", "endpoint": "submit", "status": 500, "body": "html", "times": -1}],
        "server",
        0,
    ),
    (
        "rate_limited_forever",
        [{"fault": "rate_limit", "endpoint": "submit", "retry_after": 1, "times": -1}],
        "rate_limited",
        0,
        {"poll_timeout": 10},  # a refused submit is tried again until the poll timeout (never charged meanwhile)
    ),
    ("job_failed", [{"fault": "job_failed", "endpoint": "submit", "text": "GPU fell over"}], "server", 1),
    (
        "expired",  # 24 h later: the fetch and every output URL answer 404
        [
            {"fault": "expired", "endpoint": "fetch", "times": -1},
            {"fault": "expired", "endpoint": "download", "times": -1},
        ],
        "expired",
        1,
    ),
    ("html_mesh", [{"fault": "html_mesh", "endpoint": "download", "times": -1}], "bad_mesh", 1),
    ("corrupt_mesh", [{"fault": "corrupt_mesh", "endpoint": "download", "times": -1}], "bad_mesh", 1),
    ("empty_mesh", [{"fault": "corrupt_mesh", "endpoint": "download", "bytes": 0, "times": -1}], "bad_mesh", 1),
    (
        # The server took (and charged) the job but the answer never came: sending it again could charge twice.
        "submit_answer_lost",
        [{"fault": "drop_connection", "endpoint": "submit"}],
        "network",
        1,
    ),
]


def assert_failed_cleanly(result: dict, category: str) -> None:
    """An ERROR report naming the category, no new object, and a journal that tells the truth."""
    attempt = result["runs"][0]
    assert attempt["error"] is not None, f"no error report (operator returned {attempt['result']})"
    assert f"[{category}]" in attempt["error"], f"report does not name [{category}]: {attempt['error']}"
    assert "Traceback" not in attempt["error"]
    assert attempt["new_objects"] == [], [o["name"] for o in attempt["new_objects"]]
    assert result["objects_after"] == len(result["objects_before"])
    assert not result["modelslab_collection"], result["modelslab_collection"]
    for record in result["journal"]:
        assert record["state"] == "failed", record["state"]
        assert record["error"]["category"] == category, record["error"]
        # The report carries the fix in the sidebar's words: API field names become the labels people see.
        fix = record["error"]["fix"]
        assert fix and fix.split("(e.g.")[0].strip() in attempt["error"], "the report lacks the fix"


@pytest.mark.parametrize(
    ("rules", "category", "submits", "prefs"),
    [(*case[1:4], case[4] if len(case) > 4 else {}) for case in FAULTS],
    ids=[c[0] for c in FAULTS],
)
def test_fault_is_reported_with_its_category_and_creates_nothing(
    blender: BlenderFn, fresh_server: ServerProcess, rules: list[dict], category: str, submits: int, prefs: dict
) -> None:
    fresh_server.set_faults(rules)
    run = blender("generate", prefs=prefs, kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}})
    assert_failed_cleanly(run.result, category)
    stats = fresh_server.stats()
    assert stats["faults_fired"]["total"] >= 1, "the fault never fired: the test proved nothing"
    assert stats["submits"] == submits, f"{stats['submits']} submits (a failed job must never be paid twice)"
    if submits:
        assert len(run.result["journal"]) == 1, "a submitted job must stay in the journal"


@pytest.mark.parametrize(
    ("fault", "output_format"),
    [
        ({"fault": "obj_mtllib", "mtllib": "../../../secret.mtl"}, "obj"),
        ({"fault": "glb_buffer_uri", "uri": "/etc/hostname"}, "glb"),
        ({"fault": "glb_image_uri", "uri": "../outside.png"}, "glb"),
    ],
    ids=["obj_mtllib_outside", "glb_buffer_absolute", "glb_image_relative"],
)
def test_a_mesh_naming_files_outside_itself_never_reaches_the_importer(
    blender: BlenderFn, fresh_server: ServerProcess, user_dir: UserDir, fault: dict, output_format: str
) -> None:
    """A real mesh that points at other files (a material library, a buffer or texture elsewhere) is refused as
    bad_mesh by the download: no object, no mesh left in the cache for a later import to pick up."""
    fresh_server.set_faults([{**fault, "endpoint": "submit"}])
    props = {"image": str(example_image()), **FAST_PARAMS, "output_format": output_format}
    run = blender("generate", kwargs={"props": props})
    assert fresh_server.stats()["faults_fired"]["by_kind"].get(fault["fault"]) == 1, "the mesh was not made hostile"
    assert_failed_cleanly(run.result, "bad_mesh")
    assert "was refused" in run.result["runs"][0]["error"]
    meshes = [p for p in user_dir.root.rglob(f"*.{output_format}") if p.is_file()]
    assert meshes == [], f"a refused mesh stayed on disk: {meshes}"


def test_rate_limit_is_waited_out_and_the_job_succeeds(blender: BlenderFn, fresh_server: ServerProcess) -> None:
    fresh_server.set_faults([{"fault": "rate_limit", "endpoint": "submit", "retry_after": 1, "times": 2}])
    run = blender("generate", kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}})
    attempt = run.result["runs"][0]
    assert attempt["error"] is None, attempt["error"]
    assert len(attempt["new_objects"]) == 1
    stats = fresh_server.stats()
    assert stats["faults_fired"]["by_kind"].get("rate_limit") == 2
    assert stats["submits"] == 1
    assert attempt["new_objects"][0]["vertices"] == stats["jobs"][0]["vertices"]


def test_transient_server_errors_while_polling_do_not_lose_the_job(
    blender: BlenderFn, fresh_server: ServerProcess
) -> None:
    fresh_server.set_faults(
        [
            {"fault": "http_error", "endpoint": "fetch", "status": 503, "body": "html", "times": 1},
            {"fault": "http_error", "endpoint": "download", "status": 502, "body": "html", "times": 1},
            {"fault": "malformed_json", "endpoint": "fetch", "times": 1},
            {"fault": "truncate", "endpoint": "download", "times": 1},
        ]
    )
    run = blender("generate", kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}})
    attempt = run.result["runs"][0]
    assert attempt["error"] is None, attempt["error"]
    assert len(attempt["new_objects"]) == 1
    stats = fresh_server.stats()
    assert stats["submits"] == 1
    assert stats["faults_fired"]["total"] >= 1


@pytest.mark.parametrize(
    "props",
    [
        {"image": "/nonexistent/folder/missing.png"},
        {"image": str(Path(__file__))},  # not an image
        {"image": str(example_image()), "resolution": 9999},
        {"image": str(example_image()), "foreground_ratio": 0.01},
        {"image": "ftp://example.com/duck.png"},
    ],
    ids=["missing_file", "not_an_image", "resolution_9999", "foreground_ratio_0.01", "ftp_url"],
)
def test_invalid_input_is_refused_before_any_request(
    blender: BlenderFn, fresh_server: ServerProcess, props: dict
) -> None:
    # Should a request slip through anyway, it fails at once (and the zero-request check below catches it).
    fresh_server.set_faults([{"fault": "http_error", "endpoint": "any", "status": 418, "times": -1}])
    run = blender("generate", kwargs={"props": {**FAST_PARAMS, **props}})
    result = run.result
    attempt = result["runs"][0]
    assert attempt["error"] is not None, f"bad input was accepted: {props} -> {attempt['result']}"
    assert "[invalid_input]" in attempt["error"], attempt["error"]
    assert attempt["new_objects"] == []
    stats = fresh_server.stats()
    assert sum(stats["requests"].values()) == 0, f"requests were sent for invalid input: {stats['requests']}"
    for record in result["journal"]:
        assert record["state"] == "failed" and record["error"]["category"] == "invalid_input"


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[ServerProcess]:
    """A server that only accepts one key (anything else answers 401)."""
    yield from serve("--keys", "the-only-valid-key-1234")


def test_wrong_key_is_an_auth_error(blender_on: BlenderOn, keyed_server: ServerProcess) -> None:
    keyed_server.reset()
    run = blender_on(keyed_server)("generate", kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}})
    assert_failed_cleanly(run.result, "auth")
    assert keyed_server.stats()["submits"] == 0
    assert BLENDER_KEY not in run.stdout + run.stderr
    assert BLENDER_KEY not in run.result["runs"][0]["error"]


def test_missing_key_is_an_auth_error_before_any_request(blender: BlenderFn, fresh_server: ServerProcess) -> None:
    run = blender("generate", env={"MODELSLAB_API_KEY": None}, kwargs={"props": {"image": str(example_image())}})
    assert_failed_cleanly(run.result, "auth")
    assert sum(fresh_server.stats()["requests"].values()) == 0


def test_processing_forever_times_out_into_a_resumable_job(blender: BlenderFn, fresh_server: ServerProcess) -> None:
    fresh_server.set_faults([{"fault": "processing_forever", "endpoint": "submit"}])
    run = blender(
        "generate", prefs={"poll_timeout": 10}, kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}}
    )
    result = run.result
    attempt = result["runs"][0]
    assert attempt["error"] is not None, attempt["result"]
    assert "resume" in attempt["error"].lower(), attempt["error"]
    assert attempt["new_objects"] == []
    (record,) = result["journal"]
    assert record["state"] == "timed_out", record["state"]
    assert record["remote_id"]
    assert fresh_server.stats()["submits"] == 1


def test_connection_refused_is_a_network_error(blender: BlenderFn, closed_port: int) -> None:
    run = blender(
        "generate",
        prefs={"base_url": f"http://127.0.0.1:{closed_port}"},
        kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}},
    )
    assert_failed_cleanly(run.result, "network")


def test_hostile_server_names_stay_inside_the_cache(
    blender: BlenderFn, fresh_server: ServerProcess, user_dir: UserDir
) -> None:
    outside = Path("/etc/modelslab")  # one of the names the server sends is /etc/modelslab/x<id>.obj
    assert not outside.exists()
    fresh_server.set_faults([{"fault": "hostile_names", "endpoint": "submit"}])
    run = blender("generate", kwargs={"props": {"image": str(example_image()), **FAST_PARAMS}})
    attempt = run.result["runs"][0]
    assert fresh_server.stats()["faults_fired"]["total"] >= 1
    assert not outside.exists(), "a server-supplied absolute path was written to"
    assert attempt["error"] is None, attempt["error"]
    (obj,) = attempt["new_objects"]
    assert obj["name"].startswith("duck_512"), obj["name"]  # named after the input, not the server's names
    (record,) = run.result["journal"]
    cache = Path(record["file_path"]).resolve()
    assert cache.is_relative_to(user_dir.home.resolve()), cache
    assert cache.parent.name == "meshes", cache
    assert "/" not in cache.name and ".." not in cache.name
    stray = [p for p in user_dir.root.rglob("*") if p.is_file() and p.suffix == ".obj" and p.parent != cache.parent]
    assert stray == [], f"mesh files outside the cache folder: {stray}"
