"""`polder sql` exports: Parquet, Arrow, JSON and CSV files keep each column's type and NULLs.

A node serves a Parquet file with one column of each common type (and a row of NULLs) and two
GeoJSON files, whose `geometry` column the node marks as GeoArrow WKB (`geoarrow.wkb`). The real
`polder sql` binary exports query results from it; pyarrow, DuckDB and GeoPandas read them back.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import subprocess
import zoneinfo
from decimal import Decimal
from pathlib import Path

import duckdb
import geopandas
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import shapely

from udn_conformance.client import query

pytestmark = pytest.mark.spawns_node

NODE = "exports"
AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")

TYPES = pa.schema(
    [
        ("id", pa.int64()),
        ("n", pa.int32()),
        ("ts", pa.timestamp("us", tz="Europe/Amsterdam")),
        ("ts_local", pa.timestamp("ms")),
        ("d", pa.date32()),
        ("amount", pa.decimal128(12, 3)),
        ("f", pa.float64()),
        ("b", pa.bool_()),
        ("s", pa.string()),
        ("raw", pa.binary()),
    ]
)
ROWS = [
    {
        "id": 1,
        "n": 7,
        "ts": dt.datetime(2024, 3, 31, 1, 30, 15, 250000, tzinfo=dt.timezone.utc),
        "ts_local": dt.datetime(2024, 1, 2, 3, 4, 5, 678000),
        "d": dt.date(2024, 2, 29),
        "amount": Decimal("123456789.125"),
        "f": 1.5,
        "b": True,
        "s": "Zaanse Schans",
        "raw": b"\x00\x01\xff",
    },
    {"id": 2, **{name: None for name in TYPES.names if name != "id"}},
    {
        "id": 3,
        "n": -2147483648,
        "ts": dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc),
        "ts_local": dt.datetime(2038, 1, 19, 3, 14, 8),
        "d": dt.date(1970, 1, 1),
        "amount": Decimal("-0.001"),
        "f": -0.0,
        "b": False,
        "s": "ĳsbaan, \"quoted\"\nnew line",
        "raw": b"",
    },
]

# GeoJSON: RFC 7946 coordinates (OGC:CRS84) unless the file names another CRS.
PLACES = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"code": "A", "n": 1},
            "geometry": {"type": "Point", "coordinates": [4.9, 52.37]},
        },
        {
            "type": "Feature",
            "properties": {"code": "B", "n": 2},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[4.8, 52.3], [5.0, 52.3], [5.0, 52.4], [4.8, 52.3]]],
            },
        },
        {"type": "Feature", "properties": {"code": "C", "n": 3}, "geometry": None},
    ],
}
RD_NEW = {
    "type": "FeatureCollection",
    "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::28992"}},
    "features": [
        {
            "type": "Feature",
            "properties": {"code": "Dam"},
            "geometry": {"type": "Point", "coordinates": [121394.0, 487383.0]},
        }
    ],
}


@pytest.fixture(scope="module")
def node(launcher, tmp_path_factory):
    data = tmp_path_factory.mktemp("exports-data")
    pq.write_table(pa.Table.from_pylist(ROWS, schema=TYPES), data / "types.parquet")
    (data / "places.geojson").write_text(json.dumps(PLACES))
    (data / "rd.geojson").write_text(json.dumps(RD_NEW))
    tables = {"t": "types.parquet", "places": "places.geojson", "rd": "rd.geojson"}
    args = [arg for name, file in tables.items() for arg in ("--table", f"{name}={data / file}")]
    return launcher.spawn(args, name=NODE)


def polder_sql(polder_bin, node, *args) -> subprocess.CompletedProcess:
    cmd = [str(polder_bin), "sql", "--node", f"{NODE}={node.flight_url}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def export(polder_bin, node, sql: str, fmt: str, out: Path) -> Path:
    done = polder_sql(polder_bin, node, "--format", fmt, "--output", str(out), "-c", sql)
    assert done.returncode == 0, done.stderr
    return out


def without_views(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    """(name, type) of each column, string_view and binary_view as string and binary."""
    plain = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}
    return [(f.name, plain.get(f.type, f.type)) for f in schema]


# --- Parquet ----------------------------------------------------------------------------------


@pytest.mark.beyond_spec("polder sql exports: Parquet keeps every Arrow type, zstd, statistics")
def test_parquet_keeps_types_values_and_nulls(polder_bin, node, tmp_path):
    sql = f"SELECT * FROM {NODE}.public.t ORDER BY id"
    out = export(polder_bin, node, sql, "parquet", tmp_path / "t.parquet")
    table = pq.read_table(out)
    # The types of the result as the node answers it over Flight SQL, and as written.
    with node.connect() as conn:
        answered = query(conn, "SELECT * FROM t ORDER BY id").schema
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in answered]
    assert without_views(table.schema) == [(f.name, f.type) for f in TYPES]
    assert table.to_pylist() == ROWS
    metadata = pq.ParquetFile(out).metadata
    assert b"geo" not in (metadata.metadata or {})
    for g in range(metadata.num_row_groups):
        for c in range(metadata.num_columns):
            chunk = metadata.row_group(g).column(c)
            assert chunk.compression == "ZSTD", chunk
            nulls = 0 if metadata.schema.column(c).name == "id" else 1
            assert chunk.is_stats_set and chunk.statistics.null_count == nulls, chunk
    ts = metadata.schema.column(TYPES.get_field_index("ts")).logical_type
    assert json.loads(ts.to_json()).items() >= {
        "Type": "Timestamp", "isAdjustedToUTC": True, "timeUnit": "microseconds"
    }.items()
    stats = metadata.row_group(0).column(TYPES.get_field_index("d")).statistics
    assert (stats.min, stats.max) == (dt.date(1970, 1, 1), dt.date(2024, 2, 29))
    # DuckDB, another reader, sees the same values: the time zone is Parquet's UTC flag.
    rows = duckdb.sql(f"SELECT ts, d, amount FROM '{out}' ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [r["ts"] for r in ROWS]
    assert [r[1:] for r in rows] == [(r["d"], r["amount"]) for r in ROWS]


@pytest.mark.beyond_spec("polder sql exports: types Parquet has no logical type for")
def test_parquet_writes_the_closest_type_where_parquet_has_no_exact_one(
    polder_bin, node, tmp_path
):
    sql = (
        "SELECT arrow_cast(TIMESTAMP '2024-01-01T10:00:00Z', 'Timestamp(Second, Some(\"UTC\"))')"
        " AS ts_s, arrow_cast(DATE '2024-02-29', 'Date64') AS d64,"
        " arrow_cast(TIME '01:02:03', 'Time32(Second)') AS t32,"
        " make_array(arrow_cast(DATE '2024-02-29', 'Date64')) AS dates,"
        " arrow_cast(TIME '01:02:03.5', 'Time64(Nanosecond)') AS t64,"
        " TIMESTAMP '2024-01-02' - TIMESTAMP '2024-01-01' AS dur,"
        " arrow_cast(1.5, 'Float16') AS f16, arrow_cast(1, 'UInt64') AS u64,"
        " arrow_cast(1.5, 'Decimal256(40, 3)') AS dec256"
    )
    table = pq.read_table(export(polder_bin, node, sql, "parquet", tmp_path / "x.parquet"))
    assert [(f.name, f.type) for f in table.schema] == [
        ("ts_s", pa.timestamp("ms", tz="UTC")),
        ("d64", pa.date32()),
        ("t32", pa.time32("ms")),
        ("dates", pa.list_(pa.date32())),
        ("t64", pa.time64("ns")),
        ("dur", pa.duration("ns")),
        ("f16", pa.float16()),
        ("u64", pa.uint64()),
        ("dec256", pa.decimal256(40, 3)),
    ]
    row = table.to_pylist()[0]
    assert row["ts_s"] == dt.datetime(2024, 1, 1, 10, tzinfo=dt.timezone.utc)
    assert row["d64"] == row["dates"][0] == dt.date(2024, 2, 29)
    assert row["t32"] == dt.time(1, 2, 3)
    # An INTERVAL has no Parquet type: a clear error, and no file.
    out = tmp_path / "interval.parquet"
    done = polder_sql(
        polder_bin, node, "--format", "parquet", "-o", str(out), "-c", "SELECT INTERVAL '1 day' AS iv"
    )
    assert done.returncode != 0 and 'column "iv" is an INTERVAL' in done.stderr, done.stderr
    assert list(tmp_path.glob("interval*")) == [] and not list(tmp_path.glob(".*.part"))


@pytest.mark.beyond_spec("polder sql exports: Parquet row groups are written as they fill")
def test_a_large_parquet_export_is_written_in_several_row_groups(polder_bin, node, tmp_path):
    sql = "SELECT value FROM generate_series(1, 1100000)"
    out = export(polder_bin, node, sql, "parquet", tmp_path / "big.parquet")
    metadata = pq.ParquetFile(out).metadata
    assert metadata.num_rows == 1100000
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [
        1024 * 1024,
        1100000 - 1024 * 1024,
    ]


# --- GeoParquet -------------------------------------------------------------------------------

GEOMETRY_TYPE = (
    r"^(GeometryCollection|(Multi)?(Point|LineString|Polygon))( Z)?$"  # GeoParquet 1.1 schema
)


def check_geoparquet_1_1(geo: dict, schema: pa.Schema) -> None:
    """The `geo` metadata against the fields of GeoParquet 1.1's JSON schema
    (format-specs/schema.json): required keys, their types and allowed values."""
    import re

    assert geo["version"] == "1.1.0"
    assert isinstance(geo["columns"], dict) and geo["columns"]
    assert geo["primary_column"] in geo["columns"]
    for name, column in geo["columns"].items():
        assert schema.field(name).type in (pa.binary(), pa.large_binary(), pa.binary_view())
        assert column["encoding"] == "WKB"
        types = column["geometry_types"]
        assert isinstance(types, list) and len(set(types)) == len(types)
        assert all(re.match(GEOMETRY_TYPE, t) for t in types), types
        if "crs" in column:
            assert column["crs"] is None or isinstance(column["crs"], dict)
        if "bbox" in column:
            bbox = column["bbox"]
            assert len(bbox) in (4, 6) and all(isinstance(v, (int, float)) for v in bbox)
        assert column.get("edges", "planar") in ("planar", "spherical")
        assert set(column) <= {
            "encoding", "geometry_types", "crs", "orientation", "edges", "bbox", "epoch", "covering"
        }


def wkb_point(x: float, y: float) -> bytes:
    return struct.pack("<BIdd", 1, 1, x, y)


@pytest.mark.beyond_spec("polder sql exports: GeoParquet 1.1 metadata for GeoArrow WKB columns")
def test_parquet_of_geometries_is_geoparquet(polder_bin, node, tmp_path):
    sql = f"SELECT code, n, geometry FROM {NODE}.public.places ORDER BY code"
    out = export(polder_bin, node, sql, "parquet", tmp_path / "places.parquet")
    file = pq.ParquetFile(out)
    geo = json.loads(file.metadata.metadata[b"geo"])
    check_geoparquet_1_1(geo, file.schema_arrow)
    assert geo == {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            # No `crs`: OGC:CRS84, GeoParquet's default, as the GeoJSON file is.
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Point", "Polygon"],
                "bbox": [4.8, 52.3, 5.0, 52.4],
            }
        },
    }
    frame = geopandas.read_parquet(out)
    assert isinstance(frame, geopandas.GeoDataFrame)
    assert frame.geometry.name == "geometry" and frame.crs == "OGC:CRS84"
    assert list(frame["code"]) == ["A", "B", "C"]
    assert frame.geometry[0].equals(shapely.Point(4.9, 52.37))
    assert frame.geometry[1].geom_type == "Polygon" and frame.geometry[2] is None


@pytest.mark.beyond_spec("polder sql exports: GeoParquet CRS from the GeoArrow metadata")
def test_geoparquet_names_a_projected_crs_and_follows_aliases(polder_bin, node, tmp_path):
    sql = f"SELECT code, geometry AS location FROM {NODE}.public.rd"
    out = export(polder_bin, node, sql, "parquet", tmp_path / "rd.parquet")
    file = pq.ParquetFile(out)
    geo = json.loads(file.metadata.metadata[b"geo"])
    check_geoparquet_1_1(geo, file.schema_arrow)
    assert geo["primary_column"] == "location"
    column = geo["columns"]["location"]
    assert column["crs"]["id"] == {"authority": "EPSG", "code": 28992}
    assert column["bbox"] == [121394.0, 487383.0, 121394.0, 487383.0]
    frame = geopandas.read_parquet(out)
    assert frame.crs.to_epsg() == 28992
    assert frame.geometry[0].equals(shapely.Point(121394.0, 487383.0))


# --- Arrow IPC --------------------------------------------------------------------------------


@pytest.mark.beyond_spec("polder sql exports: Arrow IPC files")
def test_arrow_file_keeps_types_values_nulls_and_geoarrow_metadata(polder_bin, node, tmp_path):
    out = export(
        polder_bin, node, f"SELECT * FROM {NODE}.public.t ORDER BY id", "arrow", tmp_path / "t.arrow"
    )
    with ipc.open_file(out) as reader:
        assert reader.num_record_batches >= 1
        table = reader.read_all()
    assert without_views(table.schema) == [(f.name, f.type) for f in TYPES]
    assert table.to_pylist() == ROWS

    sql = f"SELECT code, geometry FROM {NODE}.public.places ORDER BY code"
    out = export(polder_bin, node, sql, "arrow", tmp_path / "places.arrow")
    table = ipc.open_file(out).read_all()
    assert table.schema.field("geometry").metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    assert table.column("geometry")[0].as_py() == wkb_point(4.9, 52.37)

    missing = polder_sql(polder_bin, node, "--format", "arrow", "-c", "SELECT 1")
    assert missing.returncode != 0, missing.stdout
    assert "--format arrow writes a file: give it with --output FILE" in missing.stderr


@pytest.mark.beyond_spec("polder sql exports: one result per file, none left by a failure")
def test_failed_or_second_result_leaves_no_file(polder_bin, node, tmp_path):
    for fmt in ("parquet", "arrow"):
        out = tmp_path / f"two.{fmt}"
        two = polder_sql(polder_bin, node, "--format", fmt, "-o", str(out), "-c", "SELECT 1; SELECT 2")
        assert two.returncode != 0, two.stdout
        assert f"--format {fmt} holds one result; the script has more than one query" in two.stderr
        failed = tmp_path / f"failed.{fmt}"
        sql = f"SELECT CAST(s AS INT) FROM {NODE}.public.t"
        bad = polder_sql(polder_bin, node, "--format", fmt, "-o", str(failed), "-c", sql)
        assert bad.returncode != 0, bad.stdout
        # The answer cut off by an error holds no place: the next query's may follow.
        then = polder_sql(
            polder_bin, node, "--format", fmt, "-o", str(failed), "-c", f"{sql}; SELECT 1 AS x"
        )
        assert then.returncode != 0 and "holds one result" not in then.stderr, then.stderr
        assert "1 error in the script" in then.stderr, then.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- JSON and CSV -----------------------------------------------------------------------------


@pytest.mark.beyond_spec("polder sql exports: JSON lines keep NULLs and read back")
def test_json_lines_have_every_key_and_read_back(polder_bin, node, tmp_path):
    sql = f"SELECT * FROM {NODE}.public.t ORDER BY id"
    done = polder_sql(polder_bin, node, "--format", "json", "-c", sql)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line, parse_float=Decimal) for line in done.stdout.splitlines()]
    assert [list(line) for line in lines] == [TYPES.names] * len(ROWS)
    assert lines[1] == {"id": 2, **{name: None for name in TYPES.names[1:]}}
    first = lines[0]
    # ISO 8601 with the offset of the column's time zone; exact decimals; hex binary.
    assert first["ts"] == "2024-03-31T03:30:15.250+02:00"
    assert dt.datetime.fromisoformat(first["ts"]) == ROWS[0]["ts"]
    assert dt.datetime.fromisoformat(first["ts_local"]) == ROWS[0]["ts_local"]
    assert dt.date.fromisoformat(first["d"]) == ROWS[0]["d"]
    assert first["amount"] == ROWS[0]["amount"]
    assert bytes.fromhex(first["raw"]) == ROWS[0]["raw"]
    # DuckDB reads the types back from the text; a timestamp without time zone in ISO 8601
    # ('T', fractions of a second) it leaves as text unless asked (docs/analyst-guide.md).
    path = tmp_path / "t.json"
    path.write_text(done.stdout)
    rel = duckdb.sql(
        f"SELECT * REPLACE (CAST(ts_local AS TIMESTAMP) AS ts_local) "
        f"FROM read_json('{path}', format = 'newline_delimited')"
    )
    types = dict(zip(rel.columns, map(str, rel.types)))
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE" and types["d"] == "DATE", types
    assert types["amount"] == "DOUBLE" and types["b"] == "BOOLEAN", types
    rows = rel.order("id").fetchall()
    assert [r[2] for r in rows] == [r["ts"] for r in ROWS]
    assert [r[3:5] for r in rows] == [(r["ts_local"], r["d"]) for r in ROWS]
    assert [r[5] for r in rows] == [float(r["amount"]) if r["amount"] else None for r in ROWS]
    assert rows[1][1:] == (None,) * (len(TYPES) - 1)


@pytest.mark.beyond_spec("polder sql exports: CSV timestamps, dates and decimals read back")
def test_csv_reads_back_with_duckdb(polder_bin, node, tmp_path):
    path = tmp_path / "t.csv"
    sql = f"SELECT id, n, ts, ts_local, d, amount, b, s FROM {NODE}.public.t ORDER BY id"
    done = polder_sql(polder_bin, node, "--format", "csv", "-o", str(path), "-c", sql)
    assert done.returncode == 0, done.stderr
    header, first = path.read_text().splitlines()[:2]
    assert first.startswith("1,7,2024-03-31T03:30:15.250+02:00,2024-01-02T03:04:05.678,2024-02-29,")
    rel = duckdb.sql(f"SELECT * FROM read_csv('{path}')")
    types = dict(zip(rel.columns, map(str, rel.types)))
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE" and types["d"] == "DATE", types
    rows = rel.order("id").fetchall()
    expected = [
        tuple(r[k] for k in ("id", "n", "ts", "ts_local", "d", "amount", "b", "s")) for r in ROWS
    ]
    assert [(r[2], r[3], r[4]) for r in rows] == [e[2:5] for e in expected]
    assert [Decimal(str(r[5])) if r[5] is not None else None for r in rows] == [e[5] for e in expected]
    assert [r[7] for r in rows] == [e[7] for e in expected]
