"""Each file format the node reads: full contents and aggregates agree with a reference reader.

In spawn mode every format gets a node of its own, so one unreadable format fails only its
own tests.
"""

from __future__ import annotations

import json

import pytest

from udn_conformance import wkb
from udn_conformance.client import query, query_rows
from udn_conformance.compare import assert_same_rows, rows_of_arrow, type_family
from udn_conformance.httpfiles import FileServer
from udn_conformance.reference import Reference, geojson_features

STATION_COLUMNS = "station_id, name, city, lat, lon, installed, active, pm10"
STATION_AGG = """
    SELECT city, count(*) AS n, count(pm10) AS n_pm10, avg(pm10) AS avg_pm10, min(lat) AS min_lat,
           max(lon) AS max_lon, sum(station_id) AS sum_id
    FROM {t} GROUP BY city"""

CASES = {
    "stations_csv": [
        f"SELECT {STATION_COLUMNS} FROM stations_csv",
        STATION_AGG.format(t="stations_csv"),
    ],
    "stations_tsv": [
        f"SELECT {STATION_COLUMNS} FROM stations_tsv",
        STATION_AGG.format(t="stations_tsv"),
    ],
    "events_ndjson": [
        "SELECT event_id, kind, severity, value, reporter FROM events_ndjson",
        "SELECT kind, count(*) AS n, count(value) AS nv, avg(value) AS av, max(severity) AS ms "
        "FROM events_ndjson GROUP BY kind",
    ],
    "events_json": [
        "SELECT event_id, kind, severity, value, reporter FROM events_json",
        "SELECT severity, count(*) AS n, sum(value) AS sv FROM events_json GROUP BY severity",
    ],
    "measures_arrow": [
        "SELECT id, station, value, ts, flag FROM measures_arrow",
        "SELECT station, flag, count(*) AS n, avg(value) AS av, min(ts) AS first_ts "
        "FROM measures_arrow GROUP BY station, flag",
    ],
    "areas_geojson": [
        "SELECT area_id, name, population, density FROM areas_geojson",
        "SELECT count(*) AS n, sum(population) AS p, max(density) AS d FROM areas_geojson",
    ],
    "parts_dir": [f"SELECT {STATION_COLUMNS} FROM parts_dir", STATION_AGG.format(t="parts_dir")],
    "parts_glob": [f"SELECT {STATION_COLUMNS} FROM parts_glob", STATION_AGG.format(t="parts_glob")],
}


# The GeoJSON table's properties served as columns, one row per feature, is UDN-DATA-3 as well.
TABLES = [
    pytest.param(t, marks=pytest.mark.requirement("UDN-DATA-3")) if t == "areas_geojson" else t
    for t in sorted(CASES)
]


@pytest.fixture(scope="module")
def format_env(launcher, generated):
    cache = {}

    def get(table: str):
        if table not in cache:
            tables = {table: generated[table]}
            cache[table] = (launcher.node(tables), Reference(tables))
        return cache[table]

    return get


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("kind", [0, 1], ids=["all_rows", "aggregate"])
@pytest.mark.requirement("UDN-DATA-2")
def test_format_answers_match_reference(format_env, table, kind):
    node, ref = format_env(table)
    sql = CASES[table][kind]
    with node.connect() as conn:
        got = query_rows(conn, sql)
    assert_same_rows(got, ref.rows(sql), context=f"{table}: {sql}")


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.requirement("UDN-DATA-2")
def test_format_schema_column_names(format_env, generated, table):
    node, ref = format_env(table)
    with node.connect() as conn:
        schema = conn.adbc_get_table_schema(table)
    expected = ref.columns(f"SELECT * FROM {table}")
    names = [n for n in schema.names if n != "geometry"]
    if table.startswith(("events_", "areas_")):
        # Members of a JSON object have no order (RFC 8259), so neither have these columns.
        names, expected = sorted(names), sorted(expected)
    assert names == expected, f"{table}: {schema.names} vs {expected}"


@pytest.mark.requirement("UDN-DATA-2")
def test_csv_types_are_inferred(format_env):
    node, ref = format_env("stations_csv")
    with node.connect() as conn:
        schema = query(
            conn, "SELECT station_id, lat, pm10, active FROM stations_csv LIMIT 1"
        ).schema
    assert [type_family(f.type) for f in schema] == ["int", "float", "float", "bool"]


@pytest.mark.requirement("UDN-DATA-3")
def test_geojson_geometry_is_wkb_of_the_feature(format_env, generated):
    node, _ = format_env("areas_geojson")
    with node.connect() as conn:
        table = query(conn, "SELECT area_id, geometry FROM areas_geojson ORDER BY area_id")
    assert type_family(table.schema.field("geometry").type) == "binary"
    features = geojson_features(generated["areas_geojson"])
    by_id = {f["properties"]["area_id"]: f["geometry"] for f in features}
    rows = table.to_pylist()
    assert len(rows) == len(features)
    for row in rows:
        decoded = wkb.decode(row["geometry"])
        assert wkb.same_geometry(decoded, by_id[row["area_id"]]), (
            f"area {row['area_id']}: {decoded}"
        )


def _geoarrow_crs(field) -> object:
    """The `crs` of a GeoArrow `geoarrow.wkb` field (a string or PROJJSON), asserting the type."""
    metadata = field.metadata or {}
    name = metadata.get(b"ARROW:extension:name", b"").decode()
    assert name == "geoarrow.wkb", f"{field.name}: extension {name!r}, metadata {metadata}"
    extension = json.loads(metadata.get(b"ARROW:extension:metadata", b"{}") or b"{}")
    assert extension.get("crs"), f"{field.name}: no crs in extension metadata {extension}"
    return extension["crs"]


@pytest.mark.requirement("UDN-DATA-3")
def test_geojson_geometry_crs_defaults_to_crs84(format_env, generated):
    """A GeoJSON file without a `crs` member is in OGC:CRS84 (RFC 7946)."""
    assert "crs" not in json.loads(generated["areas_geojson"].read_text())
    node, _ = format_env("areas_geojson")
    with node.connect() as conn:
        schema = query(conn, "SELECT area_id, geometry FROM areas_geojson LIMIT 1").schema
        table_schema = conn.adbc_get_table_schema("areas_geojson")
    for where, fields in [("query", schema), ("table", table_schema)]:
        crs = _geoarrow_crs(fields.field("geometry"))
        text = crs if isinstance(crs, str) else json.dumps(crs)
        assert "CRS84" in text.upper(), f"{where}: crs {crs!r}"


@pytest.mark.requirement("UDN-DATA-3")
def test_geojson_declared_crs_is_recorded(format_env, generated):
    """A GeoJSON file that declares its CRS (here EPSG:28992, the Dutch grid) keeps it."""
    declared = json.loads(generated["areas_rd_geojson"].read_text())["crs"]["properties"]["name"]
    code = declared.rsplit(":", 1)[-1]
    node, ref = format_env("areas_rd_geojson")
    with node.connect() as conn:
        table = query(conn, "SELECT buurt_id, naam, geometry FROM areas_rd_geojson")
        props = "SELECT buurt_id, naam FROM areas_rd_geojson"
        assert_same_rows(query_rows(conn, props), ref.rows(props), context="properties")
    crs = _geoarrow_crs(table.schema.field("geometry"))
    text = crs if isinstance(crs, str) else json.dumps(crs)
    assert code in text and "CRS84" not in text.upper(), f"declared {declared}, recorded {crs!r}"
    features = geojson_features(generated["areas_rd_geojson"])
    by_id = {f["properties"]["buurt_id"]: f["geometry"] for f in features}
    rows = table.to_pylist()
    assert len(rows) == len(features)
    for row in rows:  # coordinates as in the file, not reprojected
        assert wkb.same_geometry(wkb.decode(row["geometry"]), by_id[row["buurt_id"]]), row


@pytest.mark.requirement("UDN-DATA-2")
def test_directory_and_glob_serve_the_same_rows(format_env):
    answers = []
    for table in ("parts_dir", "parts_glob"):
        node, _ = format_env(table)
        with node.connect() as conn:
            answers.append(rows_of_arrow(query(conn, f"SELECT {STATION_COLUMNS} FROM {table}")))
    assert_same_rows(answers[0], answers[1])


# Locations given as URLs rather than paths. The node reads them itself, so it must be started
# with them: spawn mode only.
URL_CASES = {
    "readings": "SELECT station, count(*) AS n, avg(value) AS v, max(ts) AS last_ts FROM {t} "
    "GROUP BY station",
    "stations_csv": STATION_AGG,
    "areas_geojson": "SELECT count(*) AS n, sum(population) AS p, max(density) AS d FROM {t}",
}


@pytest.fixture(scope="module")
def file_server(generated):
    server = FileServer(generated["readings"].parent)
    yield server
    server.close()


@pytest.mark.spawns_node
@pytest.mark.parametrize("scheme", ["file", "http"])
@pytest.mark.requirement("UDN-DATA-2")
def test_url_locations(launcher, generated, file_server, scheme):
    tables, ref_tables = {}, {}
    for name in URL_CASES:
        path = generated[name]
        url = path.as_uri() if scheme == "file" else f"{file_server.url}/{path.name}"
        tables[f"url_{name}"] = url
        ref_tables[f"url_{name}"] = path
    node = launcher.node(tables)
    ref = Reference(ref_tables)
    with node.connect() as conn:
        for name, sql in URL_CASES.items():
            sql = sql.format(t=f"url_{name}")
            assert_same_rows(query_rows(conn, sql), ref.rows(sql), context=f"{scheme}: {sql}")
