"""The reference engine: DuckDB reading the same files the node serves, under the same names."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.feather

from .compare import rows_of


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_source(location: str | Path, options: str = "") -> str:
    """A DuckDB table function reading `location` the way the node is meant to read it.

    `options` are extra DuckDB reader arguments, e.g. `types = {'Datum': 'VARCHAR'}`.
    """
    path = Path(location)
    text = str(location)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ValueError(f"{path} holds no files")
        return duckdb_source(str(path / ("*" + files[0].suffix)), options)
    suffix = path.suffix.lower()
    extra = f", {options}" if options else ""
    if suffix == ".parquet":
        return f"read_parquet({_sql_string(text)}{extra})"
    if suffix == ".csv":
        return f"read_csv({_sql_string(text)}, header = true{extra})"
    if suffix == ".tsv":
        return f"read_csv({_sql_string(text)}, header = true, delim = '\\t'{extra})"
    if suffix in (".json", ".ndjson"):
        return f"read_json({_sql_string(text)}, format = 'newline_delimited'{extra})"
    raise ValueError(f"DuckDB cannot read {location} offline; compare with another reader")


def geojson_features(location: str | Path) -> list[dict]:
    return json.loads(Path(location).read_text(encoding="utf-8"))["features"]


def geojson_properties(location: str | Path) -> pa.Table:
    """The features' properties as a table, one column per property name (first-seen order)."""
    features = geojson_features(location)
    names: list[str] = []
    for f in features:
        for key in f.get("properties") or {}:
            if key not in names:
                names.append(key)
    return pa.table({n: [(f.get("properties") or {}).get(n) for f in features] for n in names})


def arrow_ipc_table(location: str | Path) -> pa.Table:
    return pyarrow.feather.read_table(str(location))


class Reference:
    """A DuckDB connection with one view per table.

    DuckDB reads Parquet, CSV/TSV and newline-delimited JSON itself. Arrow IPC files are read
    with pyarrow and GeoJSON with the json module (properties only), then handed to DuckDB as
    Arrow tables: DuckDB's extensions for those formats cannot be installed offline.
    """

    def __init__(self, tables: dict[str, str | Path], options: dict[str, str] | None = None):
        options = options or {}
        self.con = duckdb.connect()
        # Dates and timestamps the node returns have no zone; keep DuckDB from adding one.
        self.con.execute("SET TimeZone = 'UTC'")
        for name, location in tables.items():
            suffix = Path(str(location)).suffix.lower()
            if suffix in (".arrow", ".ipc", ".feather"):
                self._register(name, arrow_ipc_table(location))
            elif suffix == ".geojson":
                self._register(name, geojson_properties(location))
            else:
                source = duckdb_source(location, options.get(name, ""))
                self.con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM {source}')

    def _register(self, name: str, table: pa.Table) -> None:
        # Materialised, since objects registered on one cursor are invisible to the others.
        self.con.register("__arrow_source", table)
        self.con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM __arrow_source')
        self.con.unregister("__arrow_source")

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        cur = self.con.cursor()
        result = cur.execute(sql, list(params)) if params is not None else cur.execute(sql)
        return rows_of(result.fetchall())

    def columns(self, sql: str) -> list[str]:
        cur = self.con.cursor()
        return [d[0] for d in cur.execute(sql).description]

    def arrow(self, sql: str) -> pa.Table:
        return self.con.cursor().execute(sql).to_arrow_table()
