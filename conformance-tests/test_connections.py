"""Connections: idle connections cannot take a node down.

Each listener (Flight SQL, HTTP) has a budget of open connections below the process's
file-descriptor limit; a connection beyond it is closed at once, and the listener keeps
accepting. A connection that sends no request within `limits.handshake_timeout`, or carries
none for `limits.idle_timeout` (`http_idle_timeout` for HTTP), is closed by the node. The
Flight SQL budget is separate from HTTP's, so `/healthz` answers while Flight SQL's is used up.

The nodes here are started with short timeouts (Polder configuration; spawn mode only). One
runs under a descriptor limit of 256, with the budgets Polder derives from it, and gets more
idle connections than it has descriptors: the situation of the issue these tests come from.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pyarrow.flight as flight
import pytest
import requests

from udn_conformance import flightsql as fs
from udn_conformance.node import spawn, with_catalog

TIMEOUT_S = 2
# The handshake timeout of the limit tests: long enough that a connection closed before it can
# only have been closed by the limit, however loaded the machine.
HANDSHAKE_S = 6
# How long connections over the limit may take to be closed: "at once", with room for a slow
# machine, and well before the handshake timeout.
AT_ONCE_S = 4
QUERY = "SELECT 1 AS one"


def _config(path: Path, **limits) -> Path:
    lines = ["[limits]"] + [f"{k} = {v!r}".replace("'", '"') for k, v in limits.items()]
    path.write_text(with_catalog("\n".join(lines) + "\n"))
    return path


def _start(launcher, tmp_path: Path, **limits):
    config = _config(tmp_path / "node.toml", **limits)
    return launcher.spawn(["--config", str(config)], name="connections")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


def _open(port: int, n: int) -> list[socket.socket]:
    """`n` TCP connections to `port` that never send anything."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def _closed_by_peer(s: socket.socket, wait: float) -> bool:
    """Whether the node closed `s` (end of file or reset) within `wait` seconds; what it
    sent before (an HTTP/2 SETTINGS frame) is read and dropped."""
    deadline = time.monotonic() + wait
    while True:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if s.recv(4096) == b"":
                return True
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True


def _closed_count(socks: list[socket.socket], within: float) -> int:
    deadline = time.monotonic() + within
    closed = 0
    for s in socks:
        if _closed_by_peer(s, max(0.01, deadline - time.monotonic())):
            closed += 1
    return closed


def _established(port: int, states: tuple[str, ...] = ("01",)) -> int:
    """The node's open connections on its `port` (server side of ESTABLISHED TCP sockets, or
    of the TCP `states` given, as /proc/net/tcp numbers them)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] in states:
                count += 1
    return count


def _quiet(port: int, within: float = 5) -> None:
    """Waits until the node holds no connection on `port`: the launcher's readiness probe
    frees its slot only once the node has seen it close, which races with new connections."""
    deadline = time.monotonic() + within
    # ESTABLISHED, or CLOSE_WAIT: closed by the client, not yet by the node.
    while _established(port, ("01", "08")) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def _healthz(node) -> int:
    return requests.get(f"{node.http_url}/healthz", timeout=5).status_code


def _query_ok(node) -> bool:
    with fs.client(node) as client:
        _, table = fs.statement(client, QUERY)
        return table.column(0)[0].as_py() == 1


def _close_all(socks):
    for s in socks:
        s.close()


@pytest.mark.requirement("UDN-FSQL-8", "UDN-OPS-1")
def test_the_flight_connection_limit_closes_extra_connections_and_health_still_answers(
    launcher, tmp_path
):
    node = _start(
        launcher, tmp_path,
        max_connections=20, handshake_timeout=f"{HANDSHAKE_S}s", idle_timeout=f"{TIMEOUT_S}s",
    )
    port = _port(node.flight_url)
    _quiet(port)
    held = _open(port, 20)
    extra = _open(port, 10)
    try:
        # Beyond the budget: closed at once, while the held ones stay open.
        assert _closed_count(extra, within=AT_ONCE_S) == 10
        assert _closed_count(held[:3], within=0.2) == 0
        assert node.alive()
        assert _healthz(node) == 200
        # Never a request on them: the node closes them after the handshake timeout, and a
        # new client queries.
        assert _closed_count(held, within=HANDSHAKE_S + 3) == 20
        assert _query_ok(node)
    finally:
        _close_all(held + extra)


@pytest.mark.requirement("UDN-FSQL-8")
def test_a_connection_left_idle_after_a_query_is_closed_by_the_node(launcher, tmp_path):
    node = _start(
        launcher, tmp_path,
        max_connections=20, handshake_timeout="10s", idle_timeout=f"{TIMEOUT_S}s",
    )
    port = _port(node.flight_url)
    client = fs.client(node)
    try:
        _, table = fs.statement(client, QUERY)
        assert table.num_rows == 1
        assert _established(port) >= 1
        # The client keeps its connection open and sends nothing; the node closes it.
        deadline = time.monotonic() + TIMEOUT_S + 4
        while _established(port) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _established(port) == 0, "the idle connection is still open"
        # The client reconnects for its next query.
        _, table = fs.statement(client, QUERY)
        assert table.num_rows == 1
    finally:
        client.close()


@pytest.mark.requirement("UDN-OPS-1")
def test_idle_http_connections_have_a_budget_of_their_own(launcher, tmp_path):
    node = _start(
        launcher, tmp_path,
        http_max_connections=8, handshake_timeout=f"{HANDSHAKE_S}s", http_idle_timeout="2s",
    )
    port = _port(node.http_url)
    _quiet(port)
    held = _open(port, 8)
    extra = _open(port, 8)
    try:
        assert _closed_count(extra, within=AT_ONCE_S) == 8
        # Flight SQL has its own budget.
        assert _query_ok(node)
        assert _closed_count(held, within=HANDSHAKE_S + 3) == 8
        assert _healthz(node) == 200
    finally:
        _close_all(held + extra)


@pytest.fixture
def low_nofile_bin(polder_bin, tmp_path) -> Path:
    """The node binary under a descriptor limit of 256 (`ulimit -n 256`)."""
    wrapper = tmp_path / "polder-nofile-256"
    wrapper.write_text(f'#!/bin/sh\nulimit -n 256 || exit 99\nexec "{polder_bin}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.requirement("UDN-OPS-1", "UDN-FSQL-8")
def test_more_idle_connections_than_descriptors_leave_flight_and_health_serving(
    launcher, low_nofile_bin, tmp_path
):
    if launcher.remote is not None:
        pytest.skip("needs to start its own node; not possible with UDN_FLIGHT_URL")
    # The budgets are Polder's defaults, derived from the descriptor limit.
    config = _config(tmp_path / "node.toml", handshake_timeout=f"{TIMEOUT_S}s")
    node = spawn(low_nofile_bin, ["--config", str(config)], name="nofile")
    socks = []
    try:
        for _ in range(300):
            try:
                socks.append(socket.create_connection(("127.0.0.1", _port(node.flight_url)), timeout=5))
            except OSError:
                break
        assert node.alive()
        # Health answers while every descriptor the budget allows holds an idle connection.
        assert _healthz(node) == 200
        assert _established(_port(node.flight_url)) < 256
        # The idle connections are closed in time; then Flight SQL serves again.
        assert _closed_count(socks, within=TIMEOUT_S + 8) == len(socks)
        assert _query_ok(node)
        assert _healthz(node) == 200
    finally:
        _close_all(socks)
        node.stop()
