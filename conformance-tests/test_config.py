"""UDN-OPS-3: the configuration file is validated at startup; UDN-DATA-4 / UDN-OPS-2: optional
datasets that cannot be loaded are skipped and reported.

The file format is Polder's (`polder serve --config FILE`, see docs/config-reference.md), so these
tests run the binary themselves and are skipped against a remote node.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from udn_conformance.client import describe, expect_error, query_rows
from udn_conformance.compare import assert_same_rows
from udn_conformance.errors import adbc_grpc_status
from udn_conformance.node import catalog_config_file, run_expecting_exit, with_catalog
from udn_conformance.reference import Reference

pytestmark = pytest.mark.spawns_node


def _base(nation: Path, stations: Path) -> str:
    """A valid configuration; each case below changes one thing in it. It ends with the
    `[catalog]` section a node serving tables needs (`CATALOG_SECTION`)."""
    return with_catalog(f"""\
[node]
name = "config_check"
flight_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"

[limits]
query_timeout = "30s"
max_concurrent_queries = 4

[[tables]]
name = "nation"
location = "{nation}"

[[tables]]
name = "stations"
location = "{stations}"
format = "csv"

[tables.csv]
has_header = true
delimiter = ","
""")


@pytest.fixture(scope="module")
def base(main_tables, generated) -> str:
    return _base(main_tables["nation"], generated["stations_csv"])


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def _serve_expecting_exit(binary: Path, config: Path, timeout: float = 30):
    """Run `polder serve --config FILE`; it must exit. Returns (exit code, stderr)."""
    return run_expecting_exit([str(binary), "serve", "--config", str(config)], config.parent, timeout)


@pytest.mark.requirement("UDN-OPS-3")
def test_valid_configuration_starts(launcher, tmp_path, base, main_tables, generated):
    """The base of every case below is itself valid: the node starts and serves both tables."""
    node = launcher.spawn(["--config", str(_write(tmp_path, base))])
    try:
        ref = Reference({"nation": main_tables["nation"], "stations": generated["stations_csv"]})
        with node.connect() as conn:
            for sql in ["SELECT count(*) AS n FROM nation", "SELECT sum(station_id) FROM stations"]:
                assert_same_rows(query_rows(conn, sql), ref.rows(sql), context=sql)
    finally:
        node.stop()


# name -> (change to the base configuration, the unknown key the error must name)
UNKNOWN_KEYS = {
    "top_level": (lambda b: 'colour = "blue"\n' + b, "colour"),
    "section": (lambda b: b.replace("[limits]", "[limitz]"), "limitz"),
    "node": (lambda b: b.replace('name = "config_check"', 'nmae = "config_check"'), "nmae"),
    "limits": (lambda b: b.replace("query_timeout", "query_timout"), "query_timout"),
    "table": (lambda b: b.replace('format = "csv"', 'fromat = "csv"'), "fromat"),
    "csv": (lambda b: b.replace("delimiter", "delimeter"), "delimeter"),
    "storage_options": (
        lambda b: b.replace(
            'name = "nation"', 'name = "nation"\nstorage_options = { aws_regoin = "x" }'
        ),
        "aws_regoin",
    ),
}


@pytest.mark.parametrize(
    "case",
    list(UNKNOWN_KEYS),
)
@pytest.mark.requirement("UDN-OPS-3")
def test_unknown_key_stops_startup_naming_it(polder_bin, tmp_path, base, case):
    change, key = UNKNOWN_KEYS[case]
    text = change(base)
    assert text != base and key in text
    code, stderr = _serve_expecting_exit(polder_bin, _write(tmp_path, text))
    assert code != 0, f"exit code 0 with unknown key {key!r}"
    assert key in stderr, f"error does not name {key!r}: {stderr[-1500:]}"
    assert "panic" not in stderr.lower(), stderr[-1500:]


# name -> (change, the key and the value the error must name)
INVALID_VALUES = {
    "duration": (lambda b: b.replace('"30s"', '"soon"'), "query_timeout", "soon"),
    "zero_slots": (
        lambda b: b.replace("max_concurrent_queries = 4", "max_concurrent_queries = 0"),
        "max_concurrent_queries",
        "0",
    ),
    "negative": (
        lambda b: b.replace("[limits]", "[limits]\nmemory_limit_mib = -5"),
        "memory_limit_mib",
        "-5",
    ),
    "wrong_type": (
        lambda b: b.replace("has_header = true", 'has_header = "yes"'),
        "has_header",
        "yes",
    ),
    "node_name": (
        lambda b: b.replace('name = "config_check"', 'name = "Not A Name!"'),
        "name",
        "Not A Name!",
    ),
    "format": (lambda b: b.replace('format = "csv"', 'format = "xls"'), "format", "xls"),
    "address": (
        lambda b: b.replace('http_addr = "127.0.0.1:0"', 'http_addr = "localhost-ish"'),
        "http_addr",
        "localhost-ish",
    ),
}


@pytest.mark.parametrize("case", list(INVALID_VALUES))
@pytest.mark.requirement("UDN-OPS-3")
def test_invalid_value_stops_startup_naming_it(polder_bin, tmp_path, base, case):
    change, key, value = INVALID_VALUES[case]
    text = change(base)
    assert text != base
    code, stderr = _serve_expecting_exit(polder_bin, _write(tmp_path, text))
    assert code != 0, f"exit code 0 with {key} = {value!r}"
    assert key in stderr and value in stderr, (
        f"error does not name {key} = {value!r}: {stderr[-1500:]}"
    )
    assert "panic" not in stderr.lower(), stderr[-1500:]


@pytest.mark.requirement("UDN-DATA-4", "UDN-OPS-2")
def test_optional_dataset_that_cannot_load_is_skipped_and_reported(
    launcher, tmp_path, base, main_tables
):
    missing = tmp_path / "not-there" / "ghost.parquet"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n4,5,6\n")
    text = base + f"""
[[tables]]
name = "ghost"
location = "{missing}"
optional = true

[[tables]]
name = "bad_rows"
location = "{bad}"
optional = true
"""
    node = launcher.spawn(["--config", str(_write(tmp_path, text))])
    try:
        r = requests.get(f"{node.http_url}/readyz", timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body["skipped"]) == {"ghost", "bad_rows"}, body
        assert str(missing) in body["skipped"]["ghost"], body  # the reason names the location
        assert str(bad) in body["skipped"]["bad_rows"], body
        assert {"nation", "stations"} <= set(body["tables"]), body
        assert not {"ghost", "bad_rows"} & set(body["tables"]), body
        with node.connect() as conn:
            ref = Reference({"nation": main_tables["nation"]})
            sql = "SELECT count(*) AS n FROM nation"
            assert_same_rows(query_rows(conn, sql), ref.rows(sql))
            for table in ("ghost", "bad_rows"):
                err = expect_error(conn, f"SELECT * FROM {table}")
                assert adbc_grpc_status(err) == "NotFound", describe(err)
    finally:
        node.stop()


@pytest.mark.requirement("UDN-DATA-4")
def test_mandatory_dataset_that_cannot_load_stops_startup(polder_bin, tmp_path, base):
    """The same missing location without `optional`: startup fails naming dataset and location."""
    missing = tmp_path / "not-there" / "ghost.parquet"
    text = base + f'\n[[tables]]\nname = "ghost"\nlocation = "{missing}"\n'
    code, stderr = _serve_expecting_exit(polder_bin, _write(tmp_path, text))
    assert code != 0
    assert "ghost" in stderr and str(missing) in stderr, stderr[-1500:]


@pytest.mark.requirement("UDN-OPS-3")
def test_table_flag_takes_its_value_whole_and_the_variable_a_list(
    launcher, tmp_path, generated, monkeypatch
):
    """`--table NAME=LOCATION` is one dataset however many commas the location holds (a file
    named `stations,2025.csv`); `POLDER_TABLES` is a comma-separated list of datasets."""
    data = tmp_path / "data"
    data.mkdir()
    with_comma = data / "stations,2025.csv"
    shutil.copy(generated["stations_csv"], with_comma)
    ref = Reference({"stations": generated["stations_csv"]})
    sql = "SELECT count(*) AS n, sum(station_id) AS s FROM stations"

    node = launcher.spawn(["--table", f"stations={with_comma}"])
    try:
        with node.connect() as conn:
            assert_same_rows(query_rows(conn, sql), ref.rows(sql), context=sql)
    finally:
        node.stop()

    plain = data / "stations.csv"
    shutil.copy(generated["stations_csv"], plain)
    monkeypatch.setenv("POLDER_TABLES", f"stations={plain},again={plain}")
    node = launcher.spawn(["--config", str(catalog_config_file(tmp_path))])
    try:
        with node.connect() as conn:
            assert_same_rows(query_rows(conn, sql), ref.rows(sql), context=sql)
            again = sql.replace("stations", "again")
            assert_same_rows(query_rows(conn, again), ref.rows(sql), context=again)
    finally:
        node.stop()
