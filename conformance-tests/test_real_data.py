"""Real open urban data (../shared/data, see SOURCES.md there): the node agrees with DuckDB.

Each dataset is served as it was published, with its quirks: numeric column names, thousands
of empty cells before the first value, a glob over monthly files, large integer ids,
upper-case GeoJSON property names. In spawn mode each dataset gets a node of its own.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from udn_conformance import datasets, wkb
from udn_conformance.client import query, query_rows
from udn_conformance.compare import assert_same_rows
from udn_conformance.reference import Reference, geojson_features

pytestmark = pytest.mark.shared_data

QUERIES = {
    "lml_pm10": [
        'SELECT count(*) AS n, count("636") AS n636, avg("636") AS a636, min("404") AS min404, '
        'max("404") AS max404, avg("131") AS a131, sum("518") AS s518 FROM lml_pm10',
        'SELECT substr("Datum", 7, 2) AS yy, count("418") AS n418, avg("418") AS a418, '
        'max("131") AS m131 FROM lml_pm10 GROUP BY substr("Datum", 7, 2)',
    ],
    "koeln_weather": [
        'SELECT count(*) AS n, min("timestamp") AS first_ts, max("timestamp") AS last_ts, '
        "avg(temp_mean) AS t, max(windspeed_max) AS w, sum(hum_count) AS h FROM koeln_weather",
        'SELECT ("timestamp" % 86400 - "timestamp" % 3600) / 3600 AS hour_utc, count(*) AS n, '
        "avg(temp_mean) - 273.15 AS avg_celsius, min(hum_min) AS hum, max(press_max) AS press "
        'FROM koeln_weather GROUP BY ("timestamp" % 86400 - "timestamp" % 3600) / 3600',
    ],
    "snuffelfiets": [
        "SELECT entity_id, count(*) AS n, avg(pm2_5) AS a25, max(pm10) AS m10, "
        "min(humidity) AS h, avg(temperature) / 10.0 AS t FROM snuffelfiets "
        "WHERE latitude <> 0 GROUP BY entity_id",
        "SELECT version_major, count(*) AS n, sum(error_code) AS e, avg(voltage) AS v "
        "FROM snuffelfiets GROUP BY version_major",
        "SELECT min(recording_timestamp) AS first_ts, max(recording_timestamp) AS last_ts "
        "FROM snuffelfiets",
    ],
    "koeln_population": [
        "SELECT jahr, tabelle, count(*) AS n, sum(zahl) AS total FROM koeln_population "
        "GROUP BY jahr, tabelle",
        "SELECT raum, max(zahl) AS largest FROM koeln_population WHERE zeile = 'Einwohner' "
        "GROUP BY raum",
    ],
    "cbs_buurten": [
        "SELECT gm_naam, count(*) AS n, sum(aantal_inwoners) AS inwoners, "
        "avg(gemiddelde_woningwaarde) AS woz, max(afstand_tot_ziekenhuis_km) AS ziekenhuis "
        "FROM cbs_buurten GROUP BY gm_naam",
    ],
    "koeln_districts": [
        'SELECT "STB_NR", "STB_NAME", "SHAPE_AREA", "SHAPE_LEN" FROM koeln_districts',
    ],
    "koeln_segments": [
        'SELECT count(*) AS n, count(DISTINCT "IDENTIFIER") AS ids, max("OBJECTID") AS max_id '
        "FROM koeln_segments",
        'SELECT "IDENTIFIER", "NAME" FROM koeln_segments',
    ],
}


# Where DuckDB's CSV sniffer reads more into a column than the text (dd/mm/yy as a date),
# compare with the text as it stands in the file.
READER_OPTIONS = {"lml_pm10": "types = {'Datum': 'VARCHAR'}"}


@pytest.fixture(scope="module")
def real_env(launcher, shared_data):
    cache = {}

    def get(table: str):
        if table not in cache:
            tables = {table: shared_data / datasets.SHARED_TABLES[table]}
            cache[table] = (launcher.node(tables), Reference(tables, READER_OPTIONS))
        return cache[table]

    return get


CASES = [(t, i) for t, qs in QUERIES.items() for i in range(len(qs))]
# GeoJSON properties served as columns, one row per feature, is UDN-DATA-3 as well.
CASE_PARAMS = [
    pytest.param(
        t,
        i,
        id=f"{t}-{i}",
        marks=[pytest.mark.requirement("UDN-DATA-3")]
        if datasets.SHARED_TABLES[t].endswith(".geojson")
        else [],
    )
    for t, i in CASES
]


@pytest.mark.parametrize("table,index", CASE_PARAMS)
@pytest.mark.requirement("UDN-DATA-2")
def test_real_data_answer_matches_duckdb(real_env, table, index):
    node, ref = real_env(table)
    sql = QUERIES[table][index]
    expected = ref.rows(sql)
    with node.connect() as conn:
        got = query_rows(conn, sql)
    assert_same_rows(got, expected, context=f"{table}: {sql}")


CSV_TABLES = [t for t, rel in datasets.SHARED_TABLES.items() if not rel.endswith(".geojson")]


def _header(location: Path) -> list[str]:
    first = location if location.is_file() else sorted(location.parent.glob(location.name))[0]
    with open(first, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f))


@pytest.mark.parametrize("table", CSV_TABLES)
@pytest.mark.requirement("UDN-DATA-2")
def test_real_csv_keeps_every_value(real_env, shared_data, table):
    """count(column) for every named column: a column typed from too few rows loses values."""
    names = [n for n in _header(shared_data / datasets.SHARED_TABLES[table]) if n]
    sql = "SELECT " + ", ".join(f'count("{n}") AS "{n}"' for n in names) + f" FROM {table}"
    node, ref = real_env(table)
    expected = ref.rows(sql)
    with node.connect() as conn:
        got = query_rows(conn, sql)
    lost = [f"{n}: node {g}, DuckDB {e}" for n, g, e in zip(names, got[0], expected[0]) if g != e]
    assert not lost, f"{table}: non-null values per column differ:\n" + "\n".join(lost)


@pytest.mark.parametrize("table", ["koeln_districts", "koeln_segments"])
@pytest.mark.requirement("UDN-DATA-3")
def test_real_geojson_geometries(real_env, shared_data, table):
    node, _ = real_env(table)
    key = "STB_NR" if table == "koeln_districts" else "OBJECTID"
    with node.connect() as conn:
        rows = query(conn, f'SELECT "{key}" AS k, geometry FROM {table}').to_pylist()
    features = geojson_features(shared_data / datasets.SHARED_TABLES[table])
    by_key = {f["properties"][key]: f["geometry"] for f in features}
    assert len(rows) == len(features)
    for row in rows:
        decoded = wkb.decode(row["geometry"])
        assert wkb.same_geometry(decoded, by_key[row["k"]]), f"{table} {key}={row['k']}"
