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
from udn_conformance.node import READY_TIMEOUT_S, with_catalog, with_catalog_args


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


# 250,000 rows times n: a stream still being sent when the signal arrives.
_STREAM = "SELECT r.* FROM readings r CROSS JOIN (SELECT * FROM generate_series(1, {n})) g"


def _stream_through_a_signal(node, sig, n: int, *, stall: float = 0.0):
    """Starts a large DoGet, sends `sig` once the first batch has arrived, reads on (after
    `stall` seconds without reading); returns (rows expected, rows read, error or None)."""
    with node.connect() as conn:
        expected = query_rows(conn, "SELECT count(*) FROM readings")[0][0] * n
    with node.connect() as conn:
        cur = conn.cursor()
        cur.execute(_STREAM.format(n=n))
        reader = cur.fetch_record_batch()
        rows, error = 0, None
        try:
            for batch in reader:
                if rows == 0:
                    node.process.send_signal(sig)
                    time.sleep(stall)
                rows += batch.num_rows
        except Exception as err:  # noqa: BLE001 - any client error is the outcome under test
            error = err
        try:
            cur.close()
        except Exception:  # noqa: BLE001 - the node may be gone by now
            pass
    return expected, rows, error


@pytest.mark.spawns_node
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.beyond_spec("process lifecycle: in-flight streams finish on SIGTERM/SIGINT")
def test_a_signal_lets_streams_in_flight_finish(launcher, generated, tmp_path, sig):
    """A stream being sent when the node is told to stop arrives whole, to the last row, and the
    node then exits 0. (Each connection used to close with a reset, which made the client's
    kernel drop the end of the stream it had received but not read yet.)"""
    # A grace time no machine reaches, however slow: the drain itself is under test.
    config = tmp_path / "grace.toml"
    config.write_text(with_catalog('[limits]\nshutdown_grace = "10m"\n'))
    for attempt in range(2):
        node = launcher.spawn(
            ["--config", str(config), "--table", f"readings={generated['readings']}"]
        )
        expected, rows, error = _stream_through_a_signal(node, sig, 8)
        assert error is None and rows == expected, (
            f"attempt {attempt}: {rows} of {expected} rows, error {error}"
        )
        code = node.stop(sig, timeout=60)
        assert code == 0, f"exit code {code}; stderr:\n{node.stderr_text()[-2000:]}"


@pytest.mark.spawns_node
@pytest.mark.beyond_spec("process lifecycle: limits.shutdown_grace bounds the drain")
def test_shutdown_grace_bounds_a_stalled_stream(launcher, generated, tmp_path):
    """A client that stops reading does not keep the node alive past `shutdown_grace`: the node
    exits 0 soon after it, and the client gets an error, never a silently short result."""
    config = tmp_path / "grace.toml"
    config.write_text(with_catalog('[limits]\nshutdown_grace = "1s"\n'))
    node = launcher.spawn(
        ["--config", str(config), "--table", f"readings={generated['readings']}"]
    )
    started = time.monotonic()
    result = {}

    def read():
        result["outcome"] = _stream_through_a_signal(node, signal.SIGTERM, 20, stall=8.0)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = node.process.wait(timeout=30)
    stopped = time.monotonic() - started
    reader.join(timeout=60)
    assert code == 0, f"exit code {code}; stderr:\n{node.stderr_text()[-2000:]}"
    assert stopped < 8.0, f"node took {stopped:.1f} s to stop with a 1 s grace time"
    expected, rows, error = result["outcome"]
    assert error is not None and rows < expected, (
        f"{rows} of {expected} rows and no error: a cut-off stream must fail"
    )
    assert "shutdown_grace" in node.stderr_text(), node.stderr_text()[-2000:]


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
