"""Comparing a node's answer with a reference engine's answer over the same files."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

REL_TOL = 1e-6
ABS_TOL = 1e-6


def normalize(value: Any) -> Any:
    """Make values from pyarrow and DuckDB comparable: numbers as float, text as str."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        f = float(value)
        return None if math.isnan(f) else f
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dt.datetime):
        # Zoned and zone-less timestamps are compared as UTC wall time: a file's text may say
        # `...Z` where the node's column has no zone, or the other way round.
        if value.tzinfo is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    return value


def rows_of_arrow(table: pa.Table | pa.RecordBatch) -> list[tuple]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [tuple(normalize(c[r]) for c in columns) for r in range(table.num_rows)]


def rows_of(raw: Iterable[Sequence[Any]]) -> list[tuple]:
    return [tuple(normalize(v) for v in row) for row in raw]


def _sort_key(row: tuple) -> tuple:
    key = []
    for v in row:
        if v is None:
            key.append((0, 0, ""))
        elif isinstance(v, bool):
            key.append((1, int(v), ""))
        elif isinstance(v, float):
            # Round so that engine-level float noise does not reorder rows.
            key.append((1, float(f"{v:.7g}"), ""))
        else:
            key.append((2, 0, repr(v)))
    return tuple(key)


def values_equal(a: Any, b: Any, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> bool:
    if isinstance(a, float) and isinstance(b, float) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    return a == b


def assert_same_rows(
    actual: list[tuple],
    expected: list[tuple],
    *,
    ordered: bool = False,
    rel_tol: float = REL_TOL,
    abs_tol: float = ABS_TOL,
    context: str = "",
) -> None:
    """Fail with the first differing row unless both answers hold the same rows."""
    where = f" ({context})" if context else ""
    assert len(actual) == len(expected), (
        f"row count differs{where}: node {len(actual)}, reference {len(expected)}; "
        f"node first rows {actual[:3]}, reference first rows {expected[:3]}"
    )
    if not ordered:
        actual = sorted(actual, key=_sort_key)
        expected = sorted(expected, key=_sort_key)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert len(a) == len(e), f"column count differs{where}: node {len(a)}, reference {len(e)}"
        for j, (va, ve) in enumerate(zip(a, e)):
            if not values_equal(va, ve, rel_tol, abs_tol):
                raise AssertionError(
                    f"row {i} column {j} differs{where}: node {va!r}, reference {ve!r}\n"
                    f"  node row:      {a!r}\n  reference row: {e!r}"
                )


def type_family(t: pa.DataType) -> str:
    """A coarse type class, so string vs string_view or int32 vs int64 is not a failure."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_dictionary(t):
        return type_family(t.value_type)
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)
