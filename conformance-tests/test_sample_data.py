"""Polder's built-in sample data: `serve` without tables, and `demo-data` files served back.

These run the polder binary's own subcommands, so they are skipped against a remote node.
"""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest

from udn_conformance import wkb
from udn_conformance.client import query, query_rows
from udn_conformance.compare import assert_same_rows
from udn_conformance.reference import Reference, geojson_features

pytestmark = pytest.mark.spawns_node

CITIES = ["amsterdam", "utrecht", "rotterdam"]
FILES = {
    "air_quality": "air_quality.csv",
    "traffic_counts": "traffic_counts.parquet",
    "neighbourhoods": "neighbourhoods.geojson",
}

# One row of aggregates that pins a table's contents down; runs on the node and on DuckDB.
FINGERPRINTS = {
    "air_quality": "SELECT count(*) AS n, count(pm10) AS n_pm10, sum(pm10) AS pm10, "
    "avg(pm2_5) AS pm2_5, min(temperature) AS t_min, max(humidity) AS h_max, "
    'count(DISTINCT sensor_id) AS sensors, min("timestamp") AS first_ts, '
    'max("timestamp") AS last_ts FROM {t}',
    "traffic_counts": "SELECT count(*) AS n, sum(car) AS car, sum(bike) AS bike, "
    "sum(pedestrian) AS ped, sum(heavy) AS heavy, avg(uptime) AS uptime, max(v85) AS v85, "
    "min(hour) AS first_hour FROM {t}",
    "neighbourhoods": "SELECT count(*) AS n, sum(population) AS population, "
    "sum(households) AS households, sum(area_ha) AS area, max(share_65_plus) AS old, "
    "count(DISTINCT code) AS codes FROM {t}",
}


def _demo_data(binary: Path, out: Path) -> None:
    result = subprocess.run(
        [str(binary), "demo-data", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (
        f"demo-data failed ({result.returncode}):\n{result.stderr[-3000:]}"
    )


@pytest.fixture(scope="module")
def demo_dir(polder_bin, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    _demo_data(polder_bin, out)
    return out


@pytest.fixture(scope="module")
def demo_tables(demo_dir) -> dict[str, Path]:
    return {
        f"{city}_{table}": demo_dir / city / name
        for city in CITIES
        for table, name in FILES.items()
    }


@pytest.fixture(scope="module")
def demo_node(launcher, demo_tables):
    return launcher.node(demo_tables)


@pytest.fixture(scope="module")
def demo_ref(demo_tables):
    return Reference(demo_tables)


@pytest.fixture(scope="module")
def sample_node(launcher):
    return launcher.spawn([])


@pytest.mark.beyond_spec("Polder's demo-data command")
def test_demo_data_writes_every_city(demo_dir):
    for city in CITIES:
        for name in FILES.values():
            path = demo_dir / city / name
            assert path.is_file() and path.stat().st_size > 0, f"missing or empty: {path}"


@pytest.mark.beyond_spec("Polder's demo-data command")
def test_demo_data_is_deterministic(polder_bin, demo_dir, tmp_path):
    again = tmp_path / "again"
    _demo_data(polder_bin, again)
    for city in CITIES:
        for name in FILES.values():
            assert filecmp.cmp(demo_dir / city / name, again / city / name, shallow=False), (
                f"{city}/{name} differs"
            )


@pytest.mark.parametrize("city", CITIES)
@pytest.mark.parametrize("table", ["air_quality", "traffic_counts"])
@pytest.mark.requirement("UDN-DATA-2")
def test_served_demo_files_match_duckdb(demo_node, demo_ref, city, table):
    name = f"{city}_{table}"
    with demo_node.connect() as conn:
        columns = [c for c in query(conn, f"SELECT * FROM {name} LIMIT 0").column_names]
        sql = f"SELECT {', '.join(chr(34) + c + chr(34) for c in columns)} FROM {name}"
        got = query_rows(conn, sql)
    assert columns == demo_ref.columns(f"SELECT * FROM {name}")
    assert_same_rows(got, demo_ref.rows(sql), context=name)


@pytest.mark.parametrize("city", CITIES)
@pytest.mark.requirement("UDN-DATA-3")
def test_served_demo_neighbourhoods_match_geojson(demo_node, demo_ref, demo_tables, city):
    name = f"{city}_neighbourhoods"
    props = demo_ref.columns(f"SELECT * FROM {name}")
    sql = f"SELECT {', '.join(props)} FROM {name}"
    with demo_node.connect() as conn:
        assert_same_rows(query_rows(conn, sql), demo_ref.rows(sql), context=name)
        rows = query(conn, f"SELECT code, geometry FROM {name}").to_pylist()
    by_code = {f["properties"]["code"]: f["geometry"] for f in geojson_features(demo_tables[name])}
    assert len(rows) == len(by_code)
    for row in rows:
        assert wkb.same_geometry(wkb.decode(row["geometry"]), by_code[row["code"]]), row["code"]


@pytest.mark.beyond_spec("Polder's built-in sample data")
def test_serve_without_tables_lists_the_sample_tables(sample_node):
    with sample_node.connect() as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    names = {
        t["table_name"]
        for c in objects
        for s in c["catalog_db_schemas"] or []
        for t in s["db_schema_tables"] or []
    }
    assert set(FILES) <= names, f"sample tables missing: {set(FILES) - names}"


@pytest.mark.parametrize("table", sorted(FILES))
@pytest.mark.beyond_spec("Polder's built-in sample data")
def test_sample_tables_equal_demo_data_files(sample_node, demo_node, demo_ref, table):
    """`serve` without tables answers as the demo-data files of one city (or of all of them) do."""
    with sample_node.connect() as conn:
        sample = query_rows(conn, FINGERPRINTS[table].format(t=table))
    assert sample[0][0] > 0, f"sample table {table} is empty"
    candidates = {city: f"{city}_{table}" for city in CITIES}
    with demo_node.connect() as conn:
        served = {
            city: query_rows(conn, FINGERPRINTS[table].format(t=t))
            for city, t in candidates.items()
        }
    union = " UNION ALL ".join(f"SELECT * FROM {t}" for t in candidates.values())
    with demo_node.connect() as conn:
        served["all cities"] = query_rows(conn, FINGERPRINTS[table].format(t=f"({union}) AS u"))
    # The demo files as served must agree with DuckDB reading them...
    for city, t in candidates.items():
        assert_same_rows(served[city], demo_ref.rows(FINGERPRINTS[table].format(t=t)), context=t)
    # ...and the built-in sample must be one of them.
    matches = []
    for label, rows in served.items():
        try:
            assert_same_rows(sample, rows)
            matches.append(label)
        except AssertionError:
            pass
    assert matches, f"sample {table} {sample} matches no demo-data file: {served}"
