"""UDN-FSQL-8: explicit limits, stated to clients and enforced with the status codes of UDN-ERR-1.

Flight SQL's `GetSqlInfo` carries two of them (FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT and
SQL_MAX_STATEMENT_LENGTH); those are checked against any node. The others (message sizes,
concurrent queries, memory, parameter rows) are set in Polder's configuration file, so those
tests start nodes of their own with small limits (spawn mode only).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from udn_conformance import flightsql as fs
from udn_conformance.compare import assert_same_rows, rows_of_arrow
from udn_conformance.errors import flight_grpc_status
from udn_conformance.node import rss, with_catalog
from udn_conformance.reference import Reference

FLIGHT_ERRORS = (flight.FlightError, pa.ArrowException)

LIMITS = {
    "query_timeout_s": 60,
    "max_concurrent_queries": 1,
    "queue_timeout_ms": 500,
    "memory_limit_mib": 8,
    "max_parameter_rows": 3,
    "max_query_bytes": 4096,
}
MESSAGE_LIMITS = {"max_message_bytes": 1024 * 1024, "max_flight_data_bytes": 256 * 1024}

# 1.5 million rows, about 700 MB as Arrow: a result far larger than any limit below.
BIG = "SELECT * FROM lineitem CROSS JOIN nation"
# Billions of row combinations that no engine answers within a second, in standard SQL.
SLOW = (
    "SELECT count(*) AS n FROM lineitem a CROSS JOIN lineitem b CROSS JOIN nation c "
    "WHERE a.l_orderkey + b.l_orderkey + c.n_nationkey < 0"
)
QUICK = "SELECT n_regionkey, count(*) AS n FROM nation GROUP BY n_regionkey"


def _config(path: Path, **limits) -> Path:
    lines = ["[limits]"]
    for key, value in limits.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    path.write_text(with_catalog("\n".join(lines) + "\n"))
    return path


def _spawn(launcher, main_tables, tmp_path: Path, name: str, **limits):
    tables = {"lineitem": main_tables["lineitem"], "nation": main_tables["nation"]}
    config = _config(tmp_path / f"{name}.toml", **limits)
    args = ["--config", str(config)]
    for table, location in tables.items():
        args += ["--table", f"{table}={location}"]
    return launcher.spawn(args), Reference(tables)


def _status_of(call) -> tuple[str, float, str]:
    """Run `call`; the gRPC status it ended with ('OK' if none), seconds taken, message."""
    started = time.monotonic()
    try:
        call()
        return "OK", time.monotonic() - started, ""
    except FLIGHT_ERRORS as e:
        return flight_grpc_status(e), time.monotonic() - started, str(e)




class _PeakRss:
    """Samples a node's resident memory every 20 ms while a block runs."""

    def __init__(self, node):
        self.node = node
        self.base = rss(node.process.pid)
        self.peak = self.base or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.node.process.pid) or 0)
            time.sleep(0.02)

    def __enter__(self):
        if self.base is None:
            pytest.skip("cannot read the node's memory use (/proc/PID/status)")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


# --- stated in GetSqlInfo: any node --------------------------------------------------------


@pytest.fixture(scope="module")
def main_client(main_node):
    c = fs.client(main_node)
    yield c
    c.close()


@pytest.mark.requirement("UDN-FSQL-8")
def test_sql_info_states_query_time_and_length_limits(main_client):
    info = fs.sql_info(main_client, [fs.SERVER_STATEMENT_TIMEOUT, fs.SQL_MAX_STATEMENT_LENGTH])
    timeout = info.get(fs.SERVER_STATEMENT_TIMEOUT)
    length = info.get(fs.SQL_MAX_STATEMENT_LENGTH)
    assert isinstance(timeout, int) and timeout > 0, (
        f"FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT must state the query time limit (ms > 0): {info}"
    )
    assert isinstance(length, int) and length > 0, (
        f"SQL_MAX_STATEMENT_LENGTH must state the longest SQL text accepted: {info}"
    )


def _padded(sql: str, length: int) -> str:
    """`sql` followed by a comment, exactly `length` bytes of UTF-8."""
    filler = length - len(sql.encode()) - len(" /**/")
    assert filler >= 0
    return f"{sql} /*{'x' * filler}*/"


@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1", "UDN-ERR-2")
def test_statement_length_limit_is_the_stated_one(main_client, main_ref, assert_healthy):
    """A query of exactly the stated length is answered; one byte more is INVALID_ARGUMENT."""
    info = fs.sql_info(main_client, [fs.SQL_MAX_STATEMENT_LENGTH])
    stated = info.get(fs.SQL_MAX_STATEMENT_LENGTH)
    if not isinstance(stated, int) or stated <= 0:
        pytest.fail(f"SQL_MAX_STATEMENT_LENGTH not stated: {stated!r}", pytrace=False)
    if stated > 8 * 1024 * 1024:
        pytest.skip(f"stated length {stated} is beyond what this test sends (8 MiB)")
    sql = "SELECT count(*) AS n FROM nation"
    at_limit = _padded(sql, stated)
    assert len(at_limit.encode()) == stated
    _, table = fs.statement(main_client, at_limit)
    assert_same_rows(rows_of_arrow(table), main_ref.rows(sql), context="query at the limit")
    status, _, message = _status_of(lambda: fs.statement(main_client, _padded(sql, stated + 1)))
    assert status == "InvalidArgument", f"{status}: {message[:500]}"
    assert len(message) < 10_000, "the error echoes the query back"
    assert_healthy()


def _deep_statements(stated: int) -> list[tuple[str, str, int]]:
    """(name, SQL, answer) of statements that parse into trees thousands of levels deep."""

    def chain(n: int, op: str, term: str = "1") -> str:
        return op.join([term] * n)

    def longest(prefix: str, piece: str, suffix: str = "") -> tuple[str, int]:
        n = (min(stated, 256 * 1024) - len(prefix) - len(suffix) - 8) // len(piece)
        return prefix + "1" + piece * n + suffix, n + 1

    parens = "(" * 1000 + "1" + ")" * 1000
    text = "'a'"
    plus_longest, plus_n = longest("SELECT ", "+1", " AS x")
    or_longest, _ = longest("SELECT count(*) AS x FROM nation WHERE n_nationkey = ", " OR n_nationkey = 1")
    return [
        ("1+1+... (1,900 terms)", f"SELECT {chain(1900, '+')} AS x", 1900),
        ("OR chain", f"SELECT count(*) AS x FROM nation WHERE {chain(3000, ' OR ', 'n_nationkey >= 0')}", 25),
        ("AND chain", f"SELECT count(*) AS x FROM nation WHERE {chain(3000, ' AND ', 'n_nationkey >= 0')}", 25),
        ("|| chain", f"SELECT length({chain(3000, ' || ', text)}) AS x", 3000),
        ("UNION ALL chain", f"SELECT count(*) AS x FROM ({chain(2000, ' UNION ALL ', 'SELECT 1 AS y')}) t", 2000),
        ("1,000 nested parentheses", f"SELECT {parens} AS x", 1),
        ("longest + chain", plus_longest, plus_n),
        ("longest OR chain", or_longest, 1),
    ]  # fmt: skip


@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1", "UDN-ERR-2")
def test_deeply_nested_statements_are_answered_or_refused(main_client, assert_healthy):
    """Operator chains, set-operation chains and nesting within the length limit build trees
    thousands of levels deep. Each is answered correctly or refused with INVALID_ARGUMENT, and
    the node keeps serving: none may take the process down (a stack overflow aborts it)."""
    info = fs.sql_info(main_client, [fs.SQL_MAX_STATEMENT_LENGTH])
    stated = info.get(fs.SQL_MAX_STATEMENT_LENGTH)
    if not isinstance(stated, int) or stated <= 0:
        pytest.fail(f"SQL_MAX_STATEMENT_LENGTH not stated: {stated!r}", pytrace=False)
    for name, sql, answer in _deep_statements(stated):
        if len(sql.encode()) > stated:
            continue
        outcome = {}

        def run(sql=sql, outcome=outcome):
            _, table = fs.statement(main_client, sql)
            outcome["x"] = table.column(0)[0].as_py()

        status, _, message = _status_of(run)
        assert status in ("OK", "InvalidArgument"), f"{name}: {status}: {message[:500]}"
        if status == "OK":
            assert outcome["x"] == answer, f"{name}: answered {outcome['x']}, not {answer}"
        else:
            assert len(message) < 10_000, f"{name}: the error echoes the query back"
        assert_healthy()


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1")
def test_configured_depth_limit_is_enforced_and_named(launcher, main_tables, tmp_path):
    """`limits.max_query_depth`: a statement within it is answered, one level more is refused
    with INVALID_ARGUMENT naming the limit."""
    node, _ = _spawn(launcher, main_tables, tmp_path, "depth", max_query_depth=64)
    with fs.client(node) as client:
        # `1+...+1` of n terms nests n levels of operators under the SELECT item.
        _, table = fs.statement(client, "SELECT " + "+".join(["1"] * 60) + " AS x")
        assert table.column(0)[0].as_py() == 60
        status, _, message = _status_of(
            lambda: fs.statement(client, "SELECT " + "+".join(["1"] * 70) + " AS x")
        )
        assert status == "InvalidArgument", f"{status}: {message[:500]}"
        assert "max_query_depth" in message and "64" in message, message[:500]
        _, table = fs.statement(client, QUICK)
        assert table.num_rows == 5


# --- enforced: nodes with small configured limits (Polder configuration) ---------------------


@pytest.fixture(scope="module")
def limits_node(launcher, main_tables, tmp_path_factory):
    node, ref = _spawn(
        launcher,
        main_tables,
        tmp_path_factory.mktemp("limits"),
        "limits",
        query_timeout=f"{LIMITS['query_timeout_s']}s",
        max_concurrent_queries=LIMITS["max_concurrent_queries"],
        queue_timeout=f"{LIMITS['queue_timeout_ms']}ms",
        memory_limit_mib=LIMITS["memory_limit_mib"],
        max_parameter_rows=LIMITS["max_parameter_rows"],
        max_query_bytes=LIMITS["max_query_bytes"],
    )
    yield node, ref
    node.stop()


def _answers(node, ref, timeout: float = 30) -> None:
    """The node answers a small query correctly (retrying while a freed slot is released)."""
    c = fs.client(node)
    deadline = time.monotonic() + timeout
    while True:
        status, _, message = _status_of(lambda: fs.statement(c, QUICK))
        if status == "OK" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == "OK", f"node no longer answers: {status}: {message[:500]}"
    _, table = fs.statement(c, QUICK)
    assert_same_rows(rows_of_arrow(table), ref.rows(QUICK))
    c.close()


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8")
def test_stated_limits_are_the_configured_ones(limits_node):
    node, _ = limits_node
    info = fs.sql_info(fs.client(node), [fs.SERVER_STATEMENT_TIMEOUT, fs.SQL_MAX_STATEMENT_LENGTH])
    assert info.get(fs.SERVER_STATEMENT_TIMEOUT) == LIMITS["query_timeout_s"] * 1000, info
    assert info.get(fs.SQL_MAX_STATEMENT_LENGTH) == LIMITS["max_query_bytes"], info


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1", "UDN-ERR-2")
def test_concurrent_query_limit_gives_resource_exhausted(limits_node):
    """With one query slot held by an open result stream, another query is refused."""
    node, ref = limits_node
    holder = fs.client(node)
    info = holder.get_flight_info(fs.descriptor_for_statement(BIG), fs.OPTIONS)
    reader = holder.do_get(info.endpoints[0].ticket, fs.OPTIONS)
    try:
        reader.read_chunk()  # the query runs, and holds its slot while the stream is open
        other = fs.client(node)
        status, seconds, message = _status_of(lambda: fs.statement(other, QUICK))
        assert status == "ResourceExhausted", f"{status} after {seconds:.1f}s: {message[:500]}"
        assert seconds < LIMITS["queue_timeout_ms"] / 1000 + 10, f"refused after {seconds:.1f}s"
    finally:
        reader.cancel()
        holder.close()
    _answers(node, ref)


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8", "UDN-FSQL-5", "UDN-ERR-1", "UDN-ERR-2")
def test_parameter_rows_limit_gives_resource_exhausted(limits_node):
    node, ref = limits_node
    c = fs.client(node)
    sql = "SELECT n_name FROM nation WHERE n_nationkey = ?"
    prepared = fs.Prepared(c, sql)
    field = prepared.parameter_schema.field(0)
    type_ = pa.int64() if pa.types.is_null(field.type) else field.type
    most = LIMITS["max_parameter_rows"]

    def bind_and_run(keys: list[int]) -> pa.Table:
        batch = pa.record_batch([pa.array(keys, type_)], names=[field.name])
        handle = prepared.bind(batch)
        return prepared.execute(handle)[1]

    keys = list(range(1, most + 1))
    table = bind_and_run(keys)  # at the limit: one execution per row
    assert_same_rows(rows_of_arrow(table), [r for k in keys for r in ref.rows(sql, [k])])
    status, _, message = _status_of(lambda: bind_and_run(list(range(1, most + 2))))
    assert status == "ResourceExhausted", f"{most + 1} parameter rows: {status}: {message[:500]}"
    _answers(node, ref)


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1", "UDN-ERR-2")
def test_memory_limit_holds(limits_node):
    """Sorting ~700 MB under an 8 MiB limit: spill and answer, or RESOURCE_EXHAUSTED; the node
    does not grow by anything like the size of the data."""
    node, ref = limits_node
    c = fs.client(node)
    sql = f"{BIG} ORDER BY l_comment, n_name"
    rows = 0
    with _PeakRss(node) as memory:

        def run():
            nonlocal rows
            rows = fs.count_rows(c, sql)

        status, _, message = _status_of(run)
    assert status in ("OK", "ResourceExhausted"), f"{status}: {message[:500]}"
    if status == "OK":
        assert rows == ref.rows(f"SELECT count(*) FROM ({BIG}) AS t")[0][0]
    limit = LIMITS["memory_limit_mib"] * 1024 * 1024
    assert memory.growth < limit + 200 * 1024 * 1024, (
        f"node grew by {memory.growth / 2**20:.0f} MiB "
        f"under a {LIMITS['memory_limit_mib']} MiB limit"
    )
    _answers(node, ref)


# Joins without an equality condition (nested loop joins) whose sides both exceed the memory
# limit (1.5 million rows each), so that whichever side the planner builds does not fit.
_WIDE = "(SELECT l_orderkey AS k, l_comment AS c FROM lineitem CROSS JOIN nation)"
NESTED_LOOP_JOINS = [
    f"SELECT count(*) FROM {_WIDE} a JOIN {_WIDE} b ON a.k > b.k + 6000000 AND a.c < b.c",
    # An outer join: spilling its build side used to lose unmatched rows without an error.
    f"SELECT count(*) FROM {_WIDE} a LEFT JOIN {_WIDE} b ON a.k > b.k + 6000000 AND a.c < b.c",
]


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1", "UDN-ERR-2")
@pytest.mark.parametrize("sql", NESTED_LOOP_JOINS, ids=["inner", "left"])
def test_joins_over_the_memory_limit_answer_exactly_or_refuse(limits_node, sql):
    """A join whose build side exceeds the memory limit is refused with RESOURCE_EXHAUSTED (or
    answered exactly), never answered short and never an INTERNAL error."""
    node, ref = limits_node
    c = fs.client(node)
    table = None

    def run():
        nonlocal table
        _, table = fs.statement(c, sql)

    status, _, message = _status_of(run)
    assert status in ("OK", "ResourceExhausted"), f"{status}: {message[:500]}"
    if status == "OK":
        assert_same_rows(rows_of_arrow(table), ref.rows(sql), ordered=False)
    else:
        assert "memory" in message.lower(), message[:500]
    _answers(node, ref)


# Scalar functions whose output size the query controls: each is refused with RESOURCE_EXHAUSTED
# under the 8 MiB limit, whether one value is huge or a batch of rows adds up.
GROWING = [
    "SELECT length(repeat('x', 1500000000))",
    "SELECT length(lpad('x', 1500000000))",
    "SELECT length(rpad('x', 1500000000, 'ab'))",
    "SELECT cardinality(range(1, 300000000))",
    "SELECT cardinality(generate_series(1, 300000000))",
    "SELECT cardinality(array_repeat(1, 300000000))",
    "SELECT cardinality(array_resize([1], 300000000, 0))",
    "SELECT length(replace(repeat('x', 100000), 'x', repeat('y', 10000)))",
    "SELECT length(regexp_replace(repeat('x', 100000), 'x', repeat('y', 10000), 'g'))",
    "SELECT length(repeat(repeat('x', 40000), 40000))",
    "SELECT length(repeat('x', 100000000)) FROM generate_series(1, 100)",
    "SELECT length(repeat('x', 100000)) FROM generate_series(1, 1000)",
    # A string doubled by `||` in each of a chain of subqueries.
    "SELECT length(s || s) FROM (SELECT s || s AS s FROM (SELECT s || s AS s FROM "
    "(SELECT repeat('x', 1000000) AS s) a) b) c",
]


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1", "UDN-ERR-2")
@pytest.mark.parametrize("sql", GROWING)
def test_memory_limit_bounds_scalar_functions(limits_node, sql):
    """A function asked for gigabytes is refused before it allocates them: RESOURCE_EXHAUSTED
    naming it, and the node grows by no more than the limit and the margin of the sort test."""
    node, ref = limits_node
    c = fs.client(node)
    with _PeakRss(node) as memory:
        status, _, message = _status_of(lambda: fs.statement(c, sql))
    c.close()
    assert status == "ResourceExhausted", f"{status}: {message[:500]}"
    name = "||" if "s || s" in sql else sql.split("(")[1].split(" ")[-1]
    assert name in message, f"the refusal does not name {name}: {message[:500]}"
    limit = LIMITS["memory_limit_mib"] * 1024 * 1024
    assert memory.growth < limit + 200 * 1024 * 1024, (
        f"node grew by {memory.growth / 2**20:.0f} MiB "
        f"under a {LIMITS['memory_limit_mib']} MiB limit"
    )
    _answers(node, ref)


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8")
def test_memory_limit_leaves_small_function_calls_alone(limits_node):
    node, _ = limits_node
    c = fs.client(node)
    sql = (
        "SELECT length(repeat('x', 100000)) AS a, lpad('7', 3, '0') AS b, "
        "cardinality(range(1, 1001)) AS c, array_repeat(2, 3) AS d, "
        "sum(length(repeat('ab', 100))) OVER () AS e FROM generate_series(1, 2)"
    )
    _, table = fs.statement(c, sql)
    c.close()
    rows = table.to_pylist()
    assert len(rows) == 2
    assert rows[0]["a"] == 100000 and rows[0]["b"] == "007" and rows[0]["c"] == 1000
    assert list(rows[0]["d"]) == [2, 2, 2] and rows[0]["e"] == 400


@pytest.fixture(scope="module")
def message_node(launcher, main_tables, tmp_path_factory):
    node, ref = _spawn(
        launcher, main_tables, tmp_path_factory.mktemp("messages"), "messages", **MESSAGE_LIMITS
    )
    yield node, ref
    node.stop()


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-7", "UDN-FSQL-8")
def test_ordinary_results_fit_the_message_limit(message_node):
    """Rows of a few hundred bytes each: the node must cut the result into messages that fit."""
    node, ref = message_node
    c = fs.client(node)
    for sql in [BIG, "SELECT l_comment, l_shipinstruct FROM lineitem"]:
        rows = 0

        def run():
            nonlocal rows
            rows = fs.count_rows(c, sql)

        status, _, message = _status_of(run)
        assert status == "OK", f"{sql}: {status}: {message[:400]}"
        assert rows == ref.rows(f"SELECT count(*) FROM ({sql}) AS t")[0][0], sql


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1")
def test_request_over_the_message_limit_is_refused(message_node):
    node, ref = message_node
    sql = _padded("SELECT count(*) AS n FROM nation", 2 * MESSAGE_LIMITS["max_message_bytes"])
    status, _, message = _status_of(lambda: fs.statement(fs.client(node), sql))
    _answers(node, ref)
    assert status in ("InvalidArgument", "ResourceExhausted"), f"{status}: {message[:500]}"


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1")
def test_result_over_the_message_limit_is_refused(message_node):
    """A value that fits a message is sent; one twice the message limit cannot be."""
    node, ref = message_node
    c = fs.client(node)
    half = MESSAGE_LIMITS["max_message_bytes"] // 2
    _, table = fs.statement(c, f"SELECT length(repeat('x', {half})) AS n, repeat('x', {half}) AS s")
    assert table.column("n").to_pylist() == [half]
    too_big = 2 * MESSAGE_LIMITS["max_message_bytes"]
    status, _, message = _status_of(lambda: fs.statement(c, f"SELECT repeat('x', {too_big}) AS s"))
    _answers(node, ref)
    assert status in ("ResourceExhausted", "InvalidArgument"), f"{status}: {message[:500]}"


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1")
def test_query_past_its_time_limit_ends_with_deadline_exceeded(launcher, main_tables, tmp_path):
    node, _ = _spawn(launcher, main_tables, tmp_path, "timeout", query_timeout="1s")
    try:
        c = fs.client(node)
        stated = fs.sql_info(c, [fs.SERVER_STATEMENT_TIMEOUT])[fs.SERVER_STATEMENT_TIMEOUT]
        assert stated == 1000, f"stated statement timeout {stated} ms, configured 1 s"
        status, seconds, message = _status_of(lambda: fs.statement(c, SLOW))
        assert status == "DeadlineExceeded", f"{status} after {seconds:.1f}s: {message[:500]}"
        assert 0.9 <= seconds < 6, f"ended after {seconds:.1f}s with a 1 s limit"
    finally:
        node.process.kill()  # whatever the query left running
        node.process.wait()


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-ERR-2", "UDN-FSQL-8")
def test_node_keeps_answering_after_queries_time_out(launcher, main_tables, tmp_path):
    """One CPU-heavy query per core (and one more) all run past their limit at once."""
    node, ref = _spawn(
        launcher, main_tables, tmp_path, "busy", query_timeout="1s", max_concurrent_queries=64
    )
    try:
        options = flight.FlightCallOptions(timeout=6)
        results: list[tuple[str, float, str]] = []

        def slow():
            c = fs.client(node)
            results.append(_status_of(lambda: fs.statement(c, SLOW, options)))

        threads = [threading.Thread(target=slow) for _ in range((os.cpu_count() or 2) + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        c = fs.client(node)
        status, seconds, message = _status_of(
            lambda: fs.statement(c, QUICK, flight.FlightCallOptions(timeout=5))
        )
        assert status == "OK", (
            f"after {len(threads)} queries ran past their time limit the node does not answer "
            f"({status} after {seconds:.1f}s: {message[:300]})"
        )
        _, table = fs.statement(c, QUICK)
        assert_same_rows(rows_of_arrow(table), ref.rows(QUICK))
        for status, seconds, message in results:
            assert status == "DeadlineExceeded" and seconds < 5, (
                f"{status} after {seconds:.1f}s: {message[:300]}"
            )
    finally:
        node.process.kill()
        node.process.wait()
