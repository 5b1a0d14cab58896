"""TLS: a real local HTTPS server signed by a CA made here; verification is never disabled anywhere.

Without the CA bundle the client must refuse the server (category network, hint about the CA bundle setting);
with ClientConfig(ca_bundle=path) the whole job (upload, submit, poll, download) succeeds over HTTPS.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.paths import EXAMPLE_IMAGE, REPO_ROOT
from tests.helpers.servers import ServerProcess, fresh, serve
from tests.helpers.tls import make_ca_and_server_cert

API_KEY = "tls-test-key-9f3a7c1e"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) made for this test module."""
    return make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_server(tls_files: tuple[Path, Path, Path]) -> Iterator[ServerProcess]:
    """The local server speaking HTTPS with a certificate signed by the test CA."""
    ca_path, cert_path, key_path = tls_files
    yield from serve("--workers", "1", "--tls-cert", str(cert_path), "--tls-key", str(key_path), ca_bundle=ca_path)


@pytest.fixture
def fresh_https(https_server: ServerProcess) -> Iterator[ServerProcess]:
    yield from fresh(https_server)


# --- the server side of the fixture ---------------------------------------------------------------


def test_server_speaks_https_with_the_test_ca(fresh_https: ServerProcess, tls_files: tuple[Path, Path, Path]) -> None:
    import requests

    assert fresh_https.url.startswith("https://127.0.0.1:")
    ca_path = tls_files[0]
    answer = requests.post(fresh_https.url + "/api/wallet_balance", json={"key": API_KEY}, verify=str(ca_path))
    assert answer.status_code == 200 and answer.json()["status"] == "success"
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(fresh_https.url + "/api/wallet_balance", json={"key": API_KEY}, timeout=10)
    # A client that refused the certificate must not have disturbed the server.
    assert fresh_https.running
    assert fresh_https.stats()["requests"].get("wallet") == 1


def test_server_links_are_https(fresh_https: ServerProcess) -> None:
    image_url = fresh_https.upload(EXAMPLE_IMAGE, key=API_KEY)
    assert image_url.startswith("https://127.0.0.1:")
    answer = fresh_https.post(
        "/api/v1/enterprise/3d/image_to_3d", {"key": API_KEY, "init_image": image_url, "resolution": 32}
    ).json()
    assert answer["status"] == "processing", answer
    assert answer["fetch_result"].startswith("https://")
    assert all(link.startswith("https://") for link in answer["future_links"])


# --- the client -----------------------------------------------------------------------------------


def _client(url: str, ca_bundle: Path | None):
    from api.client import ClientConfig, ModelsLabClient

    config = ClientConfig(base_url=url, connect_timeout=5.0, read_timeout=20.0, max_retries=1, backoff_base=0.01)
    if ca_bundle is not None:
        config.ca_bundle = str(ca_bundle)
    return ModelsLabClient(API_KEY, config)


def test_without_ca_bundle_the_client_refuses_with_a_ca_bundle_hint(fresh_https: ServerProcess) -> None:
    from api.errors import Category, ModelsLabError

    client = _client(fresh_https.url, None)
    try:
        with pytest.raises(ModelsLabError) as caught:
            client.wallet_balance()
    finally:
        client.close()
    error = caught.value
    assert error.category is Category.NETWORK, error
    hint = f"{error.message} {error.fix}"
    assert re.search(r"CA[ _-]?bundle", hint, re.IGNORECASE), hint
    assert "Traceback" not in hint and API_KEY not in hint
    assert fresh_https.stats()["requests"].get("wallet", 0) == 0  # nothing reached the API


def test_without_ca_bundle_no_job_is_submitted(fresh_https: ServerProcess) -> None:
    from api.errors import Category, ModelsLabError
    from api.params import GenerationParams

    client = _client(fresh_https.url, None)
    try:
        with pytest.raises(ModelsLabError) as caught:
            client.submit(GenerationParams(init_image=fresh_https.url + "/uploads/none.png", resolution=32))
    finally:
        client.close()
    assert caught.value.category is Category.NETWORK
    assert fresh_https.stats()["submits"] == 0


def test_with_ca_bundle_the_whole_job_succeeds(
    fresh_https: ServerProcess, tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from api.params import GenerationParams
    from tests.helpers.servers import wait_until

    client = _client(fresh_https.url, tls_files[0])
    try:
        assert client.wallet_balance()["currency"] == "USD"
        image_url = client.upload_image(EXAMPLE_IMAGE)
        assert image_url.startswith("https://")
        status = client.submit(GenerationParams(init_image=image_url, resolution=32))
        assert status.job_id is not None
        job_id = status.job_id

        def finished():
            answer = client.fetch(job_id)
            return answer if answer.status == "success" else None

        done = wait_until(finished, timeout=60, interval=0.2, message="job over HTTPS")
        target = tmp_path / "mesh.obj"
        result = client.download([*done.output, *done.proxy_links], target, expected_format="obj")
    finally:
        client.close()
    assert result == target and target.stat().st_size > 0
    assert b"\nf " in target.read_bytes()
    assert not list(tmp_path.glob("*.part"))
    assert fresh_https.stats()["submits"] == 1


def test_ca_bundle_path_that_does_not_exist_is_a_clear_error(fresh_https: ServerProcess, tmp_path: Path) -> None:
    from api.errors import ModelsLabError

    client = _client(fresh_https.url, tmp_path / "missing-ca.pem")
    try:
        with pytest.raises(ModelsLabError) as caught:
            client.wallet_balance()
    finally:
        client.close()
    assert caught.value.category.value in ("network", "invalid_input")
    assert "Traceback" not in str(caught.value)


def test_client_threads_are_not_left_behind(fresh_https: ServerProcess, tls_files: tuple[Path, Path, Path]) -> None:
    before = set(threading.enumerate())
    client = _client(fresh_https.url, tls_files[0])
    client.wallet_balance()
    client.close()
    assert set(threading.enumerate()) - before == set()


# --- static: no code path disables verification ---------------------------------------------------

SHIPPED_DIRS = ("api", "blender", "operators", "panels", "scripts")
DISABLING_PATTERNS = [
    (re.compile(r"verify\s*=\s*False"), "verify=False"),
    (re.compile(r"\.verify\s*=\s*(False|0|None)\b"), "session.verify disabled"),
    (re.compile(r"CERT_NONE"), "ssl.CERT_NONE"),
    (re.compile(r"check_hostname\s*=\s*False"), "check_hostname=False"),
    (re.compile(r"_create_unverified_context"), "unverified SSL context"),
    (re.compile(r"disable_warnings\s*\("), "urllib3.disable_warnings (hides unverified requests)"),
    (re.compile(r"cert_reqs\s*=\s*['\"]?(CERT_)?NONE", re.IGNORECASE), "cert_reqs NONE"),
    (re.compile(r"PYTHONHTTPSVERIFY"), "PYTHONHTTPSVERIFY"),
    (re.compile(r"(CURL|REQUESTS)_CA_BUNDLE\W{0,8}['\"]{2}"), "empty CA bundle variable"),
]


def _shipped_python_files() -> list[Path]:
    files = [REPO_ROOT / "__init__.py"]
    for directory in SHIPPED_DIRS:
        files.extend(sorted((REPO_ROOT / directory).rglob("*.py")))
    return [path for path in files if path.is_file()]


def test_static_no_code_disables_tls_verification() -> None:
    files = _shipped_python_files()
    assert any(path.parts[-2:] == ("api", "params.py") for path in files)  # the scan sees the code
    offenders = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for pattern, what in DISABLING_PATTERNS:
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {what}: {line.strip()}")
    assert offenders == []


def test_static_scan_would_catch_a_violation() -> None:
    """The patterns above are not vacuous: each flags the line it is meant for."""
    samples = [
        "requests.get(url, verify=False)",
        "session.verify = False",
        "ctx.verify_mode = ssl.CERT_NONE",
        "ctx.check_hostname = False",
        "ssl._create_unverified_context()",
        "urllib3.disable_warnings()",
        "PoolManager(cert_reqs='CERT_NONE')",
        "os.environ['PYTHONHTTPSVERIFY'] = '0'",
        "os.environ['CURL_CA_BUNDLE'] = ''",
    ]
    for sample in samples:
        assert any(pattern.search(sample) for pattern, _ in DISABLING_PATTERNS), sample


# --- a whole job through the JobRunner over HTTPS -------------------------------------------------------------------


def test_job_over_https_fails_without_the_ca_and_succeeds_with_it(
    fresh_https: ServerProcess, tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from tests.helpers.reliability import Workspace, assert_downloaded, assert_failed, assert_no_temp_files

    ws = Workspace(tmp_path / "user dir")
    try:
        ws.open(fresh_https.url)
        error = assert_failed(ws, ws.run(EXAMPLE_IMAGE), "network")
        assert re.search(r"CA[ _-]?bundle", f"{error['message']} {error['fix']}", re.IGNORECASE), error
        assert fresh_https.stats()["requests"] == {}, "a request got through an unverified connection"
        ws.open(fresh_https.url, client={"ca_bundle": str(tls_files[0])})
        assert_downloaded(ws, ws.run(EXAMPLE_IMAGE))
        assert fresh_https.stats()["submits"] == 1
    finally:
        ws.close()
    assert_no_temp_files(ws.journal_dir, ws.cache_dir)
