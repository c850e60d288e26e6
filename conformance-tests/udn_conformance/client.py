"""Small helpers over ADBC's DB-API for the tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import adbc_driver_manager
import pyarrow as pa

from .compare import rows_of_arrow
from .errors import adbc_grpc_status


def query(conn, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
    """Run `sql` (prepared, as DB-API does) and read the whole answer."""
    with conn.cursor() as cur:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, parameters=params)
        return cur.fetch_arrow_table()


def query_rows(conn, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
    return rows_of_arrow(query(conn, sql, params))


def expect_error(conn, sql: str, params: Sequence[Any] | None = None) -> adbc_driver_manager.Error:
    """Run `sql` to the end and return the ADBC error it must raise (prepare, execute or fetch)."""
    try:
        table = query(conn, sql, params)
    except adbc_driver_manager.Error as err:
        return err
    raise AssertionError(
        f"expected an error for {sql[:200]!r}, got {table.num_rows} rows with schema {table.schema}"
    )


def describe(err: adbc_driver_manager.Error) -> str:
    return f"{type(err).__name__} status={adbc_grpc_status(err)} message={str(err)[:500]!r}"
