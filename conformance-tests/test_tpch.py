"""TPC-H SF 0.01: all 22 queries answered by the node agree with DuckDB over the same files."""

from __future__ import annotations

from pathlib import Path

import pytest

from udn_conformance.client import query
from udn_conformance.compare import assert_same_rows, rows_of_arrow

QUERY_DIR = Path(__file__).parent / "tpch" / "queries"
QUERIES = sorted(QUERY_DIR.glob("q*.sql"))


@pytest.mark.beyond_spec("suite self-check: the query files are all there")
def test_all_22_queries_are_present():
    assert [q.stem for q in QUERIES] == [f"q{i:02d}" for i in range(1, 23)]


@pytest.mark.parametrize("path", QUERIES, ids=[q.stem for q in QUERIES])
@pytest.mark.requirement("UDN-FSQL-1")
def test_tpch_query_matches_duckdb(main_conn, main_ref, path):
    sql = path.read_text()
    expected = main_ref.rows(sql)
    table = query(main_conn, sql)
    assert table.column_names == main_ref.columns(sql), f"{path.stem} column names"
    # Ordered queries with LIMIT break no ties at SF 0.01, so sorting both sides is safe.
    assert_same_rows(rows_of_arrow(table), expected, context=path.stem)
