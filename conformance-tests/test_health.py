"""HTTP health endpoints and process lifecycle."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from udn_conformance.client import query_rows
from udn_conformance.httpfiles import FileServer
from udn_conformance.node import READY_TIMEOUT_S, with_catalog_args


def _http(node):
    if not node.http_url:
        pytest.skip("no HTTP address for this node (set UDN_HTTP_URL)")
    return node.http_url


@pytest.mark.requirement("UDN-OPS-1")
def test_healthz_is_200(main_node):
    r = requests.get(f"{_http(main_node)}/healthz", timeout=10)
    assert r.status_code == 200, r.text


@pytest.mark.requirement("UDN-OPS-2")
def test_readyz_is_200_once_datasets_are_loaded(main_node):
    r = requests.get(f"{_http(main_node)}/readyz", timeout=10)
    assert r.status_code == 200, r.text


def _strings(value) -> list[str]:
    """Every string in a JSON document, object keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _names_table(strings: list[str], table: str) -> bool:
    return any(s == table or s.endswith(f".{table}") for s in strings)


@pytest.mark.requirement("UDN-OPS-2")
def test_readyz_body_is_json_listing_the_served_tables(main_node, main_tables):
    r = requests.get(f"{_http(main_node)}/readyz", timeout=10)
    assert r.status_code == 200, r.text
    try:
        body = r.json()
    except ValueError as e:
        raise AssertionError(f"/readyz body is not JSON: {r.text[:500]!r}") from e
    strings = _strings(body)
    missing = [t for t in sorted(main_tables) if not _names_table(strings, t)]
    assert not missing, f"/readyz does not list {missing}: {r.text[:2000]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-OPS-1", "UDN-OPS-2")
def test_readyz_is_503_while_a_dataset_loads(polder_bin, generated, tmp_path):
    """The dataset is served over HTTP by a server that holds every request until released."""
    gate = threading.Event()
    server = FileServer(generated["stations_csv"].parent, gate=gate)
    http = f"http://127.0.0.1:{_free_port()}"
    cmd = [
        str(polder_bin), "serve", "--name", "slow_start", "--flight", "127.0.0.1:0",
        "--http", http.removeprefix("http://"),
        *with_catalog_args(["--table", f"held={server.url}/{generated['stations_csv'].name}"]),
    ]  # fmt: skip
    stderr = open(tmp_path / "stderr.log", "wb")
    process = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.poll() is None, (
                f"node exited with {process.returncode}: "
                f"{(tmp_path / 'stderr.log').read_text(errors='replace')[-2000:]}"
            )
            try:
                if requests.get(f"{http}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "/healthz did not answer while the dataset loads"
            time.sleep(0.05)
        assert server.waiting.wait(READY_TIMEOUT_S), "the node never asked for the held dataset"
        for _ in range(3):
            r = requests.get(f"{http}/readyz", timeout=5)
            assert r.status_code == 503, f"/readyz {r.status_code} while loading: {r.text}"
            assert requests.get(f"{http}/healthz", timeout=5).status_code == 200
            time.sleep(0.2)
        gate.set()
        while True:
            r = requests.get(f"{http}/readyz", timeout=5)
            if r.status_code == 200:
                break
            assert r.status_code == 503, f"/readyz {r.status_code}: {r.text}"
            assert time.monotonic() < deadline, "/readyz not 200 after the dataset was released"
            time.sleep(0.05)
        assert _names_table(_strings(r.json()), "held"), r.text
    finally:
        gate.set()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()
        server.close()


@pytest.mark.beyond_spec("HTTP paths other than /healthz and /readyz")
def test_unknown_http_path_is_404(main_node):
    r = requests.get(f"{_http(main_node)}/no-such-endpoint", timeout=10)
    assert r.status_code == 404


@pytest.mark.spawns_node
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.beyond_spec("process lifecycle: exit code 0 on SIGTERM/SIGINT")
def test_stops_cleanly_on_signal(launcher, generated, sig):
    node = launcher.spawn(["--table", f"readings={generated['readings']}"])
    with node.connect() as conn:
        assert query_rows(conn, "SELECT count(*) FROM readings")[0][0] > 0
    started = time.monotonic()
    code = node.stop(sig, timeout=15)
    assert time.monotonic() - started < 15, "node did not stop within 15 s of the signal"
    assert code == 0, f"exit code {code} after {sig.name}; stderr:\n{node.stderr_text()[-2000:]}"


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-DATA-1")
def test_listening_line_names_the_node(launcher, generated):
    node = launcher.spawn(["--table", f"readings={generated['readings']}"], name="line_check")
    try:
        assert node.catalog == "line_check"
        assert node.flight_url.startswith("grpc://127.0.0.1:")
        assert not node.flight_url.endswith(":0")
        assert node.http_url.startswith("http://127.0.0.1:")
        assert not node.http_url.endswith(":0")
        with node.connect() as conn:
            qualified = query_rows(conn, "SELECT count(*) FROM line_check.public.readings")
            assert qualified == query_rows(conn, "SELECT count(*) FROM readings")
    finally:
        node.stop()
