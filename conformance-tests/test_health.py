"""HTTP health endpoints and process lifecycle."""

from __future__ import annotations

import signal
import time

import pytest
import requests

from udn_conformance.client import query_rows


def _http(node):
    if not node.http_url:
        pytest.skip("no HTTP address for this node (set UDN_HTTP_URL)")
    return node.http_url


def test_healthz_is_200(main_node):
    r = requests.get(f"{_http(main_node)}/healthz", timeout=10)
    assert r.status_code == 200, r.text


def test_readyz_is_200_once_datasets_are_loaded(main_node):
    r = requests.get(f"{_http(main_node)}/readyz", timeout=10)
    assert r.status_code == 200, r.text


def test_unknown_http_path_is_404(main_node):
    r = requests.get(f"{_http(main_node)}/no-such-endpoint", timeout=10)
    assert r.status_code == 404


@pytest.mark.spawns_node
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stops_cleanly_on_signal(launcher, generated, sig):
    node = launcher.spawn(["--table", f"readings={generated['readings']}"])
    with node.connect() as conn:
        assert query_rows(conn, "SELECT count(*) FROM readings")[0][0] > 0
    started = time.monotonic()
    code = node.stop(sig, timeout=15)
    assert time.monotonic() - started < 15, "node did not stop within 15 s of the signal"
    assert code == 0, f"exit code {code} after {sig.name}; stderr:\n{node.stderr_text()[-2000:]}"


@pytest.mark.spawns_node
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
