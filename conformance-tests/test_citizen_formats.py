"""Citizen measurements in one observation model (Polder's formats `sensor-community`,
`snuffelfiets` and `telraam`): the real exports of ../shared/data mapped onto one table agree
with DuckDB doing the documented mapping on the raw files; what cannot be mapped is counted,
by reason, in `/readyz` and the catalog; a file that goes away fails the query, naming the
dataset, rather than answering without it.
"""

from __future__ import annotations

import json
import math
import shutil

import duckdb
import pytest
import requests

from udn_conformance import rdf
from udn_conformance.client import expect_error, query
from udn_conformance.node import with_catalog

pytestmark = [pytest.mark.spawns_node, pytest.mark.beyond_spec("Polder's citizen-measurement formats")]

SOURCES = {
    "brugge_pm": ("sensor-community", "sensorcommunity_brugge_sds011/data/"),
    "utrecht_bike": ("snuffelfiets", "snuffelfiets_utrecht/tests/data/test_data.csv"),
    "karlsruhe_counts": ("telraam", "telraam_karlsruhe/docs/data/device_*/hourly/*.json"),
}


def _config(tables: dict[str, tuple[str, str]]) -> str:
    out = []
    for name, (fmt, location) in tables.items():
        out += ["[[tables]]", f'name = "{name}"', f'location = "{location}"', f'format = "{fmt}"', ""]
    return with_catalog("\n".join(out))


@pytest.fixture(scope="module")
def citizens(launcher, shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("citizens")
    config = folder / "node.toml"
    config.write_text(
        _config({name: (fmt, str(shared_data / path)) for name, (fmt, path) in SOURCES.items()}),
        encoding="utf-8",
    )
    return launcher.spawn(["--config", str(config)])


def _one(conn, sql: str) -> dict:
    return query(conn, sql).to_pylist()[0]


def _close(a, b, what: str) -> None:
    assert a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{what}: node {a}, DuckDB {b}"


def test_sensor_community_agrees_with_duckdb(citizens, shared_data):
    files = str(shared_data / SOURCES["brugge_pm"][1] / "*.csv")
    ref = duckdb.sql(
        f"SELECT count(P1) AS n, avg(P1) AS p10, avg(P2) AS p25, count(*) FILTER (WHERE P1 > 999.9) AS out, "
        f"min(timestamp) AS first FROM read_csv('{files}', delim=';', header=true, "
        "types={'P1': 'DOUBLE', 'P2': 'DOUBLE', 'timestamp': 'TIMESTAMP'})"
    ).fetchall()[0]
    with citizens.connect() as conn:
        got = _one(
            conn,
            "SELECT count(*) FILTER (WHERE observed_property = 'PM10') AS n, "
            "avg(result) FILTER (WHERE observed_property = 'PM10') AS p10, "
            "avg(result) FILTER (WHERE observed_property = 'PM2.5') AS p25, "
            "count(*) FILTER (WHERE quality LIKE '%out-of-range%') AS out, "
            "min(phenomenon_time) AS first, count(DISTINCT unit) AS units, min(sensor) AS sensor "
            "FROM brugge_pm",
        )
    assert got["n"] == ref[0] == 199_833
    _close(got["p10"], ref[1], "mean PM10")
    _close(got["p25"], ref[2], "mean PM2.5")
    assert got["out"] == ref[3] and ref[3] > 0
    assert got["first"].replace(tzinfo=None) == ref[4]
    assert (got["units"], got["sensor"]) == (1, "sensor.community:7245")


def test_snuffelfiets_units_are_normalised_as_documented(citizens, shared_data):
    path = shared_data / SOURCES["utrecht_bike"][1]
    ref = duckdb.sql(
        "SELECT avg(CASE WHEN version_major >= 2 THEN pm2_5 * 0.01 ELSE pm2_5 END) AS pm25, "
        "max(CASE WHEN version_major >= 2 THEN pm10 * 0.01 ELSE pm10 END) AS pm10_max, "
        "avg(temperature / 10.0) AS celsius, "
        "count(*) FILTER (WHERE latitude = 0 AND longitude = 0) AS no_fix, "
        "count(*) FILTER (WHERE humidity >= 70) AS humid, count(*) AS n "
        f"FROM read_csv('{path}', header=true)"
    ).fetchall()[0]
    with citizens.connect() as conn:
        got = _one(
            conn,
            "SELECT avg(result) FILTER (WHERE observed_property = 'PM2.5') AS pm25, "
            "max(result) FILTER (WHERE observed_property = 'PM10') AS pm10_max, "
            "avg(result) FILTER (WHERE observed_property = 'temperature') AS celsius, "
            "count(*) FILTER (WHERE observed_property = 'PM2.5' AND quality LIKE '%no-position%') AS no_fix, "
            "count(*) FILTER (WHERE observed_property = 'PM2.5' AND quality LIKE '%humid%') AS humid, "
            "count(*) FILTER (WHERE observed_property = 'PM2.5') AS n, "
            "count(*) FILTER (WHERE observed_property = 'PM2.5' AND geometry IS NULL) AS no_geometry "
            "FROM utrecht_bike",
        )
    _close(got["pm25"], ref[0], "mean PM2.5 in µg/m³")
    _close(got["pm10_max"], ref[1], "largest PM10 in µg/m³")
    _close(got["celsius"], ref[2], "mean temperature in °C")
    assert (got["no_fix"], got["humid"], got["n"]) == (ref[3], ref[4], ref[5])
    assert got["no_geometry"] == ref[3] == 218


def test_telraam_counts_and_uptime_flags_agree_with_duckdb(citizens, shared_data):
    files = str(shared_data / SOURCES["karlsruhe_counts"][1])
    ref = duckdb.sql(
        "WITH r AS (SELECT unnest(data, recursive := true) FROM read_json("
        f"'{files}', maximum_object_size=100000000, union_by_name=true)) "
        "SELECT count(*) AS n, sum(car) AS cars, sum(bike) AS bikes, "
        "count(*) FILTER (WHERE uptime > 0 AND uptime < 0.5) AS low, count(*) FILTER (WHERE uptime <= 0) AS none "
        "FROM r"
    ).fetchall()[0]
    with citizens.connect() as conn:
        got = _one(
            conn,
            "SELECT count(*) FILTER (WHERE observed_property = 'cars') AS n, "
            "sum(result) FILTER (WHERE observed_property = 'cars') AS cars, "
            "sum(result) FILTER (WHERE observed_property = 'bicycles') AS bikes, "
            "count(*) FILTER (WHERE observed_property = 'cars' AND quality = 'low-uptime') AS low, "
            "count(*) FILTER (WHERE observed_property = 'cars' AND quality = 'no-uptime') AS none, "
            "min(unit) AS unit FROM karlsruhe_counts",
        )
    assert got["n"] == ref[0] == 5_323
    _close(got["cars"], ref[1], "cars")
    _close(got["bikes"], ref[2], "bicycles")
    assert (got["low"], got["none"], got["unit"]) == (ref[3], ref[4], "count/h")


def test_one_query_compares_the_initiatives(citizens):
    """The point of one model: PM2.5 of two initiatives side by side, by hour of the day."""
    with citizens.connect() as conn:
        rows = query(
            conn,
            "SELECT source, date_part('hour', phenomenon_time) AS hour, avg(result) AS pm25 "
            "FROM (SELECT * FROM brugge_pm UNION ALL SELECT * FROM utrecht_bike) "
            "WHERE observed_property = 'PM2.5' AND quality = 'ok' GROUP BY 1, 2",
        ).to_pylist()
    sources = {r["source"] for r in rows}
    assert sources == {"sensor.community", "snuffelfiets"}
    assert all(r["pm25"] >= 0 for r in rows)


def test_readiness_and_catalog_report_the_counts(citizens):
    ready = requests.get(f"{citizens.http_url}/readyz", timeout=30).json()
    report = ready["citizen"]
    with citizens.connect() as conn:
        for table, (fmt, _) in SOURCES.items():
            n = _one(conn, f"SELECT count(*) AS n FROM {table}")["n"]
            assert report[table]["format"] == fmt
            assert report[table]["observations"] == n, table
            assert report[table]["rejected"] == {}, table
    graph = rdf.catalog_of(citizens.http_url).graph
    datasets = rdf.datasets_by_table(graph)
    for table in SOURCES:
        unmapped = rdf.one(graph, datasets[table], rdf.UDN.unmappedRecords)
        assert int(unmapped) == 0, table


@pytest.fixture
def broken_sources(tmp_path):
    """One good and one bad file of each format, written by the test."""
    sc = tmp_path / "sc"
    sc.mkdir()
    header = "sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2\n"
    (sc / "2018-01-01_sds011_sensor_1.csv").write_text(
        header + "1;SDS011;9;51.2;3.2;2018-01-01T00:00:00;10.5;;;5.25;;\n", encoding="utf-8"
    )
    (sc / "2018-01-02_sds011_sensor_1.csv").write_text(
        header
        + "1;SDS011;9;51.2;3.2;yesterday;10;;;5;;\n"
        + "1;SDS011;9;51.2;3.2;2018-01-02T00:00:00;n/a;;;7.5;;\n",
        encoding="utf-8",
    )
    tr = tmp_path / "telraam"
    tr.mkdir()
    (tr / "good.json").write_text(
        json.dumps({"device_id": "1", "data": [
            {"segment_id": 1, "date": "2025-10-01T07:00:00Z", "interval": "hourly", "uptime": 0.9,
             "car": 10, "bike": 5, "pedestrian": 2, "heavy": 1}]}),
        encoding="utf-8",
    )
    (tr / "broken.json").write_text('{"device_id": "1", "data": [', encoding="utf-8")
    sf = tmp_path / "snuffelfiets.csv"
    sf.write_text(
        ",_id,entity_id,recording_timestamp,humidity,latitude,longitude,pm10,pm1_0,pm2_5,temperature,version_major\n"
        "0,1,7,2024-11-11T08:00:00,50,52.1,5.1,1000,500,800,150,2\n"
        "1,2,7,2024-11-11T08:01:00,50,52.1,5.1,10,5,8,150,\n",
        encoding="utf-8",
    )
    return {
        "sc": ("sensor-community", str(sc) + "/"),
        "tr": ("telraam", str(tr) + "/"),
        "sf": ("snuffelfiets", str(sf)),
    }


def test_what_cannot_be_mapped_is_counted_and_reported(launcher, broken_sources, tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(_config(broken_sources), encoding="utf-8")
    node = launcher.spawn(["--config", str(config)])
    try:
        report = requests.get(f"{node.http_url}/readyz", timeout=30).json()["citizen"]
        assert report["sc"]["rejected"] == {
            "sensor.community: P1 is not a number": 1,
            "sensor.community: row whose timestamp is not a time": 1,
        }
        assert report["tr"]["rejected"] == {"telraam: file that is not JSON": 1}
        assert report["sf"]["rejected"] == {"snuffelfiets: row without version_major (unit unknown)": 1}
        with node.connect() as conn:
            sc = query(conn, "SELECT observed_property, result FROM sc ORDER BY phenomenon_time, observed_property").to_pylist()
            assert sc == [
                {"observed_property": "PM10", "result": 10.5},
                {"observed_property": "PM2.5", "result": 5.25},
                {"observed_property": "PM2.5", "result": 7.5},
            ]
            assert _one(conn, "SELECT count(*) AS n FROM tr")["n"] == 4
            pm = query(conn, "SELECT observed_property, result FROM sf WHERE unit = 'µg/m³' ORDER BY 1").to_pylist()
            assert pm == [
                {"observed_property": "PM1", "result": 5.0},
                {"observed_property": "PM10", "result": 10.0},
                {"observed_property": "PM2.5", "result": 8.0},
            ]
        graph = rdf.catalog_of(node.http_url).graph
        datasets = rdf.datasets_by_table(graph)
        assert int(rdf.one(graph, datasets["sc"], rdf.UDN.unmappedRecords)) == 2
        assert int(rdf.one(graph, datasets["tr"], rdf.UDN.unmappedRecords)) == 1

        # A file removed after startup fails the query naming the dataset: no partial answer.
        shutil.rmtree(broken_sources["tr"][1])
        with node.connect() as conn:
            err = expect_error(conn, "SELECT count(*) FROM tr")
        assert "dataset 'tr'" in str(err), err
        assert node.alive()
    finally:
        node.stop()


def test_citizen_formats_need_no_shared_data_to_be_refused_cleanly(launcher, tmp_path):
    """An empty folder is a startup error naming the dataset and the format."""
    empty = tmp_path / "empty"
    empty.mkdir()
    config = tmp_path / "node.toml"
    config.write_text(_config({"nothing": ("telraam", str(empty) + "/")}), encoding="utf-8")
    from udn_conformance.node import run_expecting_exit

    code, stderr = run_expecting_exit([str(launcher.binary), "serve", "--config", str(config)], tmp_path)
    assert code != 0 and "nothing" in stderr and "no telraam files found" in stderr, stderr[-1500:]
