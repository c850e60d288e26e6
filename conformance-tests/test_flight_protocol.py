"""Flight-level facts that ADBC hides, checked with pyarrow.flight and raw Flight SQL commands."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from udn_conformance import proto
from udn_conformance.compare import assert_same_rows, rows_of_arrow
from udn_conformance.errors import flight_grpc_status
from udn_conformance.node import RPC_TIMEOUT_S, rss
from udn_conformance.reference import Reference

OPTIONS = flight.FlightCallOptions(timeout=RPC_TIMEOUT_S)
SQL = "SELECT n_nationkey, n_name, n_regionkey FROM nation WHERE n_regionkey IN (1, 3)"


def _client(node) -> flight.FlightClient:
    return flight.FlightClient(node.flight_url)


def _flight_info(client: flight.FlightClient, sql: str) -> flight.FlightInfo:
    descriptor = flight.FlightDescriptor.for_command(proto.command_statement_query(sql))
    return client.get_flight_info(descriptor, OPTIONS)


def _read_all(client: flight.FlightClient, info: flight.FlightInfo) -> pa.Table:
    tables = [client.do_get(ep.ticket, OPTIONS).read_all() for ep in info.endpoints]
    return pa.concat_tables(tables) if tables else info.schema.empty_table()


@pytest.mark.requirement("UDN-FSQL-1", "UDN-FSQL-4")
def test_statement_query_round_trip(main_node, main_ref):
    client = _client(main_node)
    info = _flight_info(client, SQL)
    assert info.endpoints, "FlightInfo without endpoints"
    table = _read_all(client, info)
    assert_same_rows(rows_of_arrow(table), main_ref.rows(SQL))


@pytest.mark.requirement("UDN-FSQL-4")
def test_flight_info_schema_matches_the_data(main_node):
    client = _client(main_node)
    sql = "SELECT id, station, ts, day, value, level, ok FROM readings WHERE id < 100"
    info = _flight_info(client, sql)
    table = _read_all(client, info)
    assert table.num_rows == 100
    announced = [(f.name, f.type) for f in info.schema]
    delivered = [(f.name, f.type) for f in table.schema]
    assert announced == delivered, "GetFlightInfo announced a schema other than the one DoGet sent"


@pytest.mark.requirement("UDN-FSQL-4")
def test_an_empty_result_stream_carries_its_schema(main_node):
    """Read on the wire, below any client that would fall back on the FlightInfo's schema:
    every DoGet stream of an empty result starts with the result's schema."""
    client = _client(main_node)
    info = _flight_info(client, "SELECT id, station, value FROM readings WHERE id < 0")
    assert info.endpoints, "FlightInfo without endpoints"
    for endpoint in info.endpoints:
        try:
            reader = client.do_get(endpoint.ticket, OPTIONS)
            schema = reader.schema
        except (flight.FlightError, pa.ArrowInvalid) as err:
            raise AssertionError(f"the stream of an empty result has no schema: {err}") from err
        assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in info.schema]
        assert reader.read_all().num_rows == 0


@pytest.mark.requirement("UDN-FSQL-7")
def test_do_get_streams_many_batches(main_node, main_ref):
    client = _client(main_node)
    info = _flight_info(client, "SELECT id, value FROM readings")
    batches = rows = 0
    for ep in info.endpoints:
        reader = client.do_get(ep.ticket, OPTIONS)
        for chunk in reader:
            batches += 1
            rows += chunk.data.num_rows
    assert rows == main_ref.rows("SELECT count(*) FROM readings")[0][0]
    assert batches > 1, "250 000 rows arrived in one batch"


@pytest.mark.requirement("UDN-FSQL-7")
def test_rows_ready_together_travel_together(launcher, generated):
    """A cross join of a CSV table (no statistics to reorder it by) with a few constant rows can
    produce one tiny batch per row of the table; sent as they come, every row or two costs a
    message. Rows the plan has ready together are sent together."""
    node = launcher.node({"parts_glob": generated["parts_glob"]})
    client = _client(node)
    sql = "SELECT p.*, x.k FROM parts_glob p CROSS JOIN (VALUES (1), (2), (3)) x(k)"
    info = _flight_info(client, sql)
    messages = rows = 0
    for ep in info.endpoints:
        for chunk in client.do_get(ep.ticket, OPTIONS):
            messages += 1
            rows += chunk.data.num_rows
    assert rows == 2700
    assert messages <= rows / 50, f"{rows} rows arrived in {messages} messages"


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-7")
def test_large_result_streams_in_bounded_memory(launcher, main_tables, main_ref):
    """~700 MB of results (lineitem x nation) pass through a node that grows by far less."""
    tables = {"lineitem": main_tables["lineitem"], "nation": main_tables["nation"]}
    node = launcher.spawn([a for n, p in tables.items() for a in ("--table", f"{n}={p}")])
    try:
        client = _client(node)
        _read_all(client, _flight_info(client, "SELECT * FROM nation"))  # warm up
        base = rss(node.process.pid)
        if base is None:
            pytest.skip("cannot read the node's memory use (/proc/PID/status)")
        peak, stop = base, threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss(node.process.pid) or 0)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        batches = rows = nbytes = 0
        try:
            info = _flight_info(client, "SELECT * FROM lineitem CROSS JOIN nation")
            for ep in info.endpoints:
                for chunk in client.do_get(ep.ticket, OPTIONS):  # read and drop each batch
                    batches += 1
                    rows += chunk.data.num_rows
                    nbytes += chunk.data.nbytes
        finally:
            stop.set()
            sampler.join()
    finally:
        node.stop()
    expected = main_ref.rows("SELECT count(*) FROM lineitem CROSS JOIN nation")[0][0]
    assert rows == expected
    assert batches > 10, f"{rows} rows in {batches} batches"
    growth = peak - base
    assert growth < nbytes / 4, (
        f"node grew by {growth / 2**20:.0f} MiB to serve a {nbytes / 2**20:.0f} MiB result: "
        "it holds (a large part of) the result in memory"
    )


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-6")
def test_ticket_is_self_contained(launcher, main_tables):
    """A ticket from one node process is redeemable at a fresh process serving the same files."""
    tables = {"nation": main_tables["nation"], "lineitem": main_tables["lineitem"]}
    args = [a for name, path in tables.items() for a in ("--table", f"{name}={path}")]
    first = launcher.spawn(args)
    more = "SELECT l_orderkey, l_shipmode, l_linenumber FROM lineitem WHERE l_orderkey < 40"
    sql = f"{SQL} UNION ALL {more}"
    info = _flight_info(_client(first), sql)
    first.stop()  # the ticket must not depend on anything the first process remembers
    second = launcher.spawn(args)
    try:
        table = _read_all(_client(second), info)
    finally:
        second.stop()
    assert_same_rows(rows_of_arrow(table), Reference(tables).rows(sql))


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-5", "UDN-FSQL-6")
def test_prepared_statement_partition_is_self_contained(launcher, main_tables):
    """Same through ADBC: a partition of a prepared, parameterised query read on another node."""
    tables = {"orders": main_tables["orders"]}
    args = ["--table", f"orders={tables['orders']}"]
    sql = "SELECT o_orderkey, o_totalprice FROM orders WHERE o_custkey = ?"
    first = launcher.spawn(args)
    with first.connect() as conn, conn.cursor() as cur:
        partitions, _ = cur.adbc_execute_partitions(sql, parameters=(370,))
    first.stop()
    assert partitions, "no partitions"
    second = launcher.spawn(args)
    try:
        rows = []
        with second.connect() as conn:
            for partition in partitions:
                with conn.cursor() as cur:
                    cur.adbc_read_partition(partition)
                    rows += rows_of_arrow(cur.fetch_arrow_table())
    finally:
        second.stop()
    expected = Reference(tables).rows(sql, [370])
    assert expected, "pick a customer with orders"
    assert_same_rows(rows, expected)


GARBAGE_TICKETS = {
    "random_bytes": b"\x00\xffgarbage\x13\x37 not a ticket",
    "empty": b"",
    "unknown_any_type": proto.encode(
        [(1, "type.googleapis.com/no.such.Message"), (2, b"\x0a\x01x")]
    ),
    "statement_ticket_with_bad_handle": proto.pack_any(
        "TicketStatementQuery", proto.encode([(1, b"\x01\x02 definitely not a handle")])
    ),
}


@pytest.mark.parametrize("name", sorted(GARBAGE_TICKETS))
@pytest.mark.requirement("UDN-ERR-1", "UDN-ERR-2")
def test_garbage_ticket_is_a_clean_error(main_node, assert_healthy, name):
    client = _client(main_node)
    with pytest.raises((flight.FlightError, pa.ArrowException)) as err:
        client.do_get(flight.Ticket(GARBAGE_TICKETS[name]), OPTIONS).read_all()
    status = flight_grpc_status(err.value)
    assert status == "InvalidArgument", f"{status}: {err.value}"  # UDN-ERR-1: malformed ticket
    assert "panic" not in str(err.value).lower()
    assert_healthy()


@pytest.mark.requirement("UDN-ERR-1", "UDN-ERR-2")
def test_unknown_command_in_descriptor_is_a_clean_error(main_node, assert_healthy):
    client = _client(main_node)
    descriptor = flight.FlightDescriptor.for_command(
        proto.encode([(1, "type.googleapis.com/arrow.flight.protocol.sql.NoSuchCommand"), (2, b"")])
    )
    with pytest.raises((flight.FlightError, pa.ArrowException)) as err:
        client.get_flight_info(descriptor, OPTIONS)
    status = flight_grpc_status(err.value)
    # Not part of Flight SQL: UNIMPLEMENTED, or INVALID_ARGUMENT for a malformed request.
    assert status in ("InvalidArgument", "Unimplemented"), f"{status}: {err.value}"
    assert_healthy()


# Columns with few distinct values: every codec shrinks them many times over.
_COMPRESSIBLE = "SELECT l_shipmode, l_returnflag, l_linestatus, l_shipinstruct FROM lineitem"


class _CountingProxy:
    """A TCP proxy in front of the node that counts the bytes the node sends: what a client
    receives on the wire, compressed or not, whatever its Flight library decodes."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source, sink, count: bool):
        try:
            while data := source.recv(65536):
                if count:
                    with self.lock:
                        self.down += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def _wire_bytes(node, proxy: _CountingProxy, codec: str | None) -> tuple[pa.Table, int]:
    """Reads `_COMPRESSIBLE` through `proxy`, asking for `codec` with the `udn-ipc-compression`
    header on `DoGet`: the result and the bytes the node sent for it."""
    scheme = urlparse(node.flight_url).scheme
    if scheme in ("grpc+tls", "https"):
        client = flight.FlightClient(
            f"grpc+tls://127.0.0.1:{proxy.port}", disable_server_verification=True
        )
    else:
        client = flight.FlightClient(f"grpc://127.0.0.1:{proxy.port}")
    with client:
        info = _flight_info(client, _COMPRESSIBLE)
        headers = [(b"udn-ipc-compression", codec.encode())] if codec else []
        options = flight.FlightCallOptions(timeout=RPC_TIMEOUT_S, headers=headers)
        before = proxy.down
        table = pa.concat_tables(
            [client.do_get(ep.ticket, options).read_all() for ep in info.endpoints]
        )
        return table, proxy.down - before


@pytest.mark.requirement("UDN-FSQL-9")
def test_results_are_compressed_when_the_client_asks(main_node):
    """Asked for zstd or lz4, the node sends these very compressible columns in less than half
    the bytes it sends them in uncompressed, and they decode to the same rows."""
    url = urlparse(main_node.flight_url)
    proxy = _CountingProxy(url.hostname, url.port)
    try:
        plain, plain_bytes = _wire_bytes(main_node, proxy, None)
        assert plain.num_rows > 0
        for codec in ["zstd", "lz4"]:
            table, sent = _wire_bytes(main_node, proxy, codec)
            assert table.equals(plain), f"{codec}: other values than uncompressed"
            assert sent * 2 < plain_bytes, (
                f"asked for {codec}, the node sent {sent} bytes, uncompressed {plain_bytes}: "
                "not compressed"
            )
        table, sent = _wire_bytes(main_node, proxy, "none")
        assert table.equals(plain) and sent > plain_bytes // 2, "`none` must not compress"
    finally:
        proxy.close()


@pytest.mark.requirement("UDN-FSQL-9", "UDN-ERR-1")
def test_unknown_compression_is_refused_and_the_node_keeps_serving(main_node, main_ref):
    client = _client(main_node)
    info = _flight_info(client, SQL)
    options = flight.FlightCallOptions(
        timeout=RPC_TIMEOUT_S, headers=[(b"udn-ipc-compression", b"brotli")]
    )
    # pyarrow raises InvalidArgument as ArrowInvalid, not as a FlightError.
    with pytest.raises(pa.ArrowException) as err:
        client.do_get(info.endpoints[0].ticket, options).read_all()
    assert flight_grpc_status(err.value) == "InvalidArgument", str(err.value)
    assert "udn-ipc-compression" in str(err.value), str(err.value)
    assert_same_rows(rows_of_arrow(_read_all(client, info)), main_ref.rows(SQL))
