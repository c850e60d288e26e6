"""Queries through ADBC: answers agree with DuckDB, prepared statements, empty and large results."""

from __future__ import annotations

import datetime as dt
import decimal
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from adbc_driver_manager import AdbcStatement

from udn_conformance.client import query, query_rows
from udn_conformance.compare import assert_same_rows, rows_of_arrow, type_family

QUERIES = {
    "group_by_station": """
        SELECT station, count(*) AS n, count(value) AS n_value, avg(value) AS avg_value,
               min(value) AS min_value, max(value) AS max_value, sum(level) AS sum_level
        FROM readings GROUP BY station""",
    "filter_and_bool": """
        SELECT ok, count(*) AS n, sum(value) AS s FROM readings
        WHERE value IS NOT NULL AND level BETWEEN 10 AND 20 GROUP BY ok""",
    "dates_and_timestamps": """
        SELECT day, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS n FROM readings
        WHERE day < DATE '2024-01-10' GROUP BY day""",
    "null_values": "SELECT id, value FROM readings WHERE value IS NULL AND id < 20000",
    "join_and_order": """
        SELECT r.r_name, n.n_name FROM nation n JOIN region r ON n.n_regionkey = r.r_regionkey
        ORDER BY r.r_name, n.n_name""",
    "window_function": """
        SELECT station, id, value, rank() OVER (PARTITION BY station ORDER BY value DESC, id) AS rk
        FROM readings WHERE id < 4000 AND value IS NOT NULL""",
    "case_and_strings": """
        SELECT upper(station) AS s, CASE WHEN level > 25 THEN 'high' ELSE 'low' END AS band,
               count(*) AS n
        FROM readings GROUP BY upper(station), CASE WHEN level > 25 THEN 'high' ELSE 'low' END""",
    "decimal_arithmetic": """
        SELECT l_returnflag, sum(l_extendedprice * (1 - l_discount)) AS revenue,
               avg(l_quantity) AS avg_qty
        FROM lineitem GROUP BY l_returnflag""",
    "distinct_and_having": """
        SELECT o_orderpriority, count(DISTINCT o_custkey) AS customers FROM orders
        GROUP BY o_orderpriority HAVING count(*) > 100""",
    "subquery_in": """
        SELECT c_mktsegment, count(*) AS n FROM customer
        WHERE c_nationkey IN (SELECT n_nationkey FROM nation WHERE n_regionkey = 2)
        GROUP BY c_mktsegment""",
    "select_constant": "SELECT 1 AS one, 'two' AS two, 3.5 AS three",
}


@pytest.mark.parametrize("name", sorted(QUERIES))
@pytest.mark.requirement("UDN-FSQL-1")
def test_query_answer_matches_duckdb(main_conn, main_ref, name):
    sql = QUERIES[name]
    table = query(main_conn, sql)
    assert table.column_names == main_ref.columns(sql)
    assert_same_rows(rows_of_arrow(table), main_ref.rows(sql), context=name)


@pytest.mark.requirement("UDN-FSQL-1")
def test_order_by_is_honoured(main_conn, main_ref):
    sql = (
        "SELECT id, value FROM readings WHERE value IS NOT NULL AND id < 30000 "
        "ORDER BY value DESC, id LIMIT 500"
    )
    assert_same_rows(query_rows(main_conn, sql), main_ref.rows(sql), ordered=True)


@pytest.mark.requirement("UDN-FSQL-1")
def test_all_column_types_round_trip(main_conn, main_ref, main_tables):
    sql = "SELECT * FROM readings WHERE id < 3000"
    table = query(main_conn, sql)
    expected_schema = pq.read_schema(main_tables["readings"])
    assert table.column_names == expected_schema.names
    for field in expected_schema:
        assert type_family(table.schema.field(field.name).type) == type_family(field.type), (
            field.name
        )
    assert_same_rows(rows_of_arrow(table), main_ref.rows(sql))


@pytest.mark.requirement("UDN-FSQL-4")
def test_plain_statement_without_prepare(main_conn, main_ref):
    """ADBC's low-level statement sends CommandStatementQuery (DB-API always prepares)."""
    sql = "SELECT station, count(*) AS n FROM readings GROUP BY station"
    stmt = AdbcStatement(main_conn.adbc_connection)
    try:
        stmt.set_sql_query(sql)
        handle, _ = stmt.execute_query()
        table = pa.RecordBatchReader._import_from_c(handle.address).read_all()
    finally:
        stmt.close()
    assert_same_rows(rows_of_arrow(table), main_ref.rows(sql))


PARAM_SQL = "SELECT count(*) AS n, sum(l_extendedprice) AS total FROM lineitem WHERE l_quantity > ?"


@pytest.mark.requirement("UDN-FSQL-5")
def test_prepared_statement_with_parameter(main_conn, main_ref):
    with main_conn.cursor() as cur:
        cur.execute(PARAM_SQL, parameters=(5,))
        got = rows_of_arrow(cur.fetch_arrow_table())
    assert_same_rows(got, main_ref.rows(PARAM_SQL, [5]))


@pytest.mark.requirement("UDN-FSQL-5")
def test_prepared_statement_reexecuted_with_new_parameters(main_conn, main_ref):
    """Same cursor, same SQL: ADBC reuses one prepared statement and rebinds each time."""
    answers = {}
    with main_conn.cursor() as cur:
        for value in [5, 45, 5, 25, 0, 49]:
            cur.execute(PARAM_SQL, parameters=(value,))
            got = rows_of_arrow(cur.fetch_arrow_table())
            assert_same_rows(
                got, main_ref.rows(PARAM_SQL, [value]), context=f"l_quantity > {value}"
            )
            answers[value] = got
    assert len({tuple(v) for v in answers.values()}) == len(answers), "parameters were ignored"


@pytest.mark.requirement("UDN-FSQL-5")
def test_prepared_statement_with_several_typed_parameters(main_conn, main_ref):
    sql = """
        SELECT count(*) AS n, sum(value) AS s FROM readings
        WHERE station = ? AND level >= ? AND value < ? AND day >= ?"""
    with main_conn.cursor() as cur:
        for params in [
            ("utr-01", 10, 50.5, dt.date(2024, 1, 10)),
            ("ams-02", 40, 99.0, dt.date(2024, 2, 1)),
        ]:
            cur.execute(sql, parameters=params)
            got = rows_of_arrow(cur.fetch_arrow_table())
            assert_same_rows(got, main_ref.rows(sql, list(params)), context=str(params))


@pytest.mark.requirement("UDN-FSQL-5")
def test_prepared_statement_returning_rows_per_parameter(main_conn, main_ref):
    sql = "SELECT n_name FROM nation WHERE n_regionkey = ? ORDER BY n_name"
    with main_conn.cursor() as cur:
        for region in range(5):
            cur.execute(sql, parameters=(region,))
            got = rows_of_arrow(cur.fetch_arrow_table())
            assert_same_rows(
                got, main_ref.rows(sql, [region]), ordered=True, context=f"region {region}"
            )


@pytest.mark.requirement("UDN-FSQL-5")
def test_prepared_statement_on_separate_cursors(main_conn, main_ref):
    sql = "SELECT count(*) AS n FROM orders WHERE o_orderdate < ?"
    dates = [dt.date(1993, 1, 1), dt.date(1996, 6, 30)]
    cursors = [main_conn.cursor() for _ in dates]
    try:
        for cur, d in zip(cursors, dates):
            cur.execute(sql, parameters=(d,))
        for cur, d in zip(cursors, dates):
            assert_same_rows(
                rows_of_arrow(cur.fetch_arrow_table()), main_ref.rows(sql, [d]), context=str(d)
            )
    finally:
        for cur in cursors:
            cur.close()


@pytest.mark.requirement("UDN-FSQL-4")
def test_empty_result_keeps_the_real_schema(main_conn, main_tables):
    sql = "SELECT l_orderkey, l_quantity, l_shipdate, l_comment FROM lineitem WHERE l_orderkey < 0"
    empty = query(main_conn, sql)
    assert empty.num_rows == 0
    full = query(main_conn, sql.replace("l_orderkey < 0", "l_orderkey < 5"))
    assert full.num_rows > 0
    assert empty.schema.names == ["l_orderkey", "l_quantity", "l_shipdate", "l_comment"]
    assert [f.type for f in empty.schema] == [f.type for f in full.schema]
    expected = pq.read_schema(main_tables["lineitem"])
    for field in empty.schema:
        assert type_family(field.type) == type_family(expected.field(field.name).type), field.name


@pytest.mark.requirement("UDN-DATA-1")
@pytest.mark.parametrize("explain", ["EXPLAIN", "EXPLAIN VERBOSE", "EXPLAIN ANALYZE"])
def test_plans_do_not_reveal_where_data_is_stored(main_conn, main_tables, explain):
    """A plan names tables, never the server's paths to their files."""
    table = query(main_conn, f"{explain} SELECT count(*) FROM lineitem WHERE l_quantity > 10")
    text = "\n".join(str(v) for column in table.columns for v in column.to_pylist())
    assert "lineitem" in text.lower() or "l_quantity" in text, text[:2000]
    location = main_tables["lineitem"].resolve()
    for revealing in {str(location.parent).lstrip("/"), location.name}:
        assert revealing not in text, f"{explain} shows {revealing!r}:\n{text[:2000]}"


@pytest.mark.requirement("UDN-FSQL-5")
def test_empty_result_of_prepared_statement_keeps_schema(main_conn):
    sql = "SELECT id, station, ts, value, ok FROM readings WHERE level > ?"
    with main_conn.cursor() as cur:
        cur.execute(sql, parameters=(1000,))
        empty = cur.fetch_arrow_table()
        cur.execute(sql, parameters=(25,))
        full = cur.fetch_arrow_table()
    assert empty.num_rows == 0 and full.num_rows > 0
    assert empty.schema.names == ["id", "station", "ts", "value", "ok"]
    assert [type_family(f.type) for f in empty.schema] == [type_family(f.type) for f in full.schema]


@pytest.mark.requirement("UDN-FSQL-1")
def test_empty_aggregate_gives_one_row(main_conn, main_ref):
    sql = "SELECT count(*) AS n, sum(value) AS s FROM readings WHERE id < 0"
    assert_same_rows(query_rows(main_conn, sql), main_ref.rows(sql))


@pytest.mark.requirement("UDN-FSQL-7")
def test_large_result_streams_in_many_batches(main_conn, main_ref):
    sql = "SELECT * FROM readings"
    with main_conn.cursor() as cur:
        cur.execute(sql)
        reader = cur.fetch_record_batch()
        batches = 0
        rows = 0
        id_sum = 0
        for batch in reader:
            batches += 1
            rows += batch.num_rows
            id_sum += pc.sum(batch.column("id")).as_py() or 0
    expected_rows, expected_sum = main_ref.rows("SELECT count(*), sum(id) FROM readings")[0]
    assert rows == expected_rows
    assert id_sum == expected_sum
    assert batches > 1, "a 250 000-row answer arrived as one batch: the node does not stream"


@pytest.mark.requirement("UDN-FSQL-1")
def test_concurrent_connections(main_node, main_ref):
    sqls = [
        QUERIES["group_by_station"],
        QUERIES["decimal_arithmetic"],
        PARAM_SQL.replace("?", "10"),
    ] * 2
    errors: list[BaseException] = []

    def run(sql: str):
        try:
            with main_node.connect() as conn:
                assert_same_rows(query_rows(conn, sql), main_ref.rows(sql))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in sqls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a concurrent query did not finish"
    assert not errors, errors[0]


@pytest.mark.requirement("UDN-FSQL-5")
@pytest.mark.parametrize(
    "value",
    [
        42, 2.5, "Utrecht", True, b"\x00\x01", dt.date(2026, 12, 6),
        dt.datetime(2026, 12, 6, 14, 30, 5), decimal.Decimal("12.345"), -7,
    ],
    ids=["int", "float", "string", "bool", "bytes", "date", "datetime", "decimal", "negative"],
)
def test_a_parameter_alone_takes_the_type_of_its_value(main_conn, value):
    """`SELECT ? AS x`: nothing but the bound value gives the parameter a type; the answer is the
    value, of its type, never an error or a NULL of type null."""
    table = query(main_conn, "SELECT ? AS x", (value,))
    assert table.num_rows == 1
    assert table.schema.field("x").type != pa.null(), table.schema
    assert table.column("x")[0].as_py() == value, table
